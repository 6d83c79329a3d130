"""Cascade benchmark: classify 20,000 tickets with a cheap proxy first, against the oracle alone.

Two simulators, each in its own process (so their CPU is not the client's):
the *proxy* (``gpt-4.1-nano`` at list prices, right on 85% of the texts,
``--proxy-latency-ms`` per request) and the *oracle* (``gpt-4.1``, always
right: the simulator's keyword classifier, ``--oracle-latency-ms``).  Prices
are the library's list prices for those model names (``DEFAULT_PRICES``), so
"cost" is what the same token counts would cost there.

Runs, on the same rows:

- ``oracle only``: ``rp.classify(..., llm=oracle)``, the cost without a cascade;
- ``proxy only``: the proxy alone (what skipping the oracle gets you);
- ``cascade logprobs``: ``rp.Cascade(proxy, target=0.95)`` with token
  log-probabilities (informative: right answers are more confident);
- ``cascade verbal``: the same with a verbalised confidence field;
- ``cascade uninformative``: a proxy whose confidences are random (the cascade
  must send everything to the oracle and say so);
- ``cascade spark`` (``--spark``): the logprobs cascade on Spark local[2].

For each: rows/s (wall), agreement with the oracle on the held-out rows (rows
whose text is not in the calibration sample) and on all rows, rows from the
oracle (escalated share), threshold and sample bound, calls and cost per
model, cost per 1,000 rows, and the cascade's own estimate of the cost without
it.  Results go to ``bench/results/cascade.json``.

Run::

    .venv/bin/python bench/cascade.py                # 20,000 rows, Polars
    .venv/bin/python bench/cascade.py --spark        # also on Spark
    .venv/bin/python bench/cascade.py --rows 2000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LABELS = ["billing", "technical", "account", "other"]
PROXY_MODEL = "gpt-4.1-nano"
ORACLE_MODEL = "gpt-4.1"

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def _serve(config: str) -> None:
    """Child process: one simulator; prints its base URL, then serves until killed."""
    from rlm_pipeline.sim import SimConfig
    from rlm_pipeline.sim.server import serve

    def ready(url: str) -> None:
        print(url, flush=True)

    serve(SimConfig(**json.loads(config)), "127.0.0.1", 0, ready=ready)


@contextmanager
def simulator(**knobs: Any) -> Iterator[str]:
    """A simulator in a subprocess; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", json.dumps(knobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            msg = f"simulator did not start: {url!r}"
            raise RuntimeError(msg)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _stats(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats?log=0", timeout=10) as reply:
        return dict(json.loads(reply.read()))


def _reset(url: str) -> None:
    import urllib.request

    request = urllib.request.Request(url.removesuffix("/v1") + "/stats/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def _agreement(questions: list[str], labels: list[str | None], skip: set[str]) -> float:
    from rlm_pipeline.sim import intended_label

    rows = [(q, label) for q, label in zip(questions, labels, strict=True) if q not in skip]
    return sum(label == intended_label(q, LABELS) for q, label in rows) / len(rows)


def _sample(questions: list[str], confidences: list[float | None], seed: int, n: int) -> set[str]:
    from rlm_pipeline.ops.cascade_frames import sample_key

    answered = {q for q, c in zip(questions, confidences, strict=True) if c is not None}
    return set(sorted(answered, key=lambda q: sample_key(seed, q))[:n])


def run(
    name: str, data: Any, llm: Any, urls: dict[str, str], *, cascade: Any = None, spark: Any = None
) -> dict[str, Any]:
    """One run: wall time, agreement, per-model calls and cost."""
    import polars as pl

    from rlm_pipeline.ops.api import run_op
    from rlm_pipeline.ops.spec import ClassifySpec

    for url in urls.values():
        _reset(url)
    frame = spark.createDataFrame(data.to_arrow()) if spark is not None else data
    started = time.perf_counter()
    out, stats = run_op(frame, ClassifySpec("question", tuple(LABELS)), llm, cascade=cascade)
    if spark is not None:
        out = pl.DataFrame(out.toArrow())
    wall = time.perf_counter() - started
    questions = out["question"].to_list()
    labels = out["label"].to_list()
    rows = len(questions)
    result: dict[str, Any] = {
        "name": name,
        "engine": "spark" if spark is not None else "polars",
        "rows": rows,
        "distinct_texts": len(set(questions)),
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "answered": stats.answered,
        "agreement_all": round(_agreement(questions, labels, set()), 4),
        "cost_usd": round(stats.usage.cost_usd, 5),
        "cost_per_1k_rows_usd": round(stats.usage.cost_usd / rows * 1000, 5),
        "calls": stats.usage.calls,
        "sim_requests": {role: _stats(url)["requests"] for role, url in urls.items()},
    }
    report = stats.cascade
    if report is not None:
        sample = _sample(questions, out["label_confidence"].to_list(), cascade.seed, cascade.sample)
        result.update(
            agreement_held_out=round(_agreement(questions, labels, sample), 4),
            held_out_rows=sum(1 for q in questions if q not in sample),
            escalated_share=round(report.escalated_share, 4),
            report=report.to_dict(),
            summary=report.summary(),
            cost_all_oracle_estimate_usd=report.cost_all_oracle_usd,
            proxy_cost_usd=round(report.proxy_usage.cost_usd, 5),
            oracle_cost_usd=round(report.oracle_usage.cost_usd, 5),
        )
    else:
        result["agreement_held_out"] = result["agreement_all"]
    print(json.dumps({k: v for k, v in result.items() if k != "report"}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--accuracy", type=float, default=0.85)
    parser.add_argument("--proxy-latency-ms", type=float, default=20.0)
    parser.add_argument("--oracle-latency-ms", type=float, default=80.0)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--spark", action="store_true", help="also run the cascade on Spark")
    parser.add_argument("--out", default=str(RESULTS / "cascade.json"))
    args = parser.parse_args()
    if args.serve is not None:
        _serve(args.serve)
        return

    import logging

    import rlm_pipeline as rp
    from rlm_pipeline.datasets.tickets import tickets

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    data = tickets(args.rows, seed=args.seed).select("ticket_id", "question")
    proxy_knobs = {"latency_ms": args.proxy_latency_ms, "accuracy": args.accuracy}
    oracle_knobs = {"latency_ms": args.oracle_latency_ms}
    results: list[dict[str, Any]] = []
    with (
        simulator(**proxy_knobs) as proxy_url,
        simulator(**proxy_knobs, logprobs=False) as verbal_url,
        simulator(**proxy_knobs, confidence="random") as random_url,
        simulator(**oracle_knobs) as oracle_url,
    ):
        oracle = rp.LLM(model=ORACLE_MODEL, base_url=oracle_url, api_key="x")

        def proxy(url: str) -> rp.LLM:
            return rp.LLM(model=PROXY_MODEL, base_url=url, api_key="x")

        def cascade(url: str, confidence: str = "auto") -> rp.Cascade:
            return rp.Cascade(
                proxy(url), target=args.target, sample=args.sample, confidence=confidence
            )

        both = {"proxy": proxy_url, "oracle": oracle_url}
        results.append(run("oracle only", data, oracle, {"oracle": oracle_url}))
        results.append(run("proxy only", data, proxy(proxy_url), {"proxy": proxy_url}))
        results.append(run("cascade logprobs", data, oracle, both, cascade=cascade(proxy_url)))
        results.append(
            run(
                "cascade verbal",
                data,
                oracle,
                {"proxy": verbal_url, "oracle": oracle_url},
                cascade=cascade(verbal_url, "verbal"),
            )
        )
        results.append(
            run(
                "cascade uninformative",
                data,
                oracle,
                {"proxy": random_url, "oracle": oracle_url},
                cascade=cascade(random_url),
            )
        )
        if args.spark:
            from pyspark.sql import SparkSession

            session = (
                SparkSession.builder.master("local[2]")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .getOrCreate()
            )
            session.sparkContext.setLogLevel("ERROR")
            results.append(
                run(
                    "cascade logprobs",
                    data,
                    oracle,
                    both,
                    cascade=cascade(proxy_url),
                    spark=session,
                )
            )
            session.stop()
    out = {
        "bench": "cascade",
        "rows": args.rows,
        "settings": {
            "proxy_model": PROXY_MODEL,
            "oracle_model": ORACLE_MODEL,
            "proxy_accuracy": args.accuracy,
            "proxy_latency_ms": args.proxy_latency_ms,
            "oracle_latency_ms": args.oracle_latency_ms,
            "target": args.target,
            "delta": 0.05,
            "sample": args.sample,
            "batch_size": 16,
            "prices_per_mtok": {
                m: [rp.LLM(model=m).price().input_per_mtok, rp.LLM(model=m).price().output_per_mtok]
                for m in (PROXY_MODEL, ORACLE_MODEL)
            },
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": os.getloadavg()[0],
        },
        "results": results,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
