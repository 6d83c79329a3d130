"""Fan-out benchmark: classify 20,000 tickets against the simulator, ours and peers.

What it measures (issue 5, "Performance"): the simulator answers every request
after ``--latency-ms`` (200) while holding one of ``--sim-cap`` (64) slots, so no
client can do better than ``cap / latency`` = 320 calls/s.  Each system gets a
*fresh* simulator in its own process (so its CPU is measured apart from the
client's) and classifies the same rows; we report rows/s, calls/s, % of the
320 calls/s ceiling, calls and tokens from the simulator's own ``/stats``, rows
present and rows whose label equals the simulator's intended label, wall
seconds, and the CPU seconds spent by the client process tree, by the
simulator process, and by the whole machine (other helpers share the 2 cores).

Systems, in one run, side by side:

- ``ours polars bs16``: ``rp.classify`` on a Polars DataFrame, batch_size 16;
- ``ours polars bs1``: the same with batch_size 1 (one row per call), on a subset;
- ``ours spark bs16``: ``rp.classify`` on a Spark DataFrame, local[2], batch_size 16;
- ``LOTUS sem_map``: lotus-ai in ``.bench-venv-lotus`` (one row per call);
- ``DocETL map``: docetl in ``.bench-venv-docetl`` (one row per call).

Ours is repeated ``--repeats`` times (medians reported); peers run once each
by default (they take minutes).  Every text gets its ticket id appended so dedup
cannot shrink the work (the distinct-text count is reported).

This is a simulator, not a model: the numbers measure the client's fan-out
machinery, not answer quality.

Run::

    .venv/bin/python bench/fanout.py                 # everything, writes bench/results/fanout.{json,md}
    .venv/bin/python bench/fanout.py --only polars   # a quick look at one system
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LABELS = ["billing", "technical", "account", "other"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.pop("OPENAI_BASE_URL", None)
warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*")


# --------------------------------------------------------------------------- CPU accounting


def _proc_cpu(pid: int) -> float | None:
    """User+system CPU seconds of one process (all its threads), None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def _kind(pid: int) -> str:
    """What a client-tree process is: driver (this process), jvm, spark_python_workers, peer, other."""
    if pid == os.getpid():
        return "driver"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return "other"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "spark_python_workers"
    if "java" in cmd.split(" ", 1)[0]:
        return "jvm"
    if "bench/peers/" in cmd:
        return "peer"
    return "other"


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children: no full /proc scan)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def _tree(root: int) -> set[int]:
    seen, stack = {root}, [root]
    while stack:
        for child in _children(stack.pop()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _machine_cpu() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over all cores, from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / CLK_TCK, sum(vals) / CLK_TCK


def settle(max_busy_cores: float, max_wait_s: float, window_s: float = 2.0) -> float:
    """Wait (up to ``max_wait_s``) until the machine's busy cores over ``window_s``
    drop below ``max_busy_cores`` (other jobs share the 2 cores); the last value seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = _machine_cpu()
        time.sleep(window_s)
        b1, t1 = _machine_cpu()
        busy = (b1 - b0) / max(window_s, 1e-9)
        if busy <= max_busy_cores or time.monotonic() >= deadline:
            return busy


class CpuMeter:
    """CPU seconds used by process trees between start() and stop().

    Polls /proc every ``interval`` s and remembers the last CPU time seen for
    each pid, so processes born and gone during the run are (mostly) counted.
    """

    def __init__(self, roots: dict[str, Callable[[], list[int]]], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self._first: dict[int, float] = {}
        self._kinds: dict[int, str] = {}
        self._last: dict[str, dict[int, float]] = {k: {} for k in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._machine0 = (0.0, 0.0)
        self.result: dict[str, float] = {}

    def _sample(self, first: bool = False) -> None:
        claimed: set[int] = set()
        for group, pids_fn in self.roots.items():
            tree: set[int] = set()
            for root in pids_fn():
                tree |= _tree(root)
            tree -= claimed
            claimed |= tree
            for pid in tree:
                cpu = _proc_cpu(pid)
                if cpu is None:
                    continue
                if first:
                    self._first[pid] = cpu
                if pid not in self._kinds:
                    self._kinds[pid] = _kind(pid)
                self._last[group][pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._sample(first=True)
        self._machine0 = _machine_cpu()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._sample()
        self._stop.set()
        self._thread.join()
        busy1, total1 = _machine_cpu()
        for group, last in self._last.items():
            self.result[group] = sum(cpu - self._first.get(pid, 0.0) for pid, cpu in last.items())
        for pid, cpu in self._last.get("client", {}).items():
            key = "client_" + self._kinds.get(pid, "other")
            self.result[key] = self.result.get(key, 0.0) + cpu - self._first.get(pid, 0.0)
        self.result["machine_busy"] = busy1 - self._machine0[0]
        self.result["machine_total"] = total1 - self._machine0[1]
        return self.result


# --------------------------------------------------------------------------- simulator process

_SIM_LAUNCHER = r"""
import sys
from rlm_pipeline.sim import SimConfig, SimServer
cfg = SimConfig(latency_ms=float(sys.argv[1]), max_concurrency=int(sys.argv[2]), max_log=2_000_000)
with SimServer(cfg) as sim:
    print(sim.base_url, flush=True)
    sys.stdin.read()
"""


class SimProcess:
    """A fresh simulator in its own Python process (its CPU is measured on its own)."""

    def __init__(self, latency_ms: float, cap: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SIM_LAUNCHER, str(latency_ms), str(cap)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1"):
            self.close()
            msg = f"simulator did not start (got {line!r})"
            raise RuntimeError(msg)
        self.base_url = line
        self.root_url = line.rsplit("/v1", 1)[0]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.root_url + "/stats", timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read())

    def reset_stats(self) -> None:
        req = urllib.request.Request(self.root_url + "/stats/reset", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30):  # noqa: S310
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.terminate()
                self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- data


def make_rows(n: int, seed: int) -> tuple[list[int], list[str], int]:
    """``n`` ticket ids and texts (ticket id appended); distinct-text counts before/after."""
    from rlm_pipeline.datasets import tickets

    df = tickets(n, seed=seed)
    ids = df["ticket_id"].to_list()
    raw = df["question"].to_list()
    texts = [f"{q} [ticket {i}]" for i, q in zip(ids, raw, strict=True)]
    return ids, texts, len(set(raw))


# --------------------------------------------------------------------------- one measured run


@dataclass
class Run:
    system: str
    rows: int
    wall_s: float
    stats: dict[str, Any]
    cpu: dict[str, float]
    present: int
    correct: int
    errors: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, ceiling: float) -> dict[str, Any]:
        calls = int(self.stats.get("requests", 0))
        log = self.stats.get("requests_log") or []
        active_s = (max(e[1] for e in log) - min(e[0] for e in log)) if log else 0.0
        return {
            "system": self.system,
            "rows": self.rows,
            "wall_s": round(self.wall_s, 3),
            "rows_per_s": round(self.rows / self.wall_s, 1) if self.wall_s else None,
            "calls": calls,
            "ok_calls": int(self.stats.get("ok", 0)),
            "calls_per_s": round(calls / self.wall_s, 1) if self.wall_s else None,
            "pct_of_ceiling": round(100 * calls / self.wall_s / ceiling, 1) if self.wall_s else None,
            "first_to_last_request_s": round(active_s, 3),
            "calls_per_s_while_sending": round(calls / active_s, 1) if active_s else None,
            # Little's law: average requests in flight while sending (64 = the server's cap)
            "mean_in_flight_while_sending": round(sum(e[1] - e[0] for e in log) / active_s, 1) if active_s else None,
            "mean_request_s": round(sum(e[1] - e[0] for e in log) / len(log), 3) if log else None,
            "in_flight_every_0_5s": _timeline(log, 0.5),
            "input_tokens": int(self.stats.get("input_tokens", 0)),
            "output_tokens": int(self.stats.get("output_tokens", 0)),
            "peak_in_flight": self.stats.get("peak_in_flight"),
            "peak_active": self.stats.get("peak_active"),
            "errors_by_status": self.stats.get("errors_by_status"),
            "by_kind": self.stats.get("by_kind"),
            "rows_present": self.present,
            "rows_correct": self.correct,
            "rows_with_error": self.errors,
            # every input row came back exactly once (and no other row)
            "rows_ok": self.present == self.rows and self.extra.get("rows_out", self.rows) == self.rows,
            "cpu_client_s": round(self.cpu.get("client", 0.0), 2),
            "cpu_sim_s": round(self.cpu.get("sim", 0.0), 2),
            "cpu_machine_busy_s": round(self.cpu.get("machine_busy", 0.0), 2),
            "cpu_other_s": round(
                self.cpu.get("machine_busy", 0.0) - self.cpu.get("client", 0.0) - self.cpu.get("sim", 0.0), 2
            ),
            **{
                f"cpu_{k}_s": round(v, 2)
                for k, v in self.cpu.items()
                if k.startswith("client_") and v > 0.005
            },
            "client_cpu_ms_per_call": round(1000 * self.cpu.get("client", 0.0) / calls, 2) if calls else None,
            "sim_cpu_ms_per_call": round(1000 * self.cpu.get("sim", 0.0) / calls, 2) if calls else None,
            "loadavg_before": self.load_before,
            "loadavg_after": self.load_after,
            **self.extra,
        }


def _timeline(log: list[list[float]], step: float) -> list[int]:
    """Requests in flight at the simulator every ``step`` seconds from the first arrival."""
    if not log:
        return []
    start = min(e[0] for e in log)
    end = max(e[1] for e in log)
    points = [start + i * step for i in range(int((end - start) / step) + 1)]
    return [sum(1 for e in log if e[0] <= t < e[1]) for t in points]


def _score(
    ids: list[int], texts: list[str], got: dict[int, str | None], n_out: int
) -> tuple[int, int]:
    """(rows present exactly once, rows whose label equals intended_label)."""
    from rlm_pipeline.sim import intended_label

    present = sum(1 for i in ids if i in got) if n_out == len(got) else len(set(got) & set(ids))
    correct = sum(
        1 for i, t in zip(ids, texts, strict=True) if got.get(i) is not None and got[i] == intended_label(t, LABELS)
    )
    return present, correct


Result = tuple[dict[int, "str | None"], int, int, dict[str, Any]]
Body = Callable[[str], Callable[[], Callable[[], Result]]]


def measure(system: str, args: argparse.Namespace, ids: list[int], texts: list[str], body: Body) -> Run:
    """Run one system against a fresh simulator, timing it and metering CPU.

    Three phases: ``go = body(base_url)`` prepares (builds frames, starts a
    peer's interpreter and imports; not timed), ``finish = go()`` is the timed
    and CPU-metered operation, ``finish()`` collects the results (not timed) as
    (id -> label, rows out, rows with a null label, extra fields).
    """
    sim = SimProcess(args.latency_ms, args.sim_cap)
    try:
        go = body(sim.base_url)
        idle_busy = settle(args.settle_busy, args.settle_max_s) if args.settle_max_s > 0 else None
        sim.reset_stats()
        me = os.getpid()
        meter = CpuMeter({"sim": lambda: [sim.proc.pid], "client": lambda: [me]})
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
    present, correct = _score(ids, texts, got, n_out)
    if n_out != len(ids):
        extra["rows_out"] = n_out
    extra["busy_cores_before"] = None if idle_busy is None else round(idle_busy, 2)
    log = stats.get("requests_log") or []
    if log:  # where the wall time went: before the first request, sending, after the last reply
        extra["first_request_after_s"] = round(min(e[0] for e in log) - epoch0, 3)
        extra["after_last_reply_s"] = round(epoch1 - max(e[1] for e in log), 3)
    return Run(
        system,
        len(ids),
        wall,
        stats,
        cpu,
        present,
        correct,
        n_err,
        tuple(round(x, 2) for x in load0),  # type: ignore[arg-type]
        tuple(round(x, 2) for x in load1),  # type: ignore[arg-type]
        extra,
    )


# --------------------------------------------------------------------------- our systems


def _llm(base_url: str, concurrency: int) -> Any:
    import rlm_pipeline as rp

    return rp.LLM(model="sim", base_url=base_url, api_key="x", max_concurrency=concurrency)


def _collect(out: Any, ids: list[int]) -> tuple[dict[int, str | None], int, int]:
    import polars as pl

    if not isinstance(out, pl.DataFrame):
        out = pl.from_arrow(out)
    got = dict(zip(out["ticket_id"].to_list(), out["label"].to_list(), strict=True))
    n_err = out.filter(pl.col("label_error").is_not_null()).height if "label_error" in out.columns else 0
    return got, out.height, n_err


def polars_body(ids: list[int], texts: list[str], batch_size: int, concurrency: int) -> Body:
    def body(base_url: str) -> Callable[[], Callable[[], Result]]:
        import polars as pl

        import rlm_pipeline as rp
        import rlm_pipeline.llm.client  # noqa: F401  imports are not timed (as for the peers)
        import rlm_pipeline.ops.api  # noqa: F401

        df = pl.DataFrame({"ticket_id": ids, "question": texts})
        llm = _llm(base_url, concurrency)

        def go() -> Callable[[], Result]:
            out = rp.classify(df, column="question", labels=LABELS, llm=llm, batch_size=batch_size)
            return lambda: (*_collect(out, ids), {})

        return go

    return body


_SPARK: Any = None


def spark_session() -> Any:
    global _SPARK
    if _SPARK is None:
        from pyspark.sql import SparkSession

        _SPARK = (
            SparkSession.builder.master("local[2]")
            .appName("rlm_pipeline-bench-fanout")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
        _SPARK.sparkContext.setLogLevel("ERROR")
        _SPARK.range(100).selectExpr("sum(id)").collect()  # warm the JVM and a Python worker
    return _SPARK


def spark_body(ids: list[int], texts: list[str], batch_size: int, concurrency: int) -> Body:
    import pyarrow as pa

    spark = spark_session()
    table = pa.table({"ticket_id": pa.array(ids, pa.int64()), "question": pa.array(texts, pa.string())})
    sdf = spark.createDataFrame(table)

    parts = sdf.rdd.getNumPartitions()

    def body(base_url: str) -> Callable[[], Callable[[], Result]]:
        import rlm_pipeline as rp

        llm = _llm(base_url, concurrency)

        def go() -> Callable[[], Result]:
            out = rp.classify(sdf, column="question", labels=LABELS, llm=llm, batch_size=batch_size)
            arrow = out.toArrow()  # the action: every result row in the driver
            return lambda: (*_collect(arrow, ids), {"spark_input_partitions": parts})

        return go

    return body


# --------------------------------------------------------------------------- peers


def peer_body(name: str, venv: Path, script: Path, ids: list[int], texts: list[str],
              args: argparse.Namespace) -> Body:
    """A peer runner in its own venv; protocol on its stdio: it prints READY after
    imports and setup, waits for a line on stdin, runs, prints DONE, writes results."""

    def body(base_url: str) -> Callable[[], Callable[[], Result]]:
        work = Path(tempfile.mkdtemp(prefix=f"fanout-{name}-"))
        inp = work / "rows.jsonl"
        with inp.open("w") as fh:
            for i, t in zip(ids, texts, strict=True):
                fh.write(json.dumps({"id": i, "text": t}) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "VIRTUAL_ENV"))}
        env.update({
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "DOCETL_HOME_DIR": str(work / "docetl_home"),
            "HOME": str(work / "home"),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        })
        cmd = [
            str(venv / "bin" / "python"), str(script), "--base-url", base_url, "--input", str(inp),
            "--output", str(work / "out.jsonl"), "--summary", str(work / "summary.json"),
            "--labels", ",".join(LABELS), "--concurrency", str(args.peer_concurrency),
        ]
        log_path = work / "stderr.log"
        log_fh = log_path.open("w")
        proc = subprocess.Popen(cmd, env=env, cwd=str(work), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log_fh, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        t_start = time.perf_counter()
        ready = proc.stdout.readline().strip()
        import_s = time.perf_counter() - t_start
        if ready != "READY":
            proc.kill()
            proc.wait()
            log_fh.close()
            tail = "\n".join(log_path.read_text().strip().splitlines()[-8:])
            shutil.rmtree(work, ignore_errors=True)
            msg = f"{name} runner did not start: {ready!r}; stderr: {tail}"
            raise RuntimeError(msg)

        def go() -> Callable[[], Result]:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
            timer = threading.Timer(args.peer_timeout, proc.kill)
            timer.start()
            done = proc.stdout.readline().strip()  # printed right after the operation
            timer.cancel()

            def finish() -> Result:
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log_fh.close()
                summary: dict[str, Any] = {}
                if (work / "summary.json").exists():
                    summary = json.loads((work / "summary.json").read_text())
                got: dict[int, str | None] = {}
                n_out = 0
                if (work / "out.jsonl").exists():
                    for line in (work / "out.jsonl").read_text().splitlines():
                        rec = json.loads(line)
                        got[rec["id"]] = rec["label"]
                        n_out += 1
                n_err = sum(1 for i in ids if got.get(i) is None)
                extra: dict[str, Any] = {
                    "peer_startup_s": round(import_s, 2),
                    "peer_exit_code": proc.returncode,
                    "peer_done_line": done,
                    "peer_summary": summary,
                }
                if proc.returncode != 0 or done != "DONE":
                    extra["peer_log_tail"] = "\n".join(log_path.read_text().strip().splitlines()[-15:])
                if not args.keep_work:
                    shutil.rmtree(work, ignore_errors=True)
                else:
                    extra["peer_workdir"] = str(work)
                return got, n_out, n_err, extra

            return finish

        return go

    return body


# --------------------------------------------------------------------------- report


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The field-wise median of repeated runs (numbers), first run's value otherwise."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            med = statistics.median(values)  # type: ignore[type-var]
            if all(isinstance(v, int) for v in values) and float(med).is_integer():
                med = int(med)
            out[key] = round(med, 3) if isinstance(med, float) else med
        else:
            out[key] = value
    out["repeats"] = len(runs)
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:,.{digits}f}"


def render_md(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# Fan-out benchmark (simulator)",
        "",
        f"Generated by `bench/fanout.py` on {meta['date']}. **Simulator, not a model**: "
        f"`rlm_pipeline.sim` on 127.0.0.1 with latency {meta['latency_ms']:.0f} ms and "
        f"{meta['sim_cap']} concurrent slots, so the ceiling is "
        f"{meta['ceiling_calls_per_s']:.0f} calls/s. Each system gets a fresh simulator process.",
        "",
        f"Data: {meta['rows']:,} synthetic tickets (`rlm_pipeline.datasets.tickets(n, seed={meta['seed']})`), "
        f"ticket id appended to every text: {meta['distinct_texts']:,} distinct texts "
        f"({meta['distinct_texts_without_id']:,} without the id). Labels: {', '.join(LABELS)}.",
        f"Machine: {meta['cpus']} cores, Python {meta['python']}; load average at start {meta['loadavg_start']}, "
        f"at end {meta.get('loadavg_end')}; "
        f"code at {meta.get('git_commit')}.",
        "",
        "| system | rows | batch | repeats | wall s | rows/s | calls | calls/s | % of ceiling "
        "| input tok | output tok | present | correct | errors | client CPU s | sim CPU s "
        "| other CPU s | load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["table"]:
        if row.get("skipped"):
            lines.append(f"| {row['system']} | – | – | – | skipped: {row['skipped']} "
                         "| | | | | | | | | | | | | |")
            continue
        lines.append(
            "| {system} | {rows:,.0f} | {batch:.0f} | {repeats} | {wall_s:.2f} | {rows_per_s:,.0f} | {calls:,.0f} "
            "| {calls_per_s:,.1f} | {pct_of_ceiling:.1f}% | {input_tokens:,.0f} | {output_tokens:,.0f} "
            "| {rows_present:,.0f} | {rows_correct:,.0f} | {rows_with_error:,.0f} | {cpu_client_s:.1f} "
            "| {cpu_sim_s:.1f} | {cpu_other_s:.1f} | {load} |".format(
                load=row["loadavg_before"][0], **row
            )
        )
    lines += [
        "",
        "Where the time goes (same runs, medians):",
        "",
        "| system | wall s | before 1st request s | sending s | after last reply s | mean in flight "
        "| calls/s while sending | client CPU ms/call | sim CPU ms/call | client CPU split s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["table"]:
        if row.get("skipped"):
            continue
        split = ", ".join(
            f"{k[len('cpu_client_'):-2]} {v:.1f}" for k, v in row.items()
            if k.startswith("cpu_client_") and k.endswith("_s") and k != "cpu_client_s" and isinstance(v, int | float)
        )
        lines.append(
            "| {system} | {wall_s:.2f} | {b} | {sending} | {a} | {mif} | {cps} | {cc} | {sc} | {split} |".format(
                b=_fmt(row.get("first_request_after_s")), sending=_fmt(row.get("first_to_last_request_s")),
                a=_fmt(row.get("after_last_reply_s")), mif=_fmt(row.get("mean_in_flight_while_sending"), 1),
                cps=_fmt(row.get("calls_per_s_while_sending"), 1), cc=_fmt(row.get("client_cpu_ms_per_call")),
                sc=_fmt(row.get("sim_cpu_ms_per_call")), split=split or "–", **row,
            )
        )
    lines += [
        "",
        "Columns: *wall s* times the classify call until every result row is in the driver "
        "(peers: their operation only, without interpreter start and imports); *calls*, *tokens* from the "
        "simulator's `/stats`; *present* = input rows found in the output exactly once; *correct* = label equal to "
        "`rlm_pipeline.sim.intended_label(text)`; *errors* = rows with a null label; CPU = user+system seconds "
        "of the client process tree (for Spark: driver, JVM and Python workers), of the simulator process, and "
        "of everything else on the machine in the same interval (other jobs). Our rows are field-wise medians "
        "of the repeats.",
        "",
    ]
    if result.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _git_commit() -> str | None:
    """HEAD of the repo (+ "-dirty" when the work tree has changes), None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bs1-rows", type=int, default=4_000, help="subset for ours at batch_size 1")
    parser.add_argument("--peer-rows", type=int, default=20_000, help="subset for LOTUS and DocETL")
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--peer-concurrency", type=int, default=64)
    parser.add_argument("--peer-timeout", type=float, default=900.0)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--sim-cap", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64, help="our max_concurrency")
    parser.add_argument("--settle-busy", type=float, default=0.3,
                        help="before each timed run wait until other jobs use fewer cores than this")
    parser.add_argument("--settle-max-s", type=float, default=60.0, help="longest wait for --settle-busy (0: off)")
    parser.add_argument("--only", default="", help="comma list of: polars,polars1,spark,lotus,docetl")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    args = parser.parse_args(argv)

    only = {x.strip() for x in args.only.split(",") if x.strip()}
    want = (lambda k: not only or k in only)  # noqa: E731
    ceiling = args.sim_cap / (args.latency_ms / 1000.0)

    ids, texts, distinct_raw = make_rows(args.rows, args.seed)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rows": args.rows,
        "seed": args.seed,
        "distinct_texts": len(set(texts)),
        "distinct_texts_without_id": distinct_raw,
        "latency_ms": args.latency_ms,
        "sim_cap": args.sim_cap,
        "ceiling_calls_per_s": ceiling,
        "our_max_concurrency": args.concurrency,
        "peer_concurrency": args.peer_concurrency,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": tuple(round(x, 2) for x in os.getloadavg()),
        "git_commit": _git_commit(),
        "targets": {"polars_pct_of_ceiling": 90, "spark_pct_of_ceiling": 75},
    }
    print(f"[fanout] {args.rows:,} rows, {meta['distinct_texts']:,} distinct texts; ceiling {ceiling:.0f} calls/s; "
          f"load {meta['loadavg_start']}", flush=True)

    table: list[dict[str, Any]] = []
    all_runs: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []

    def run_repeated(label: str, key: str, batch: int, n: int, repeats: int,
                     make_body: Callable[[list[int], list[str]], Body]) -> None:
        if not want(key):
            return
        sub_ids, sub_texts = ids[:n], texts[:n]
        runs: list[dict[str, Any]] = []
        for r in range(repeats):
            try:
                body = make_body(sub_ids, sub_texts)
                run = measure(label, args, sub_ids, sub_texts, body)
            except Exception as exc:  # keep going: report what failed
                msg = f"{type(exc).__name__}: {str(exc)[:400]}"
                print(f"[fanout] {label} run {r + 1} FAILED: {msg}", flush=True)
                table.append({"system": label, "skipped": msg.replace("|", "/")})
                all_runs[label] = runs
                return
            s = run.summary(ceiling)
            s["batch"] = batch
            runs.append(s)
            print(f"[fanout] {label} run {r + 1}/{repeats}: {s['wall_s']:.2f} s, {s['rows_per_s']:,.0f} rows/s, "
                  f"{s['calls']:,} calls, {s['calls_per_s']:.1f} calls/s ({s['pct_of_ceiling']:.1f}%), "
                  f"correct {s['rows_correct']:,}/{s['rows']:,}, client CPU {s['cpu_client_s']:.1f} s, "
                  f"sim CPU {s['cpu_sim_s']:.1f} s, other {s['cpu_other_s']:.1f} s, load {s['loadavg_before']}",
                  flush=True)
        all_runs[label] = runs
        table.append(median_row(runs))

    run_repeated("ours polars bs16", "polars", 16, args.rows, args.repeats,
                 lambda i, t: polars_body(i, t, 16, args.concurrency))
    run_repeated("ours polars bs1", "polars1", 1, min(args.bs1_rows, args.rows), args.repeats,
                 lambda i, t: polars_body(i, t, 1, args.concurrency))
    if want("spark"):
        try:
            spark_session()
            run_repeated("ours spark local[2] bs16", "spark", 16, args.rows, args.repeats,
                         lambda i, t: spark_body(i, t, 16, args.concurrency))
        except Exception as exc:
            msg = f"{type(exc).__name__}: {str(exc)[:300]}"
            print(f"[fanout] spark FAILED: {msg}", flush=True)
            table.append({"system": "ours spark local[2] bs16", "skipped": msg.replace("|", "/")})
        finally:
            if _SPARK is not None:
                _SPARK.stop()

    peer_rows = min(args.peer_rows, args.rows)
    for key, label, venv_name, script in (
        ("lotus", "LOTUS sem_map", ".bench-venv-lotus", "lotus_run.py"),
        ("docetl", "DocETL map", ".bench-venv-docetl", "docetl_run.py"),
    ):
        if not want(key):
            continue
        venv = ROOT / venv_name
        if not (venv / "bin" / "python").exists():
            msg = f"{venv_name} missing (run bench/run_all.py to create it)"
            print(f"[fanout] {label} skipped: {msg}", flush=True)
            table.append({"system": label, "skipped": msg})
            continue
        run_repeated(label, key, 1, peer_rows, args.peer_repeats,
                     lambda i, t, v=venv, s=script, k=key: peer_body(
                         k, v, ROOT / "bench" / "peers" / s, i, t, args))

    if peer_rows < args.rows:
        notes.append(f"Peers ran on the first {peer_rows:,} rows only (they are slow); rates are comparable.")
    notes.append(f"Ours at batch_size 1 ran on the first {min(args.bs1_rows, args.rows):,} rows.")
    meta["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    result = {"meta": meta, "table": table, "runs": all_runs, "notes": notes}
    for row in table:
        if row.get("skipped"):
            continue
        print(f"[fanout] {row['system']:<28} {row['rows_per_s']:>9,.0f} rows/s {row['calls_per_s']:>7.1f} calls/s "
              f"{row['pct_of_ceiling']:>5.1f}% of ceiling  correct {row['rows_correct']:,}/{row['rows']:,}", flush=True)
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for runs in all_runs.values():
            for r in runs:
                r.pop("requests_log", None)
        (out / "fanout.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (out / "fanout.md").write_text(render_md(result))
        print(f"[fanout] wrote {out / 'fanout.json'} and {out / 'fanout.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
