"""Model-issued Polars queries in a worker process: same results, same errors, killed on cancel."""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from typing import Any

import polars as pl
import psutil
import pyarrow as pa
import pytest

from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.engines import open_engine
from rlm_pipeline.engines.polars_worker import WorkerQuery, plan_work, worker_pids
from rlm_pipeline.engines.work import (
    Work,
    WorkLimits,
    collect_polars,
    polars_in_worker,
    polars_route,
    work_scope,
)
from rlm_pipeline.errors import InputError
from rlm_pipeline.sim.hostile import TRIPLE_JOIN

QUERIES = [
    ("filter", ("context", "v > 2 AND s IS NOT NULL", "f")),
    ("sql", ("SELECT k, COUNT(*) AS n, SUM(x) AS sx, MAX(d) AS md FROM context GROUP BY k", "g")),
    ("sql", ("SELECT a.v, b.s, a.t FROM context a LEFT JOIN context b ON a.k = b.k", "j")),
    ("sql", ("SELECT DISTINCT s, b FROM context ORDER BY s DESC NULLS FIRST, b", "o")),
    ("sql", ("SELECT v, x / 3 AS third, UPPER(s) AS up FROM context WHERE t > d", "w")),
    ("partition", ("context", None, 3)),
]


def _frame() -> pl.DataFrame:
    day = dt.date(2026, 1, 1)
    return pl.DataFrame(
        {
            "k": [1, 2, 1, None, 3, 2, 1],
            "v": list(range(7)),
            "x": [0.5, None, 2.25, -1.0, 3.0, float("nan"), 7.125],
            "s": ["a", "b", None, "é ü", "", "b", "zz"],
            "b": [True, False, None, True, True, False, None],
            "d": [day + dt.timedelta(days=i) for i in range(7)],
            "t": [dt.datetime(2026, 1, 1, 12) + dt.timedelta(hours=30 * i) for i in range(7)],
        }
    )


def _views(route: str) -> dict[str, Any]:
    engine = open_engine(_frame())
    out: dict[str, Any] = {}
    with polars_route(route), work_scope(Work("run")):
        for tool, args in QUERIES:
            if tool == "filter":
                out[args[2]] = engine.filter(*args)
            elif tool == "sql":
                out[args[1]] = engine.sql(*args)
            else:
                out["parts"] = engine.partition(args[0], by=args[1], n=args[2], name="parts")
        for view in [*out, "context"]:
            out[view + ":rows"] = engine.to_arrow(view)
        out["head"] = engine.head("j", 3)
        out["counts"] = engine.value_counts("context", "s", max_values=10)
    return out


def test_the_worker_route_gives_what_the_in_process_route_gives() -> None:
    here, there = _views("process"), _views("worker")
    assert here.keys() == there.keys()
    for key, value in here.items():
        if isinstance(value, pa.Table):  # schema, values and order (NaN equal to NaN)
            assert there[key].schema == value.schema, key
            assert pl.from_arrow(there[key]).equals(pl.from_arrow(value)), key
        else:
            assert there[key] == value, key
    assert worker_pids()  # one idle worker is kept for the next query


def test_errors_raised_in_the_worker_are_the_in_process_errors() -> None:
    plan = pl.LazyFrame({"s": ["1", "x"]}).select(pl.col("s").cast(pl.Int64, strict=True))
    raised = []
    for route in ("process", "worker"):
        with (
            polars_route(route),
            work_scope(Work("run")),
            pytest.raises(pl.exceptions.PolarsError) as info,
        ):
            collect_polars(plan)
        # the message up to its counts (a deserialized frame may be chunked otherwise)
        raised.append((type(info.value), str(info.value).split(" for ")[0]))
    assert raised[0] == raised[1]
    assert raised[0][0] is pl.exceptions.InvalidOperationError


def test_a_plan_holding_python_code_runs_in_this_process() -> None:
    frame = pl.LazyFrame({"x": [1, 2, 3]}).map_batches(lambda df: df.with_columns(pl.col("x") * 2))
    with polars_route("worker"), work_scope(Work("run")):
        assert collect_polars(frame)["x"].to_list() == [2, 4, 6]
    with pytest.raises(InputError, match="route must be one of"), polars_route("elsewhere"):
        pass


def test_the_auto_route_sends_only_unbounded_or_large_work_away() -> None:
    lf = pl.LazyFrame({"k": [i % 7 for i in range(20_000)], "v": range(20_000)})
    joined = lf.join(lf, on="k").select(pl.len())
    # the default cap bounds the join (1,000,000 rows): bounded work stays here
    assert not polars_in_worker(joined, WorkLimits())
    assert not polars_in_worker(lf.sort("v"), WorkLimits(max_view_rows=10**15))
    # a lifted cap leaves the join bounded by its inputs' product only: 4e8 rows
    assert polars_in_worker(joined, WorkLimits(max_view_rows=10**15))
    assert plan_work(joined).rows == 20_000 * 4 + 20_000**2
    # a side grouped by the join key meets each key once: the sum bounds the join
    grouped = lf.group_by("k").agg(pl.len()).join(lf, on="k")
    assert plan_work(grouped).rows == 20_000 * 8  # scans 2, group 2, join in 2 + out 2
    # a Parquet scan is not carried in the plan: only the work counts
    assert plan_work(lf.join(lf, on="k")).embedded_rows == 20_000


def test_parquet_footers_read_for_plans_are_remembered_within_a_bound(tmp_path: Any) -> None:
    """The sizes read off Parquet footers (to bound a scan) are cached per file version, LRU."""
    import os

    from rlm_pipeline.engines.polars_worker import (
        PARQUET_ROWS_CACHED,
        _footer_rows,
        _parquet_rows,
    )

    path = tmp_path / "t.parquet"
    pl.DataFrame({"v": range(10)}).write_parquet(path)
    scan = pl.scan_parquet(path).sort("v")
    _footer_rows.cache_clear()
    for version in range(PARQUET_ROWS_CACHED + 40):  # a file rewritten more often than remembered
        os.utime(path, ns=(version, version))
        assert plan_work(scan).rows >= 10
    info = _footer_rows.cache_info()
    assert info.currsize == PARQUET_ROWS_CACHED and info.misses == PARQUET_ROWS_CACHED + 40
    assert plan_work(scan).rows >= 10
    again = _footer_rows.cache_info()
    assert again.misses == info.misses and again.hits > info.hits  # the latest version is kept
    path.write_bytes(b"not parquet")  # unreadable: an unknown size, never cached
    assert _parquet_rows([str(path)]) == float("inf")
    assert _footer_rows.cache_info().currsize == PARQUET_ROWS_CACHED


@functools.cache
def _dates() -> pl.DataFrame:
    """100,000 ticket dates: the triple self-join on them has ~7.5e9 rows (minutes)."""
    return tickets(100_000, seed=0).select("date")


def _busy(pid: int, window: float = 0.3) -> float:
    proc = psutil.Process(pid)
    before = sum(proc.cpu_times()[:2])
    time.sleep(window)
    return (sum(proc.cpu_times()[:2]) - before) / window


def test_a_cancel_kills_the_worker_and_frees_its_cores_at_once() -> None:
    engine = open_engine(_dates())
    triple = TRIPLE_JOIN.format(d="date")
    work = Work("sql", parent=Work("run", limits=WorkLimits(max_view_rows=10**15)))
    outcome: dict[str, Any] = {}

    def run() -> None:
        with work_scope(work):
            try:
                engine.sql(triple, "slow")  # ~7.5e9 rows: minutes when left alone
            except Exception as exc:  # noqa: BLE001 - the test reads it
                outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    busy: list[int] = []
    while not busy:  # a worker runs the query (the probes come first)
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        busy = [pid for pid in worker_pids() if _busy(pid) > 0.05]
    pid = busy[0]
    work.parent.cancel("timeout_s = 2 s")  # type: ignore[union-attr]
    thread.join(10)
    assert not thread.is_alive()
    assert "cancelled: timeout_s = 2 s" in str(outcome.get("error"))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert pid not in worker_pids()


def test_a_worker_query_reports_its_worker_ending() -> None:
    query = WorkerQuery(pl.LazyFrame({"x": [1]}).select(pl.col("x").sum()))
    assert query.fetch_blocking().item() == 1
    dates = _dates().lazy()
    query = WorkerQuery(dates.join(dates, on="date").join(dates, on="date").select(pl.len()))
    psutil.Process(query.pid).kill()
    with pytest.raises(pl.exceptions.ComputeError, match="worker process ended"):
        query.fetch_blocking()
