"""Row-wise operators against the simulator: rp.filter and rp.extract (and classify, for scale).

The simulator runs in its own process (``rlm-pipeline sim-server``) and answers
every request after ``--latency-ms`` (200) while holding one of ``--sim-cap``
(64) slots, so no client passes ``cap / latency`` = 320 calls/s.  Each
operator gets a fresh simulator and the same ``--rows`` tickets (every text
distinct: the ticket id is appended, so dedup cannot shrink the work), on
Polars, batch 16.  Reported: wall seconds, rows/s, calls and input tokens per
row (from the simulator's own ``/stats``), and whether every row is accounted
for (filter: kept + dropped + failed = rows and the output holds the kept
rows; extract: every row once, a reason wherever a row has no values).

This is a simulator, not a model: the numbers measure our fan-out machinery
and prompt sizes, not answer quality.  The LOTUS comparison (``sem_filter`` /
``sem_extract``) needs the LOTUS bench venv (``bench/requirements-lotus.txt``);
it is not part of this script.

Run::

    .venv/bin/python bench/operators.py            # writes bench/results/operators.{json,md}
    .venv/bin/python bench/operators.py --rows 5000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIELDS: dict[str, Any] = {
    "refund_amount": "number",
    "order_id": "string",
    "month": "date",
    "topic": ["billing", "technical", "account", "other"],
}
CONDITION = "asks for a refund"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sim:
    """``rlm-pipeline sim-server`` in a child process."""

    def __init__(self, latency_ms: int, cap: int) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "rlm_pipeline", "sim-server", "--port", str(self.port),
               "--latency-ms", str(latency_ms), "--max-concurrency", str(cap)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("the simulator did not start")

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/stats?log=0"
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _frame(rows: int) -> pl.DataFrame:
    from rlm_pipeline.datasets import tickets

    frame = tickets(rows, seed=0).drop("true_label")
    return frame.with_columns(
        question=pl.col("question") + pl.lit(" #") + pl.col("ticket_id").cast(pl.String)
    )


def _run(op: str, frame: pl.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    import rlm_pipeline as rp
    from rlm_pipeline.ops.extract_op import ExtractSpec
    from rlm_pipeline.ops.filter_op import FilterSpec
    from rlm_pipeline.ops.semantic import run_extract, run_filter

    sim = Sim(args.latency_ms, args.sim_cap)
    try:
        llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x",
                     max_concurrency=args.sim_cap, max_retries=2)
        started = time.monotonic()
        notes: dict[str, Any] = {}
        if op == "filter":
            out, stats = run_filter(frame, FilterSpec("question", CONDITION), llm, on_error="keep")
            accounted = stats.kept + stats.dropped + stats.failed == frame.height
            accounted = accounted and out.height == stats.returned
            notes = {"kept": stats.kept, "dropped": stats.dropped, "failed": stats.failed}
        elif op == "extract":
            out, op_stats = run_extract(frame, ExtractSpec("question", FIELDS), llm)  # type: ignore[arg-type]
            reasons = out.filter(pl.all_horizontal([pl.col(f).is_null() for f in FIELDS])
                                 & pl.col("extract_error").is_null()).height
            accounted = out.height == frame.height and out["ticket_id"].equals(frame["ticket_id"])
            notes = {"failed": op_stats.failed, "rows_all_fields_null_not_stated": reasons}
        else:
            out = rp.classify(frame, "question", list(FIELDS["topic"]), llm)
            accounted = out.height == frame.height
        wall = time.monotonic() - started
        sim_stats = sim.stats()
    finally:
        sim.close()
    return {
        "operator": op,
        "rows": frame.height,
        "wall_s": round(wall, 2),
        "rows_per_s": round(frame.height / wall, 1),
        "calls": sim_stats["requests"],
        "calls_per_s": round(sim_stats["requests"] / wall, 1),
        "input_tokens_per_row": round(sim_stats["input_tokens"] / frame.height, 1),
        "output_tokens_per_row": round(sim_stats["output_tokens"] / frame.height, 1),
        "all_rows_accounted": bool(accounted),
        **notes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--sim-cap", type=int, default=64)
    parser.add_argument("--ops", default="filter,extract,classify")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "x")
    frame = _frame(args.rows)
    results = [_run(op, frame, args) for op in args.ops.split(",")]
    load = os.getloadavg()[0]
    ceiling = args.sim_cap / (args.latency_ms / 1000)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"latency_ms": args.latency_ms, "sim_cap": args.sim_cap, "ceiling_calls_per_s":
               ceiling, "load_average": load, "batch_size": 16, "results": results}
    (RESULTS / "operators.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Row-wise operators (filter, extract) vs the simulator",
        "",
        f"Simulator: {args.latency_ms} ms per request, {args.sim_cap} slots (ceiling "
        f"{ceiling:.0f} calls/s); Polars, batch 16, every text distinct; load average at the end "
        f"{load:.1f} on 2 cores. LOTUS not run (no LOTUS bench venv on this machine).",
        "",
        "| operator | rows | wall s | rows/s | calls | calls/s | input tokens/row | "
        "output tokens/row | all rows accounted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['operator']} | {r['rows']:,} | {r['wall_s']} | {r['rows_per_s']:,} | "
            f"{r['calls']:,} | {r['calls_per_s']} | {r['input_tokens_per_row']} | "
            f"{r['output_tokens_per_row']} | {r['all_rows_accounted']} |"
        )
    (RESULTS / "operators.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
