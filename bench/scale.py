"""Scale benchmark: classify N rows with D distinct texts, Parquet in -> Parquet out.

Issue 19.  For each engine (Polars streaming through
``polars_fanout.classify_to_parquet``; Spark ``local[2]`` through
``spark_fanout.apply`` then ``DataFrame.write.parquet``) and each scenario:

- ``lat0``: the simulator answers at once (latency 0, 256 slots): the
  operator's own overhead on first sight (fresh cache file);
- ``lat0-cached``: the same command again on the same cache file: every row
  from the stored row answers (no call);
- ``lat200``: 200 ms per call, 64 slots (ceiling 320 calls/s = 5,120 distinct
  rows/s at batch 16), fresh cache file;
- ``prefilled-cached``: a fresh cache file filled, before the timed run, with
  every distinct text's intended label as its row answer (what a first run
  stores): a fully cached re-run without the first-sight run before it.

Each run is a child process (``python bench/scale.py child ...``) whose
process tree (for Spark: driver, JVM, Python workers) is sampled with psutil
every 0.25 s for peak RSS; the simulator runs in its own process (its RSS is
reported apart).  Reported: rows/s (rows / wall of the classify call, without
interpreter start and imports, which are reported too), peak RSS, cache file
size, calls and tokens from the simulator's ``/stats``, the machine's load.
The benchmark checks every output: row count, every ``row_id`` exactly once,
every label equal to the simulator's intended label for its text.

The data: ``D`` ticket texts from ``rlm_pipeline.datasets`` templates with a
reference number (so they are distinct), row ``r`` has text
``(r * 7919) % D`` (each text ``N / D`` times, spread over the file), written
once per size to ``--work`` (reused by later runs).

Every model call goes to ``rlm_pipeline.sim`` (a simulator, not a model): the
numbers measure the machinery (dedup, row store, streaming, fan-out), not
answer quality.  The code measured is a snapshot of the committed tree
(``git archive HEAD``) so other work in the tree cannot change it mid-run.

Run::

    nice -n 10 .venv/bin/python bench/scale.py --rows 10000000 --distinct 1000000
    .venv/bin/python bench/scale.py --rows 200000 --distinct 20000 --engines polars  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LABELS = ("billing", "technical", "account", "other")
STRIDE = 7919  # row r -> text (r * STRIDE) % D (a prime: coprime to D unless D is a multiple)
SCENARIOS = {
    "lat0": {"latency_ms": 0, "slots": 256, "fresh": True},
    "lat0-cached": {"latency_ms": 0, "slots": 256, "fresh": False},
    "lat200": {"latency_ms": 200, "slots": 64, "fresh": True},
    # a fresh cache file filled with every text's right answer before the run (not timed):
    # a fully cached re-run without the first-sight run before it
    "prefilled-cached": {"latency_ms": 0, "slots": 256, "fresh": True, "prefill": True},
}


# ----------------------------------------------------------------------------- data


def make_data(work: Path, rows: int, distinct: int) -> tuple[Path, Path]:
    """``input.parquet`` (row_id, text_id, question) and ``expected.parquet`` (text_id, expected)."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlm_pipeline.datasets.templates import FILLERS, TEMPLATES
    from rlm_pipeline.sim import intended_label

    folder = work / f"data-{rows}-{distinct}"
    source, expected = folder / "input.parquet", folder / "expected.parquet"
    if source.exists() and expected.exists():
        return source, expected
    if distinct % STRIDE == 0:
        raise SystemExit(f"--distinct must not be a multiple of {STRIDE}")
    folder.mkdir(parents=True, exist_ok=True)
    import random

    rng = random.Random(0)
    texts: list[str] = []
    for i in range(distinct):
        label = LABELS[rng.randrange(len(LABELS))]
        template = rng.choice(TEMPLATES[label])
        text = template.format(**{k: rng.choice(v) for k, v in FILLERS.items()})
        texts.append(f"{text} (ref {i})")
    truth = [intended_label(t, LABELS) for t in texts]
    pl.DataFrame({"text_id": range(distinct), "expected": truth}).write_parquet(expected)
    pool = pa.array(texts, pa.large_string())
    tmp = folder / "input.parquet.tmp"
    writer: pq.ParquetWriter | None = None
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        ids = pa.array(range(start, min(rows, start + chunk)), pa.int64())
        import pyarrow.compute as pc

        text_ids = pc.remainder(pc.multiply(ids, STRIDE), distinct)
        table = pa.table({
            "row_id": ids,
            "text_id": text_ids,
            "question": pc.cast(pc.take(pool, text_ids), pa.string()),
        })
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=256_000)
    assert writer is not None
    writer.close()
    tmp.rename(source)
    return source, expected


def check_output(output: Path, expected: Path, rows: int) -> dict[str, Any]:
    """Row count, every row_id once, labels equal to the simulator's intent (streaming)."""
    import polars as pl

    # Spark writes a directory of part files beside .crc checksums: read the parts only.
    out = pl.scan_parquet(str(output / "*.parquet") if output.is_dir() else str(output))
    got = out.select(
        pl.len().alias("rows"),
        pl.col("row_id").n_unique().alias("distinct_row_ids"),
        pl.col("row_id").min().alias("min_row_id"),
        pl.col("row_id").max().alias("max_row_id"),
        pl.col("label").null_count().alias("null_labels"),
    ).collect().row(0, named=True)
    wrong = (
        out.select("text_id", "label")
        .join(pl.scan_parquet(str(expected)), on="text_id", how="left")
        .filter(pl.col("label").ne_missing(pl.col("expected")))
        .select(pl.len())
        .collect()
        .item()
    )
    ok = (
        got["rows"] == rows
        and got["distinct_row_ids"] == rows
        and got["min_row_id"] == 0
        and got["max_row_id"] == rows - 1
        and wrong == 0
    )
    return {**got, "wrong_labels": int(wrong), "ok": bool(ok)}


# ----------------------------------------------------------------------------- child


def _tree_cpu() -> float:
    """User+system CPU seconds of this process and its live descendants (JVM, Python workers)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def prefill(source: str, llm: Any, spec: Any) -> None:
    """Store every distinct text's intended label as its row answer (what a first run stores)."""
    import polars as pl

    from rlm_pipeline.llm.cache import ResponseCache
    from rlm_pipeline.ops.memo import RowStore
    from rlm_pipeline.sim import intended_label

    texts = pl.scan_parquet(source).select("text_id", "question").unique("text_id").collect()
    with ResponseCache(llm.cache_path) as cache:
        store = RowStore(cache, llm, spec)
        column = texts["question"].to_list()
        for start in range(0, len(column), 100_000):
            part = column[start : start + 100_000]
            cache.put_rows({store.key(t): intended_label(t, LABELS) for t in part})


def child(args: argparse.Namespace) -> int:
    """One classify run in this process; prints one JSON line."""
    started = time.monotonic()
    import polars as pl

    import rlm_pipeline as rp
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.spec import ClassifySpec

    llm = rp.LLM(model="sim-1", base_url=args.base_url, api_key="x",
                 max_concurrency=args.concurrency, cache_path=args.cache, timeout_s=120)
    spec = ClassifySpec("question", LABELS, batch_size=args.batch_size)
    meter = UsageMeter()
    if args.prefill:  # in a process of its own: its memory is not the timed run's
        began = time.monotonic()
        prefill(args.input, llm, spec)
        print(json.dumps({"prefill_s": round(time.monotonic() - began, 3)}), flush=True)
        return 0
    if args.engine == "polars":
        from rlm_pipeline.ops import polars_fanout

        imported = time.monotonic()
        cpu_start = _tree_cpu()
        stats = polars_fanout.classify_to_parquet(
            pl.scan_parquet(args.input), spec, llm, args.output, meter=meter
        )
        done = time.monotonic()
        cpu_end = _tree_cpu()
        spark_start = 0.0
    else:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        from rlm_pipeline.ops import spark_fanout

        session = (
            SparkSession.builder.master("local[2]").appName("bench-scale")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.memory", "3g")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        spark_ready = time.monotonic()
        spark_start = spark_ready - started
        imported = spark_ready
        cpu_start = _tree_cpu()
        df = session.read.parquet(args.input)
        out, stats = spark_fanout.apply(df, spec, llm, meter=meter)
        out.write.mode("overwrite").parquet(args.output)
        done = time.monotonic()
        cpu_end = _tree_cpu()
        session.stop()
    usage = meter.snapshot()
    print(json.dumps({
        "classify_s": round(done - imported, 3),
        "classify_cpu_s": round(cpu_end - cpu_start, 2),
        "import_s": round(imported - started - spark_start, 3),
        "spark_start_s": round(spark_start, 3),
        "rows": stats.rows,
        "cached_rows": stats.cached_rows,
        "failed": stats.failed,
        "usage": usage.to_dict(),
    }), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


class Sampler(threading.Thread):
    """Peak RSS of a process tree, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.samples = pid, every, 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            rss = _tree_rss(self.pid)
            self.peak = max(self.peak, rss)
            self.samples.append((round(time.monotonic() - start, 2), rss))
            self.stop.wait(self.every)


def _snapshot(work: Path) -> tuple[Path, str]:
    """The committed package (``git archive HEAD``) in ``work/code-<sha>``; its commit."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    folder = work / f"code-{sha[:10]}"
    if not (folder / "rlm_pipeline").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "HEAD", "rlm_pipeline"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder, sha


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sim(
    latency_ms: int, slots: int, code: Path, port: int
) -> tuple[subprocess.Popen[bytes], str]:
    """A simulator process on ``port`` (the same port for every run: the endpoint is part
    of the row-answer keys, so a cached re-run must reach the same URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_pipeline", "sim-server", "--host", "127.0.0.1",
         "--port", str(port), "--latency-ms", str(latency_ms), "--max-concurrency", str(slots)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(code)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=1):  # noqa: S310
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("simulator did not start")


def sim_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats?log=0", timeout=30) as resp:  # noqa: S310
        data = json.loads(resp.read())
    return {k: data.get(k) for k in ("requests", "ok", "input_tokens", "cached_tokens",
                                     "output_tokens", "errors_by_status", "peak_active")}


def run_one(engine: str, scenario: str, source: Path, expected: Path, rows: int, distinct: int,
            work: Path, code: Path, args: argparse.Namespace) -> dict[str, Any]:
    knobs = SCENARIOS[scenario]
    cache = work / f"cache-{engine}-{rows}-{distinct}-{'lat200' if scenario == 'lat200' else 'lat0'}.sqlite"
    if knobs["fresh"]:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{cache}{suffix}").unlink(missing_ok=True)
    output = work / f"out-{engine}-{rows}.parquet"
    if output.is_dir():
        shutil.rmtree(output)
    output.unlink(missing_ok=True)
    sim, url = start_sim(int(knobs["latency_ms"]), int(knobs["slots"]), code, args.port)
    sim_peak = Sampler(sim.pid)
    sim_peak.start()
    env = {**os.environ, "PYTHONPATH": str(code), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "OPENAI_API_KEY": "x"}
    env.pop("OPENAI_BASE_URL", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "child", "--engine", engine,
           "--input", str(source), "--output", str(output), "--cache", str(cache),
           "--base-url", f"{url}/v1", "--concurrency", str(args.concurrency),
           "--batch-size", str(args.batch_size)]
    prefill_s = None
    if knobs.get("prefill"):  # fill the fresh cache file first, in its own process
        done = subprocess.run([*cmd, "--prefill"], env=env, capture_output=True, text=True,
                              cwd=str(work), check=True)
        prefill_s = json.loads(done.stdout.strip().splitlines()[-1])["prefill_s"]
    import resource

    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=str(work))
    sampler = Sampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    process_s = time.monotonic() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    sampler.stop.set()
    sampler.join()
    load_after = os.getloadavg()
    stats = sim_stats(url)
    sim_peak.stop.set()
    sim_peak.join()
    sim.terminate()
    sim.wait(timeout=30)
    record: dict[str, Any] = {
        "engine": engine, "scenario": scenario, "rows": rows, "distinct": distinct,
        "latency_ms": knobs["latency_ms"], "sim_slots": knobs["slots"],
        "concurrency": args.concurrency, "batch_size": args.batch_size,
        "exit_code": proc.returncode, "process_s": round(process_s, 2),
        "client_cpu_s": round(cpu_s, 2),
        "peak_rss_bytes": sampler.peak, "peak_rss_gib": round(sampler.peak / 2**30, 3),
        "sim_peak_rss_gib": round(sim_peak.peak / 2**30, 3),
        "sim": stats,
        "prefill_s": prefill_s,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }
    if proc.returncode != 0:
        record["error"] = err.strip().splitlines()[-5:]
        return record
    result = json.loads(out.strip().splitlines()[-1])
    record.update(result)
    record["rows_per_s"] = round(rows / result["classify_s"], 1)
    record["rows_per_client_cpu_s"] = (
        round(rows / result["classify_cpu_s"], 1) if result.get("classify_cpu_s") else None
    )
    record["cache_file_bytes"] = sum(
        os.path.getsize(f"{cache}{s}") for s in ("", "-wal") if os.path.exists(f"{cache}{s}")
    )
    record["cache_bytes_per_distinct_text"] = round(record["cache_file_bytes"] / distinct, 1)
    record["check"] = check_output(output, expected, rows)
    return record


def report(files: list[str], png: str | None) -> str:
    """A markdown table of the runs in ``files`` (and a plot: rows/s and peak RSS vs rows)."""
    runs = []
    for name in files:
        doc = json.loads(Path(name).read_text())
        runs.extend(r for r in doc["runs"] if r.get("exit_code") == 0)
    runs.sort(key=lambda r: (r["engine"], r["scenario"], r["rows"]))
    lines = [
        "| engine | scenario | rows | distinct | wall s | rows/s | rows per client CPU s "
        "| peak RSS GiB | cache MB | calls | checked | load (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['engine']} | {r['scenario']} | {r['rows']:,} | {r['distinct']:,} "
            f"| {r['classify_s']:,.1f} | {r['rows_per_s']:,.0f} "
            f"| {r.get('rows_per_client_cpu_s') or 0:,.0f} | {r['peak_rss_gib']:.2f} "
            f"| {r['cache_file_bytes'] / 1e6:,.0f} | {r['sim']['requests']:,} "
            f"| {'ok' if r['check']['ok'] else 'FAILED'} | {r['loadavg_after'][0]:.1f} |"
        )
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for (engine, scenario) in sorted({(r["engine"], r["scenario"]) for r in runs}):
            mine = sorted((r for r in runs if (r["engine"], r["scenario"]) == (engine, scenario)),
                          key=lambda r: r["rows"])
            xs = [r["rows"] for r in mine]
            label = f"{engine} {scenario}"
            left.plot(xs, [r["rows_per_s"] for r in mine], marker="o", label=label)
            right.plot(xs, [r["peak_rss_gib"] for r in mine], marker="o", label=label)
        for ax, title in ((left, "rows/s (wall of the classify call)"),
                          (right, "peak RSS of the process tree, GiB")):
            ax.set_xscale("log")
            ax.set_xlabel("rows")
            ax.set_title(title)
            ax.grid(True, alpha=0.3)
        left.set_yscale("log")
        right.axhline(2.0, color="grey", linestyle="--", linewidth=1)
        left.legend(fontsize=7)
        fig.suptitle("classify, Parquet in -> Parquet out, simulator (shared 2-core machine)",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(png, dpi=110)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    kid = sub.add_parser("child")
    kid.add_argument("--engine", required=True)
    kid.add_argument("--input", required=True)
    kid.add_argument("--output", required=True)
    kid.add_argument("--cache", required=True)
    kid.add_argument("--base-url", required=True)
    kid.add_argument("--concurrency", type=int, default=64)
    kid.add_argument("--batch-size", type=int, default=16)
    kid.add_argument("--prefill", action="store_true")
    rep_parser = sub.add_parser("report", help="markdown table and plot of result files")
    rep_parser.add_argument("files", nargs="+")
    rep_parser.add_argument("--png", default=None)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--distinct", type=int, default=1_000_000)
    parser.add_argument("--engines", default="polars,spark")
    parser.add_argument("--scenarios", default="lat0,lat0-cached,lat200")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "rlm-bench-scale"))
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/scale-<rows>.json)")
    parser.add_argument("--port", type=int, default=0, help="simulator port (default: a free one)")
    args = parser.parse_args(argv)
    if args.mode == "child":
        return child(args)
    if args.mode == "report":
        print(report(args.files, args.png))
        return 0
    args.port = args.port or free_port()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    code, sha = _snapshot(work)
    t0 = time.monotonic()
    source, expected = make_data(work, args.rows, args.distinct)
    print(f"data ready in {time.monotonic() - t0:.1f}s: {source}", flush=True)
    out_path = Path(args.out) if args.out else RESULTS / f"scale-{args.rows}.json"
    doc: dict[str, Any] = {
        "command": " ".join(["bench/scale.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": sha,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                    "nice": os.nice(0)},
        "note": "simulator (rlm_pipeline.sim), not a model; the machine is shared (see loadavg)",
        "input_bytes": source.stat().st_size,
        "runs": [],
    }
    for engine in args.engines.split(","):
        for scenario in args.scenarios.split(","):
            record = run_one(engine, scenario, source, expected, args.rows, args.distinct, work,
                             code, args)
            doc["runs"].append(record)
            brief = {k: record.get(k) for k in ("engine", "scenario", "rows", "rows_per_s",
                                                "classify_s", "process_s", "peak_rss_gib",
                                                "cache_file_bytes", "exit_code", "loadavg_after")}
            brief["ok"] = record.get("check", {}).get("ok")
            print(json.dumps(brief), flush=True)
            out_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
