"""Spark throughput against the simulator's ceiling (issue 16's must-show).

The simulator answers every request after ``--latency-ms`` (200) while holding
one of ``--sim-cap`` (64) slots, so no client can pass ``cap / latency`` = 320
calls/s.  This script classifies ``--rows`` tickets (ticket id appended: every
text distinct, so dedup cannot shrink the work) at batch 16 on:

- ``local``: ``SparkSession`` on ``local[2]``;
- ``cluster``: a real standalone cluster on 127.0.0.1 started from the pyspark
  package (a master and 2 workers, 1 core and 1 GiB each; executors are their
  own JVMs with their own Python workers), stopped at the end.

and, in each, through these paths (``--paths``):

- ``step``: the lazy step, ``sdf.transform(rp.spark.classify(...))``, then the
  action ``toArrow()`` (every result row comes back to the driver);
- ``sql``: ``rp.spark.register`` and ``spark.sql("SELECT ticket_id,
  rlm_classify(question, array(...)) ... FROM t").toArrow()``;
- ``eager`` (not by default): ``rp.classify(sdf, ...)`` (driver preflight
  call + ``localCheckpoint``), then ``toArrow()``.

Method: the input is built and cached in 2 equal partitions, and each path is
warmed once on 256 other rows (Python workers started, imports done) before
the timed runs, untimed.  Each of ``--repeats`` timed runs gets a fresh
simulator process; the timed span is the planning plus the action.  *calls*
are the simulator's own ``/stats`` count, *calls/s* = calls / wall seconds,
*% of ceiling* = calls/s / 320.  Every input row must come back exactly once
(``rows_ok``); *correct* counts labels equal to the simulator's intended one.
The JSON records the load average at the start and end of the script and
before/after each run, the CPU of the client (driver, JVMs, Python workers;
for the cluster, the master and worker JVMs and their executors too), of the
simulator and of the rest of the machine.

Targets (medians of the ``--repeats`` runs of ``step``; the other paths run
``--other-repeats`` times): local ``step`` ≥ 90% of the ceiling, cluster
``step`` ≥ 85%.  The default 60,000 rows (3,750 calls, 11.7 s at the
ceiling) keep Spark's fixed cost per action (job start, the last result rows
to the driver: a few tenths of a second) a small part of the wall time.  Everything (both configurations) finishes within
``--max-seconds`` (300): a run that would start past it is skipped and listed.

Run (quiet machine)::

    .venv/bin/python bench/spark_throughput.py            # writes bench/results/spark_throughput.{json,md}
    .venv/bin/python bench/spark_throughput.py --rows 4000 --repeats 1 --no-write   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout  # noqa: E402  (bench/fanout.py: simulator process, CPU meter, data, scoring)

ROOT = fanout.ROOT
RESULTS = fanout.RESULTS
LABELS = fanout.LABELS
TARGETS = {"local": 90.0, "cluster": 85.0}
WARM_ROWS = 256


# --------------------------------------------------------------------------- sessions


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def standalone_cluster(work: Path) -> Iterator[tuple[str, list[int]]]:
    """A master and 2 workers (1 core, 1 GiB each) on 127.0.0.1: ``(master URL, their PIDs)``."""
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    env = {
        **os.environ,
        "SPARK_HOME": home,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOG_DIR": str(work / "logs"),
    }
    port, ui = _port(), _port()
    spark_class = os.path.join(home, "bin", "spark-class")
    procs = [
        subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(ui)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]
    master = f"spark://127.0.0.1:{port}"
    for i in range(2):
        procs.append(
            subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(_port()),
                 "--work-dir", str(work / f"worker{i}")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:  # noqa: S310
                    status = json.load(r)
                if sum(w.get("state") == "ALIVE" for w in status.get("workers", [])) == 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                msg = "standalone cluster did not start (2 alive workers expected within 90 s)"
                raise RuntimeError(msg)
            time.sleep(0.5)
        yield master, [p.pid for p in procs]
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def spark_session(master: str) -> Any:
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName("rlm_pipeline-bench-spark-throughput")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.pyspark.python", sys.executable)
    )
    if master.startswith("spark://"):
        builder = builder.config("spark.executor.cores", "1").config("spark.executor.memory", "768m")
        builder = builder.config("spark.cores.max", "2")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if master.startswith("spark://"):  # both executors registered (driver + 2 block managers)
        deadline = time.monotonic() + 90
        while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 3:  # noqa: SLF001
            if time.monotonic() > deadline:
                msg = "the cluster's 2 executors did not register within 90 s"
                raise RuntimeError(msg)
            time.sleep(0.5)
    spark.range(100).selectExpr("sum(id)").collect()  # warm the JVM(s)
    return spark


def input_frame(spark: Any, ids: list[int], texts: list[str]) -> Any:
    """The rows as a cached DataFrame in 2 equal partitions (built untimed)."""
    import pyarrow as pa

    table = pa.table({"ticket_id": pa.array(ids, pa.int64()), "question": pa.array(texts, pa.string())})
    sdf = spark.createDataFrame(table).repartition(2).persist()
    assert sdf.count() == len(ids)
    return sdf


# --------------------------------------------------------------------------- the paths


Result = tuple[dict[int, "str | None"], int, int, dict[str, Any]]
Run = Callable[[Any], tuple[Any, Callable[[], int], float]]  # sdf -> (Arrow table, usage calls, plan s)


def _llm(base_url: str, concurrency: int) -> Any:
    import rlm_pipeline as rp

    return rp.LLM(model="sim", base_url=base_url, api_key="x", max_concurrency=concurrency)


def path_run(path: str, spark: Any, base_url: str, concurrency: int) -> Run:
    """The timed operation of one path: planning plus the action, every row to the driver."""
    import rlm_pipeline as rp

    llm = _llm(base_url, concurrency)
    if path == "step":

        def step(sdf: Any) -> tuple[Any, Callable[[], int], float]:
            t0 = time.perf_counter()
            op = rp.spark.classify("question", LABELS, llm=llm, batch_size=16)
            answered = sdf.transform(op)  # persisted by the step (filled by the action)
            out = answered.select("ticket_id", "label", "label_error")
            planned = time.perf_counter() - t0
            table = out.toArrow()

            def usage_calls() -> int:  # after the timed part: read the usage, drop the answers
                answered.unpersist()
                return op.usage.calls

            return table, usage_calls, planned

        return step
    if path == "sql":
        fns = rp.spark.register(spark, llm=llm, batch_size=16)  # registration is not timed
        labels = ", ".join(f"'{label}'" for label in LABELS)

        def sql(sdf: Any) -> tuple[Any, Callable[[], int], float]:
            t0 = time.perf_counter()
            sdf.createOrReplaceTempView("bench_tickets")
            calls0 = fns.usage.calls if fns.usage is not None else 0
            out = spark.sql(
                "SELECT ticket_id, r.label AS label, r.error AS label_error FROM ("
                f"SELECT ticket_id, rlm_classify(question, array({labels})) AS r FROM bench_tickets)"
            )
            planned = time.perf_counter() - t0
            table = out.toArrow()
            return table, lambda: (fns.usage.calls if fns.usage is not None else 0) - calls0, planned

        return sql
    if path == "eager":

        def eager(sdf: Any) -> tuple[Any, Callable[[], int], float]:
            from rlm_pipeline.llm.usage import UsageMeter

            meter = UsageMeter()
            out = rp.classify(sdf, column="question", labels=LABELS, llm=llm, batch_size=16, meter=meter)
            table = out.select("ticket_id", "label", "label_error").toArrow()
            return table, lambda: meter.snapshot().calls, 0.0  # planning and run are one call

        return eager
    msg = f"unknown path {path!r}"
    raise ValueError(msg)


def body_for(path: str, spark: Any, sdf: Any, warm: Any, concurrency: int) -> fanout.Body:
    """fanout.measure's three phases: prepare + warm up (untimed), run (timed), collect."""

    def body(base_url: str) -> Callable[[], Callable[[], Result]]:
        run = path_run(path, spark, base_url, concurrency)
        if warm is not None:  # untimed: Python workers up, imports done (first repeat only)
            warm_table, warm_calls, _ = run(warm)
            warm_calls()  # (drops the step's persisted warm-up answers)
            if warm_table.num_rows != WARM_ROWS:
                msg = f"warm-up returned {warm_table.num_rows} of {WARM_ROWS} rows"
                raise RuntimeError(msg)

        def go() -> Callable[[], Result]:
            table, usage_calls, planned = run(sdf)

            def finish() -> Result:
                got, n_out, n_err = fanout._collect(table, [])  # noqa: SLF001
                return got, n_out, n_err, {"usage_calls": usage_calls(), "plan_s": round(planned, 3)}

            return finish

        return go

    return body


# --------------------------------------------------------------------------- measuring


def measure(system: str, args: argparse.Namespace, ids: list[int], texts: list[str],
            body: fanout.Body, extra_roots: list[int]) -> fanout.Run:
    """One timed run against a fresh simulator (as fanout.measure; the cluster's JVMs count
    as the client's CPU too)."""
    t_start = time.monotonic()
    sim = fanout.SimProcess(args.latency_ms, args.sim_cap)
    try:
        t_sim = time.monotonic()
        go = body(sim.base_url)
        t_body = time.monotonic()
        idle = fanout.settle(args.settle_busy, args.settle_max_s) if args.settle_max_s > 0 else None
        print(f"[spark]   {system}: simulator up {t_sim - t_start:.1f} s, prepared (warm-up) "
              f"{t_body - t_sim:.1f} s, settled {time.monotonic() - t_body:.1f} s", flush=True)
        sim.reset_stats()
        me = os.getpid()
        meter = fanout.CpuMeter({"sim": lambda: [sim.proc.pid], "client": lambda: [me, *extra_roots]})
        load0 = os.getloadavg()
        meter.start()
        t0 = time.perf_counter()
        epoch0 = time.time()
        finish = go()
        wall = time.perf_counter() - t0
        epoch1 = time.time()
        cpu = meter.stop()
        load1 = os.getloadavg()
        stats = sim.stats()
        got, n_out, n_err, extra = finish()
    finally:
        sim.close()
    present, correct = fanout._score(ids, texts, got, n_out)  # noqa: SLF001
    extra["rows_out"] = n_out
    extra["rows_ok"] = n_out == len(ids) and present == len(ids)  # every row exactly once
    extra["busy_cores_before"] = None if idle is None else round(idle, 2)
    log = stats.get("requests_log") or []
    if log:
        extra["first_request_after_s"] = round(min(e[0] for e in log) - epoch0, 3)
        extra["after_last_reply_s"] = round(epoch1 - max(e[1] for e in log), 3)
    return fanout.Run(
        system, len(ids), wall, stats, cpu, present, correct, n_err,
        tuple(round(x, 2) for x in load0),  # type: ignore[arg-type]
        tuple(round(x, 2) for x in load1),  # type: ignore[arg-type]
        extra,
    )


# --------------------------------------------------------------------------- report


def render_md(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# Spark throughput (simulator)",
        "",
        f"Generated by `bench/spark_throughput.py` on {meta['date']}. **Simulator, not a model**: "
        f"latency {meta['latency_ms']:.0f} ms, {meta['sim_cap']} slots, ceiling "
        f"{meta['ceiling_calls_per_s']:.0f} calls/s; our max_concurrency {meta['our_max_concurrency']} "
        f"(shared over the 2 tasks); batch 16; {meta['rows']:,} rows, all texts distinct.",
        f"Machine: {meta['cpus']} cores; load average at start {meta['loadavg_start']}, at end "
        f"{meta['loadavg_end']}; code at {meta['git_commit']}; {meta['elapsed_s']:.0f} s in all.",
        "",
        "| config | path | repeats | wall s | calls | calls/s | % of ceiling | target | calls/s while sending "
        "| rows ok | correct | errors | planning s | before 1st request s | after last reply s | client CPU ms/call "
        "| load (1 min) before → after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["table"]:
        if row.get("skipped"):
            lines.append(f"| {row['config']} | {row['path']} | skipped: {row['skipped']} |"
                         + " |" * 14)
            continue
        target = row.get("target_pct")
        lines.append(
            "| {config} | {path} | {repeats} | {wall_s:.2f} | {calls:,} | {calls_per_s:.1f} "
            "| **{pct_of_ceiling:.1f}%** | {target} | {cps} | {ok} | {rows_correct:,}/{rows:,} "
            "| {rows_with_error:,} | {p} | {b} | {a} | {cc} | {l0} → {l1} |".format(
                p=fanout._fmt(row.get("plan_s")),  # noqa: SLF001
                target=f"≥ {target:.0f}%" if target else "–",
                cps=fanout._fmt(row.get("calls_per_s_while_sending"), 1),  # noqa: SLF001
                ok="yes" if row.get("rows_ok") else "**NO**",
                b=fanout._fmt(row.get("first_request_after_s")),  # noqa: SLF001
                a=fanout._fmt(row.get("after_last_reply_s")),  # noqa: SLF001
                cc=fanout._fmt(row.get("client_cpu_ms_per_call")),  # noqa: SLF001
                l0=row["loadavg_before"][0], l1=row["loadavg_after"][0], **row,
            )
        )
    lines += [
        "",
        "*wall s*: planning + the action (every result row in the driver), median of the repeats; "
        "*planning s*: the part of it before the action (the step's transform, spark.sql); "
        "*calls*: the simulator's `/stats`; *rows ok*: every input row came back exactly once in "
        "every repeat; *correct*: label equal to `rlm_pipeline.sim.intended_label`.",
        "",
    ]
    if result.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the step path (the must-show)")
    parser.add_argument("--other-repeats", type=int, default=1, help="timed runs of the other paths (sql, eager)")
    parser.add_argument("--configs", default="local,cluster", help="comma list of: local,cluster")
    parser.add_argument("--paths", default="step,sql", help="comma list of: step,sql,eager")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--sim-cap", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64, help="our max_concurrency (whole job)")
    parser.add_argument("--settle-busy", type=float, default=0.3,
                        help="before each timed run wait until other jobs use fewer cores than this")
    parser.add_argument("--settle-max-s", type=float, default=5.0, help="longest wait for --settle-busy (0: off)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="skip runs that would start later")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    args = parser.parse_args(argv)

    started = time.monotonic()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    ceiling = args.sim_cap / (args.latency_ms / 1000.0)
    ids, texts, _ = fanout.make_rows(args.rows, args.seed)
    warm_ids, warm_texts, _ = fanout.make_rows(WARM_ROWS, args.seed + 1)
    warm_ids = [i + 10_000_000 for i in warm_ids]  # other rows than the measured ones
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rows": args.rows,
        "seed": args.seed,
        "distinct_texts": len(set(texts)),
        "latency_ms": args.latency_ms,
        "sim_cap": args.sim_cap,
        "ceiling_calls_per_s": ceiling,
        "our_max_concurrency": args.concurrency,
        "batch_size": 16,
        "repeats": {"step": args.repeats, "other paths": args.other_repeats},
        "configs": configs,
        "paths": paths,
        "cpus": os.cpu_count(),
        "loadavg_start": tuple(round(x, 2) for x in os.getloadavg()),
        "git_commit": fanout._git_commit(),  # noqa: SLF001
        "targets_pct_of_ceiling": {f"{c} step": t for c, t in TARGETS.items()},
    }
    print(f"[spark] {args.rows:,} rows, ceiling {ceiling:.0f} calls/s, configs {configs}, paths {paths}; "
          f"load {meta['loadavg_start']}", flush=True)
    table: list[dict[str, Any]] = []
    runs_by: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = [
        f"Each path warmed once on {WARM_ROWS} other rows before its timed runs (untimed).",
    ]
    # a run's expected length: calls at the ceiling, plus slack for Spark and the simulator start
    run_s = args.rows / 16 / ceiling * 1.4 + 4.0

    for config in configs:
        work = Path(tempfile.mkdtemp(prefix=f"spark-throughput-{config}-"))
        try:
            with _config_session(config, work) as (spark, roots):
                _say(started, f"{config}: session up")
                sdf = input_frame(spark, ids, texts)
                warm = input_frame(spark, warm_ids, warm_texts)
                _say(started, f"{config}: input cached")
                for path in paths:
                    label = f"{config} {path}"
                    runs: list[dict[str, Any]] = []
                    repeats = args.repeats if path == "step" else args.other_repeats
                    for r in range(repeats):
                        if time.monotonic() - started + run_s > args.max_seconds:
                            notes.append(f"{label}: run {r + 1} skipped (--max-seconds {args.max_seconds:.0f})")
                            break
                        try:
                            body = body_for(path, spark, sdf, warm if r == 0 else None, args.concurrency)
                            run = measure(label, args, ids, texts, body, roots)
                        except Exception as exc:  # keep going: report what failed
                            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                            print(f"[spark] {label} run {r + 1} FAILED: {msg}", flush=True)
                            notes.append(f"{label}: run {r + 1} failed: {msg}")
                            break
                        s = run.summary(ceiling)
                        s.pop("in_flight_every_0_5s", None)
                        s.update(config=config, path=path, batch=16)
                        runs.append(s)
                        print(f"[spark] {label} run {r + 1}/{repeats}: {s['wall_s']:.2f} s, "
                              f"{s['calls']:,} calls, {s['calls_per_s']:.1f} calls/s "
                              f"({s['pct_of_ceiling']:.1f}%), while sending {s['calls_per_s_while_sending']}, "
                              f"rows ok {s['rows_ok']}, correct {s['rows_correct']:,}/{s['rows']:,}, "
                              f"usage calls {s['usage_calls']}, load {s['loadavg_before']} -> "
                              f"{s['loadavg_after']}", flush=True)
                    runs_by[label] = runs
                    if runs:
                        row = fanout.median_row(runs)
                        row["rows_ok"] = all(x["rows_ok"] for x in runs)
                        row["target_pct"] = TARGETS.get(config) if path == "step" else None
                        row["target_met"] = (
                            None if row["target_pct"] is None else row["pct_of_ceiling"] >= row["target_pct"]
                        )
                        table.append(row)
                    else:
                        table.append({"config": config, "path": path, "skipped": "no run finished"})
                sdf.unpersist()
        except Exception as exc:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            print(f"[spark] {config} FAILED: {msg}", flush=True)
            table.append({"config": config, "path": ",".join(paths), "skipped": msg.replace("|", "/")})
        finally:
            shutil.rmtree(work, ignore_errors=True)

    meta["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    result = {"meta": meta, "table": table, "runs": runs_by, "notes": notes}
    for row in table:
        if row.get("skipped"):
            print(f"[spark] {row['config']} {row['path']}: skipped: {row['skipped']}", flush=True)
            continue
        target = row.get("target_pct")
        verdict = "" if not target else (" MET" if row["pct_of_ceiling"] >= target else " NOT MET") + f" (≥ {target:.0f}%)"
        print(f"[spark] {row['config']:<8} {row['path']:<6} {row['calls_per_s']:>6.1f} calls/s "
              f"{row['pct_of_ceiling']:>5.1f}% of ceiling{verdict}; rows ok {row['rows_ok']}, "
              f"correct {row['rows_correct']:,}/{row['rows']:,}", flush=True)
    print(f"[spark] {meta['elapsed_s']:.0f} s in all; load {meta['loadavg_start']} -> {meta['loadavg_end']}",
          flush=True)
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for runs in runs_by.values():
            for r in runs:
                r.pop("requests_log", None)
        (out / "spark_throughput.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (out / "spark_throughput.md").write_text(render_md(result))
        print(f"[spark] wrote {out / 'spark_throughput.json'} and {out / 'spark_throughput.md'}", flush=True)
    ok = all(not row.get("skipped") and row.get("rows_ok") for row in table)
    return 0 if ok else 1


def _say(started: float, what: str) -> None:
    print(f"[spark] {time.monotonic() - started:6.1f} s  {what}", flush=True)


@contextmanager
def _config_session(config: str, work: Path) -> Iterator[tuple[Any, list[int]]]:
    """The Spark session of ``config`` and the extra PIDs whose CPU counts as the client's."""
    if config == "local":
        spark = spark_session("local[2]")
        try:
            yield spark, []
        finally:
            spark.stop()
        return
    if config == "cluster":
        with standalone_cluster(work) as (master, pids):
            spark = spark_session(master)
            try:
                yield spark, pids
            finally:
                spark.stop()
        return
    msg = f"unknown config {config!r} (local, cluster)"
    raise ValueError(msg)


if __name__ == "__main__":
    sys.exit(main())
