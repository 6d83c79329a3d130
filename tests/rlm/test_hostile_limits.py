"""Valid but too expensive work from the root model is refused or cancelled; the run answers.

The simulator's scripted root (``[adversarial:heavy]``, see rlm_pipeline/sim/hostile.py)
issues, over 100,000 tickets: a triple self-join on the date, a self-join on the month,
GROUP BY a near-unique expression, ORDER BY over every row, 30 CTEs that each read the
previous one twice, ``partition`` with n = 1,000,000 and 100 ``filter`` views; then
counts ``context`` and answers.  Each expensive call must come back as a tool error that
names its limit and says what to do; the process's peak resident memory (with its
children: the local Spark JVM) is measured and must stay under 4 GiB.

Timeouts: a query that would run for minutes is cancelled at ``tool_timeout_s`` (the
run goes on) and at the run's ``timeout_s`` (the run ends with its partial).  On Spark by
its job tag: no job of the run is active afterwards.  On Polars (2.1 cannot interrupt a
running join in this process) a query with a large work bound runs in a worker process
that the timeout kills: the CPU of the process and its children is idle within 5 s; a
slow but bounded query runs here, is given up, and ends on its own within 5 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import polars as pl
import psutil
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.engines.polars_worker import worker_pids
from rlm_pipeline.engines.work import process_rss
from rlm_pipeline.errors import BudgetExceededError
from rlm_pipeline.llm.config import LLM

ROWS = 100_000
GIB = 1 << 30
SPARK = pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return tickets(ROWS, seed=0).drop("true_label")


class PeakRSS:
    """Samples the resident memory of this process and its children every 50 ms."""

    def __init__(self) -> None:
        self.peak = process_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, process_rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _data(engine: str, frame: pl.DataFrame, request: pytest.FixtureRequest) -> Any:
    if engine == "polars":
        return frame
    spark = request.getfixturevalue("spark")
    data = spark.createDataFrame(frame.to_arrow()).cache()  # the set's small jobs read it
    data.count()
    return data


def _calls(res: rp.RLMResult) -> dict[str, dict[str, Any]]:
    """The last record of each tool call, by the view it names."""
    out: dict[str, dict[str, Any]] = {}
    for record in res.trace:
        if record["kind"] in ("tool", "error") and record.get("tool"):
            args = record.get("arguments") or {}
            out[str(args.get("name") or args.get("view"))] = record
    return out


@pytest.fixture
def spark_idle(request: pytest.FixtureRequest) -> Iterator[Any]:
    spark = request.getfixturevalue("spark")
    yield spark
    _wait_no_jobs(spark)


def _wait_no_jobs(spark: Any, within: float = 15.0) -> float:
    """Seconds until no Spark job is active (fails after ``within``)."""
    started = time.monotonic()
    tracker = spark.sparkContext.statusTracker()
    while tracker.getActiveJobsIds():
        assert time.monotonic() - started < within, tracker.getActiveJobsIds()
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize("engine", ["polars", SPARK])
def test_hostile_set_is_refused_and_the_run_answers(
    engine: str, frame: pl.DataFrame, sim_llm: LLM, request: pytest.FixtureRequest
) -> None:
    data = _data(engine, frame, request)
    # A cap under the table's size, so GROUP BY / ORDER BY over every row pass it too
    # (with the default, max(10 x rows, 1,000,000), they are bounded work and run).
    # On Spark each view made is a job: the view cap is checked with 8 there (64 on Polars;
    # counting views does not depend on the engine).
    views = 64 if engine == "polars" else 8
    rlm = rp.RLM(sim_llm, engine=engine, max_steps=40, max_view_rows=50_000, max_views=views)
    started = time.monotonic()
    with PeakRSS() as rss:
        res = rlm.run("How many rows are there? [adversarial:heavy]", data)
    seconds = time.monotonic() - started
    print(f"\n{engine}: hostile set in {seconds:.1f}s, peak RSS {rss.peak / GIB:.2f} GiB")

    assert res.stop_reason == "answer"
    assert res.value == ROWS  # the run went on and answered
    assert rss.peak < 4 * GIB
    assert seconds < 600  # generous: ~30 Spark jobs on 2 busy cores
    calls = _calls(res)
    for view in ("triple", "lowcard"):
        error = calls[view]["error"]
        assert "estimated from the key counts" in error, error
        assert "max_view_rows = 50,000" in error and "aggregate before joining" in error
    assert "would make about 27,428,644 rows" in calls["triple"]["error"]
    for view in ("nearunique", "sorted"):
        error = calls[view]["error"]
        assert "would have more than 50,000 rows" in error, error
        assert "counting stopped at 50,001 rows" in error
    assert "reads views 536,870,912 times" in calls["ctes"]["error"]
    assert "n: 1000000 is greater than the maximum" in calls["parts"]["error"]
    filters = [r for r in res.trace if r.get("tool") == "filter"]
    made = [r for r in filters if r["kind"] == "tool"]
    refused = [r for r in filters if r["kind"] == "error"]
    assert len(made) == views and len(refused) == 100 - views
    assert all(f"max_views = {views}" in r["error"] for r in refused)


@pytest.mark.parametrize("engine", ["polars"])  # Spark: same engine-neutral checks, slower
def test_default_limits_refuse_the_joins_only(
    engine: str, frame: pl.DataFrame, sim_llm: LLM, request: pytest.FixtureRequest
) -> None:
    data = _data(engine, frame, request)
    res = rp.RLM(sim_llm, engine=engine, max_steps=40).run("rows? [adversarial:heavy]", data)
    calls = _calls(res)
    assert res.value == ROWS
    assert "max_view_rows = 1,000,000" in calls["triple"]["error"]
    assert "max_view_rows = 1,000,000" in calls["lowcard"]["error"]
    # GROUP BY and ORDER BY over 100,000 rows are bounded by the table: they run
    assert calls["nearunique"]["kind"] == "tool" and calls["nearunique"]["rows_out"] > 99_000
    assert calls["sorted"]["kind"] == "tool" and calls["sorted"]["rows_out"] == ROWS
    assert calls["ctes"]["error"]


@pytest.mark.parametrize("engine", ["polars", SPARK])
def test_legitimate_large_work_is_not_refused(
    engine: str, sim_llm: LLM, request: pytest.FixtureRequest
) -> None:
    big = tickets(1_000_000, seed=1).drop("true_label")
    data = _data(engine, big, request)
    res = rp.RLM(sim_llm, engine=engine).run("rows? [adversarial:legit]", data)
    assert res.errors == 0, [r["error"] for r in res.trace if r["error"]]
    assert res.value == 1_000_000
    calls = _calls(res)
    assert calls["lookup"]["rows_out"] == 1000
    assert calls["joined"]["rows_out"] == 7  # context JOIN the 1,000-row lookup, by bucket
    assert calls["grouped"]["rows_out"] == big["date"].n_unique()  # GROUP BY over 1M rows


@pytest.mark.spark
def test_spark_tool_timeout_cancels_the_job_and_the_run_goes_on(
    frame: pl.DataFrame, sim_llm: LLM, spark_idle: Any
) -> None:
    # Two columns, as on Polars: every job of the run reads less.
    data = spark_idle.createDataFrame(frame.select("ticket_id", "date").to_arrow())
    # No row cap to speak of: the triple join (~7.5e9 rows) really starts and would run
    # for many minutes; the tool limit cancels its job by tag.  The limit holds for the
    # count that follows too, which takes 5-15 s at load 16 on two cores (4 Spark jobs):
    # 20 s leaves it room without letting the join finish.
    rlm = rp.RLM(sim_llm, engine="spark", max_view_rows=10**15, tool_timeout_s=20)
    started = time.monotonic()
    res = rlm.run("rows? [adversarial:slow]", data)
    seconds = time.monotonic() - started
    idle = _wait_no_jobs(spark_idle)
    print(f"\nspark: tool timeout run {seconds:.1f}s, jobs idle {idle:.1f}s after")
    calls = _calls(res)
    error = calls["slow"]["error"]
    assert "tool_timeout_s = 20 s" in error and "cancelled" in error
    assert not calls["total"].get("error"), calls["total"].get("error")  # the run went on
    assert res.value == ROWS
    assert seconds < 120  # the join itself would run for many minutes
    assert idle < 5


@pytest.mark.spark
def test_spark_run_timeout_cancels_the_job_and_keeps_the_partial(
    frame: pl.DataFrame, sim_llm: LLM, spark_idle: Any
) -> None:
    data = spark_idle.createDataFrame(frame.to_arrow())
    rlm = rp.RLM(sim_llm, engine="spark", max_view_rows=10**15, timeout_s=12)
    started = time.monotonic()
    with pytest.raises(BudgetExceededError) as info:
        rlm.run("rows? [adversarial:slow]", data)
    seconds = time.monotonic() - started
    idle = _wait_no_jobs(spark_idle)
    print(f"\nspark: run timeout after {seconds:.1f}s, jobs idle {idle:.1f}s after")
    assert info.value.what == "time_s"
    assert seconds < 12 + 15
    assert idle < 5


def test_polars_tool_timeout_gives_up_a_slow_query_and_the_process_goes_idle(
    sim_llm: LLM,
) -> None:
    # Bounded but slow: GROUP BY a near-unique text over 2,000,000 rows (seconds).
    big = tickets(2_000_000, seed=2).drop("true_label")
    rlm = rp.RLM(sim_llm, engine="polars", tool_timeout_s=0.5)
    started = time.monotonic()
    res = rlm.run("rows? [adversarial:group]", big)
    seconds = time.monotonic() - started
    error = _calls(res)["slow"]["error"]
    assert "tool_timeout_s = 0.5 s" in error and "cancelled" in error
    assert res.value == 2_000_000
    cpu = _cpu_idle_after()
    print(f"\npolars: run {seconds:.1f}s, CPU idle {cpu:.1f}s after")
    assert cpu < 5


def _cpu_idle_after(window: float = 0.5, within: float = 10.0) -> float:
    """Seconds until this process and its children (Polars workers; not a Spark JVM left
    by other tests) use under 20% of a core over ``window``."""
    started = time.monotonic()
    me = psutil.Process()
    while True:
        procs = [me] + [p for p in me.children(recursive=True) if _not_java(p)]
        before = {p.pid: _cpu_of(p) for p in procs}
        time.sleep(window)
        used = sum(_cpu_of(p) - before[p.pid] for p in procs)
        if used / window < 0.2:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"{used / window:.0%} of a core"


def _cpu_of(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:  # it ended (a killed worker): nothing more
        return 0.0
    return float(times.user + times.system)


def _not_java(proc: psutil.Process) -> bool:
    try:
        return "java" not in proc.name()
    except psutil.Error:
        return False


def test_polars_tool_timeout_kills_a_running_join_and_the_cpu_goes_idle(
    frame: pl.DataFrame, sim_llm: LLM
) -> None:
    # No row cap to speak of: the triple join (~7.5e9 rows) passes its estimate and runs
    # (minutes) in a worker process, which the tool limit kills.  (Two columns: sending a
    # plan copies its in-memory rows, and the text column is what costs.)  The run's own
    # timeout kills it the same way: tests/cli/test_ask_timeout_worker.py.
    frame = frame.select("ticket_id", "date")
    rlm = rp.RLM(sim_llm, engine="polars", max_view_rows=10**15, tool_timeout_s=4)
    started = time.monotonic()
    res = rlm.run("rows? [adversarial:slow]", frame)
    seconds = time.monotonic() - started
    idle = _cpu_idle_after()
    print(f"\npolars: tool timeout run {seconds:.1f}s, CPU idle {idle:.1f}s after")
    error = _calls(res)["slow"]["error"]
    assert "tool_timeout_s = 4 s" in error and "cancelled" in error
    assert res.value == ROWS
    assert seconds < 40
    assert idle < 5
    assert all(_busy_share(pid) < 0.2 for pid in worker_pids())  # the kept worker is idle


def _busy_share(pid: int, window: float = 0.3) -> float:
    proc = psutil.Process(pid)
    before = _cpu_of(proc)
    time.sleep(window)
    return (_cpu_of(proc) - before) / window


#: The memory-budget run, in a fresh interpreter: the budget watches the process's
#: growth, and a test process whose heap earlier tests grew (and freed) could run the
#: query in memory it already holds, never growing past the budget.
_MEMORY_RUN = """
import json, sys
import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
big = tickets(2_000_000, seed=2).drop("true_label")
llm = rp.LLM(model="sim-1", base_url=sys.argv[1], api_key="sim", max_retries=1)
res = rp.RLM(llm, engine="polars", max_memory_bytes=64 << 20).run(
    "rows? [adversarial:group]", big)
errors = [r.get("error") for r in res.trace
          if r["kind"] in ("tool", "error") and (r.get("arguments") or {}).get("name") == "slow"]
print(json.dumps({"value": res.value, "error": errors[-1] if errors else None}))
"""


def test_polars_memory_budget_cancels_a_query_that_grows_past_it(sim_llm: LLM) -> None:
    # GROUP BY a near-unique text over 2,000,000 rows holds hundreds of MB of keys.
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_RUN, str(sim_llm.base_url)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    error = result["error"] or ""
    assert "max_memory_bytes = 0.06 GiB" in error and "cancelled" in error
    assert result["value"] == 2_000_000
