"""Scan benchmark: ``filter(user_id IN (3 ids)) -> count`` over 10,000,000 tickets.

Times, in one run and on the same Parquet files, the same query through

- ``PolarsEngine`` (``open_engine(path).filter("context", where, name)``: the
  expression is checked, compiled to a Polars expression and run over a lazy
  ``scan_parquet``, so only the ``user_id`` column is read);
- ``SparkEngine`` on a ``local[2]`` session (the same call; Spark SQL text over
  ``spark.read.parquet``);
- DuckDB (``SELECT count(*) FROM read_parquet(...) WHERE user_id IN (...)``),
  the reference.

Each is warmed up once, then repeated ``--repeats`` times; medians are reported.
Peak RSS of the Polars path (imports, open, filter, count) and of the DuckDB
query are measured in fresh subprocesses (``VmHWM`` of /proc/self/status:
``ru_maxrss`` would carry the parent's peak over ``exec``).  Targets (issue 4):
Polars within 1.5x of DuckDB, Polars peak RSS under 1 GiB; Spark is reported as is.

The dataset (ticket_id, date, user_id, question, true_label; 8 files) is
generated once, vectorised, into ``bench/.cache/`` (gitignored).  Other jobs may
share the machine's cores: the load average is recorded next to the numbers.

Run::

    .venv/bin/python bench/expr_scan.py                  # writes bench/results/expr_scan.json
    .venv/bin/python bench/expr_scan.py --rows 1000000   # a quick look (own cache dir)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results" / "expr_scan.json"
FILES = 8
USERS = 200_000
IDS = (4242, 123_456, 199_999)
WHERE = f"user_id IN ({', '.join(str(i) for i in IDS)})"
LABELS = ("billing", "technical", "account", "other")
TEMPLATES = {
    "billing": [
        "I was charged twice on my last invoice",
        "Why is my bill higher this month?",
        "Please refund the duplicate payment",
    ],
    "technical": [
        "The app crashes when I upload a file",
        "Sync fails with error 500 since yesterday",
        "The export button does nothing",
    ],
    "account": [
        "How do I reset my password?",
        "I cannot change the email on my account",
        "Please delete my profile",
    ],
    "other": [
        "Do you have an office in Berlin?",
        "Thanks for the quick help last week",
        "Is there a student discount?",
    ],
}


def dataset(rows: int) -> Path:
    """The cached dataset directory for ``rows`` rows, generated on first use."""
    folder = CACHE / f"tickets_{rows}"
    done = folder / "_DONE"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    texts = [t for label in LABELS for t in TEMPLATES[label]]
    text_labels = [label for label in LABELS for _ in TEMPLATES[label]]
    rng = np.random.default_rng(0)
    per_file = -(-rows // FILES)
    start = 0
    for index in range(FILES):
        n = min(per_file, rows - start)
        which = rng.integers(0, len(texts), n)
        frame = pl.DataFrame(
            {
                "ticket_id": np.arange(start, start + n, dtype=np.int64),
                "date": (np.datetime64("2024-01-01") + rng.integers(0, 730, n)).astype(
                    "datetime64[D]"
                ),
                "user_id": rng.integers(0, USERS, n, dtype=np.int64),
                "question": pl.Series(texts).gather(which),
                "true_label": pl.Series(text_labels).gather(which),
            }
        ).with_columns(
            pl.format("{} (ticket {})", pl.col("question"), pl.col("ticket_id")).alias("question")
        )
        frame.write_parquet(folder / f"part-{index:03d}.parquet", row_group_size=250_000)
        start += n
    done.write_text("ok")
    return folder


def timed(run: Callable[[], int], repeats: int) -> tuple[list[float], int]:
    """Warm up once, then time ``repeats`` runs; return the times and the (checked) result."""
    expected = run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        got = run()
        times.append(time.perf_counter() - t0)
        if got != expected:
            msg = f"result changed between runs: {got} != {expected}"
            raise RuntimeError(msg)
    return times, expected


def bench_polars(folder: Path, repeats: int) -> tuple[list[float], int]:
    from rlm_pipeline.engines import open_engine

    def run() -> int:
        engine = open_engine(folder)
        return engine.filter("context", WHERE, "picked")

    return timed(run, repeats)


def bench_duckdb(folder: Path, repeats: int) -> tuple[list[float], int]:
    """The query alone on one open connection (a fresh connection costs more than the scan)."""
    import duckdb

    sql = f"SELECT count(*) FROM read_parquet('{folder}/*.parquet') WHERE {WHERE}"
    con = duckdb.connect()
    try:
        return timed(lambda: int(con.execute(sql).fetchall()[0][0]), repeats)
    finally:
        con.close()


def bench_spark(folder: Path, repeats: int) -> tuple[list[float], int, float, list[float]]:
    """Open + filter + count per run; also the filter + count alone on an open engine."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from rlm_pipeline.engines import open_engine

    t0 = time.perf_counter()
    session = (
        SparkSession.builder.master("local[2]")
        .appName("rlm_pipeline-bench-expr-scan")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t0
    try:

        def run() -> int:
            engine = open_engine(folder, "spark", spark=session)
            try:
                return engine.filter("context", WHERE, "picked")
            finally:
                engine.close()

        times, result = timed(run, repeats)
        engine = open_engine(folder, "spark", spark=session)
        filter_only, _ = timed(lambda: engine.filter("context", WHERE, "picked"), repeats)
        engine.close()
    finally:
        session.stop()
    return times, result, startup, filter_only


def peak_rss_mib(which: str, folder: Path) -> dict[str, float]:
    """Peak RSS (MiB) of a fresh process running one path, and of one that only imports."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def child(which: str, folder: Path) -> None:
    """Run one path once in this (fresh) process and print its peak RSS as JSON."""
    if which == "polars":
        from rlm_pipeline.engines import open_engine

        imported = _peak_mib()
        count = open_engine(folder).filter("context", WHERE, "picked")
    else:
        import duckdb

        imported = _peak_mib()
        sql = f"SELECT count(*) FROM read_parquet('{folder}/*.parquet') WHERE {WHERE}"
        with duckdb.connect() as con:
            count = int(con.execute(sql).fetchall()[0][0])
    peak = _peak_mib()
    print(
        json.dumps(
            {"peak_mib": round(peak, 1), "after_import_mib": round(imported, 1), "count": count}
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=["polars", "duckdb"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return 0

    t0 = time.perf_counter()
    folder = dataset(args.rows)
    files = sorted(folder.glob("*.parquet"))
    print(
        f"dataset: {args.rows:,} rows, {len(files)} files, "
        f"{sum(f.stat().st_size for f in files) / 2**20:.0f} MiB in {folder} "
        f"(ready in {time.perf_counter() - t0:.1f}s)"
    )
    load_before = os.getloadavg()

    results: dict[str, dict[str, Any]] = {}
    times, duck_count = bench_duckdb(folder, args.repeats)
    results["duckdb"] = {"runs_s": times, "count": duck_count}
    times, polars_count = bench_polars(folder, args.repeats)
    results["polars"] = {"runs_s": times, "count": polars_count}
    if not args.skip_spark:
        times, spark_count, startup, filter_only = bench_spark(folder, args.repeats)
        results["spark"] = {"runs_s": times, "count": spark_count, "session_start_s": startup}
        results["spark_filter_only"] = {"runs_s": filter_only, "count": spark_count}
    for entry in results.values():
        entry["median_s"] = statistics.median(entry["runs_s"])
    counts = {name: entry["count"] for name, entry in results.items()}
    if len(set(counts.values())) != 1:
        msg = f"engines disagree on the count: {counts}"
        raise RuntimeError(msg)

    rss = {"polars": peak_rss_mib("polars", folder), "duckdb": peak_rss_mib("duckdb", folder)}
    load_after = os.getloadavg()
    ratio = results["polars"]["median_s"] / results["duckdb"]["median_s"]
    report = {
        "benchmark": "expr_scan",
        "query": f"filter({WHERE}) -> count",
        "rows": args.rows,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "matching_rows": duck_count,
        "repeats": args.repeats,
        "results": results,
        "peak_rss_mib": rss,
        "polars_vs_duckdb": round(ratio, 3),
        "targets": {
            "polars_within_1_5x_duckdb": ratio <= 1.5,
            "polars_peak_rss_under_1_gib": rss["polars"]["peak_mib"] < 1024,
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "note": "other jobs may share the cores; see loadavg",
        },
        "versions": _versions(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nfilter({WHERE}) -> count = {duck_count} rows; {args.repeats} runs each, medians")
    print(f"{'engine':<18}{'median s':>10}{'min s':>9}{'max s':>9}{'peak RSS MiB':>14}")
    for name, entry in results.items():
        peak = rss.get(name, {}).get("peak_mib", float("nan"))
        print(
            f"{name:<18}{entry['median_s']:>10.3f}{min(entry['runs_s']):>9.3f}"
            f"{max(entry['runs_s']):>9.3f}{peak:>14.0f}"
        )
    print(
        f"polars / duckdb = {ratio:.2f}x (target <= 1.5x); polars peak RSS "
        f"{rss['polars']['peak_mib']:.0f} MiB (target < 1024); load avg "
        f"{load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} cpus"
    )
    print(f"wrote {args.output}")
    return 0


def _peak_mib() -> float:
    """Peak resident memory of this process (MiB), from ``VmHWM``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    msg = "VmHWM not found in /proc/self/status"
    raise RuntimeError(msg)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("polars", "pyspark", "duckdb", "pyarrow"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
