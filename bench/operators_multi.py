"""Multi-stage operators against the simulator: aggregate, top_k and join (issue 15).

The simulator runs in its own process (``rlm-pipeline sim-server``) with
``--latency-ms`` (200) per request and ``--max-concurrency`` (64) slots, so no
client can pass 320 calls/s.  Each operator runs on Polars at batch 16 (the
row passes) with every text made distinct (a ticket id appended), and we
report rows/s, calls, input tokens per row (the simulator's own count),
the largest prompt, and the exactly-once checks (rows through the fold tree,
candidate pairs accounted for).

This is a simulator, not a model: the numbers measure the operators'
machinery (packing, batching, fan-out), not answer quality.  No peer
(LOTUS ``sem_agg`` / ``sem_topk`` / ``sem_join``) is run here.

Run::

    .venv/bin/python bench/operators_multi.py            # writes bench/results/operators_multi.{json,md}
    .venv/bin/python bench/operators_multi.py --rows 5000 --latency-ms 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - 127.0.0.1 only
        return dict(json.load(r))


def _post(url: str) -> None:
    req = urllib.request.Request(url, data=b"{}", method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=10):  # noqa: S310
        pass


class Sim:
    """The simulator in a subprocess (its CPU apart from the client's)."""

    def __init__(self, latency_ms: float, cap: int) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlm_pipeline", "sim-server", "--port", str(self.port),
             "--latency-ms", str(latency_ms), "--max-concurrency", str(cap)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.root = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                _get(self.root + "/v1/models")
                return
            except OSError:
                time.sleep(0.1)
        msg = "simulator did not start"
        raise RuntimeError(msg)

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def stats(self) -> dict[str, Any]:
        return _get(self.root + "/stats?log=0")

    def reset(self) -> None:
        _post(self.root + "/stats/reset")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _texts(n: int, seed: int) -> list[str]:
    from tests.ops.tickets import tickets

    return [f"{t} #{i}" for i, t in enumerate(tickets(n, seed=seed))]


def _measure(sim: Sim, name: str, rows: int, run: Any) -> dict[str, Any]:
    sim.reset()
    start = time.perf_counter()
    extra = run()
    wall = time.perf_counter() - start
    stats = sim.stats()
    return {
        "operator": name,
        "rows": rows,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "calls": stats["requests"],
        "calls_per_s": round(stats["requests"] / wall, 1),
        "input_tokens": stats["input_tokens"],
        "input_tokens_per_row": round(stats["input_tokens"] / rows, 1),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    import polars as pl

    import rlm_pipeline as rp
    from rlm_pipeline.ops.aggregate_op import AggregateSpec, run_aggregate
    from rlm_pipeline.ops.join_op import JoinSpec, run_join
    from rlm_pipeline.ops.topk_op import TopKSpec, run_top_k

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--join-side", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--sim-cap", type=int, default=64)
    parser.add_argument("--out", default=str(RESULTS / "operators_multi"))
    args = parser.parse_args(argv)

    sim = Sim(args.latency_ms, args.sim_cap)
    results = []
    try:
        llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", max_concurrency=64)
        texts = _texts(args.rows, seed=1)
        df = pl.DataFrame({"g": [i % 10 for i in range(args.rows)], "q": texts})

        def agg(by: tuple[str, ...]) -> Any:
            def run() -> dict[str, Any]:
                spec = AggregateSpec("q", "main complaints", by=by)
                out, stats = run_aggregate(df, spec, llm)
                leaves = sum(sum(n.rows for n in g.leaves) for g in stats.groups)
                return {"groups": len(stats.groups), "max_prompt_tokens": stats.max_prompt_tokens,
                        "prompt_budget": spec.max_prompt_tokens,
                        "levels": max(max(n.level for n in g.nodes) for g in stats.groups) + 1,
                        "rows_in_leaves": leaves,
                        "rows_summarised": int(out["rows_summarised"].sum())}
            return run

        results.append(_measure(sim, "aggregate (1 group)", args.rows, agg(())))
        results.append(_measure(sim, "aggregate (by g, 10 groups)", args.rows, agg(("g",))))

        def topk() -> dict[str, Any]:
            _, stats = run_top_k(df, TopKSpec("q", "billing refund problems", k=10), llm)
            return {"rerank_calls": stats.rerank_calls, "answered": stats.scoring.answered,
                    "n_log2_n": round(args.rows * __import__("math").log2(args.rows))}

        results.append(_measure(sim, "top_k (k=10, batch 16)", args.rows, topk))

        side = args.join_side
        rng = random.Random(2)
        left = pl.DataFrame({"t": [rng.randrange(100) for _ in range(side)],
                             "q": _texts(side, seed=3)})
        right = pl.DataFrame({"t": [rng.randrange(100) for _ in range(side)],
                              "f": _texts(side, seed=4)})

        def join() -> dict[str, Any]:
            spec = JoinSpec("q", "f", "the same topic", block_on="l.t = r.t")
            _, stats = run_join(left, right, spec, llm)
            accounted = stats.matched + stats.not_matched + sum(stats.failed.values()) + stats.blank
            return {"pairs": stats.pairs, "cross_pairs": stats.cross_pairs,
                    "pairs_share": round(stats.share, 4), "matched": stats.matched,
                    "pairs_accounted": accounted}

        join_result = _measure(sim, f"join ({side} x {side}, blocked, batch 16)", side, join)
        join_result["pairs_per_s"] = round(join_result["pairs"] / join_result["wall_s"], 1)
        join_result["input_tokens_per_pair"] = round(
            join_result["input_tokens"] / join_result["pairs"], 1)
        results.append(join_result)
    finally:
        sim.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"latency_ms": args.latency_ms, "sim_cap": args.sim_cap,
            "ceiling_calls_per_s": round(args.sim_cap / (args.latency_ms / 1000), 1),
            "machine": f"{os.cpu_count()} cores", "load_1m": os.getloadavg()[0]}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "# Multi-stage operators vs the simulator",
        "",
        f"Simulator: {args.latency_ms:.0f} ms per request, {args.sim_cap} slots "
        f"(ceiling {meta['ceiling_calls_per_s']} calls/s); load average at the end "
        f"{meta['load_1m']:.1f} on {meta['machine']}. Polars, batch 16, every text distinct.",
        "",
        "| operator | rows | wall s | rows/s | calls | calls/s | input tokens/row | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        skip = {"operator", "rows", "wall_s", "rows_per_s", "calls", "calls_per_s",
                "input_tokens", "input_tokens_per_row"}
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
        lines.append(
            f"| {r['operator']} | {r['rows']:,} | {r['wall_s']} | {r['rows_per_s']:,} | "
            f"{r['calls']:,} | {r['calls_per_s']} | {r['input_tokens_per_row']} | {notes} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
