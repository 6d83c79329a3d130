"""Engine-level limits on model-issued work: views, total rows, cancellation by job tag."""

from __future__ import annotations

import threading
import time
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import open_engine
from rlm_pipeline.engines.work import Work, WorkLimits, work_scope
from rlm_pipeline.errors import ResourceLimitError


def _frame(rows: int) -> pl.DataFrame:
    return pl.DataFrame({"k": [i % 10 for i in range(rows)], "v": list(range(rows))})


def test_views_and_total_rows_are_capped_per_engine() -> None:
    engine = open_engine(_frame(1000))
    limits = WorkLimits(max_views=2, max_total_rows=450)
    with work_scope(Work("run", limits=limits)):
        assert engine.filter("context", "k < 2", "a") == 200
        assert engine.filter("context", "k = 5", "b") == 100
        with pytest.raises(ResourceLimitError, match=r"max_views = 2"):
            engine.filter("context", "k = 6", "c")
        assert engine.filter("context", "k = 7", "b") == 100  # replacing by name is allowed
        with pytest.raises(ResourceLimitError, match=r"max_total_rows = 450"):
            engine.filter("context", "k < 3", "a")
    assert engine.views() == ["context", "a", "b"]


def test_a_view_past_the_cap_is_refused_after_cap_plus_one_rows() -> None:
    engine = open_engine(_frame(1000))
    with work_scope(Work("run", limits=WorkLimits(max_view_rows=300))):
        with pytest.raises(ResourceLimitError, match="counting stopped at 301 rows"):
            engine.sql("SELECT v FROM context ORDER BY v DESC", "sorted")
        assert engine.sql("SELECT k, COUNT(*) AS n FROM context GROUP BY k", "by_k") == 10


def test_a_cancelled_work_refuses_new_engine_calls() -> None:
    engine = open_engine(_frame(100))
    work = Work("run")
    work.cancel("timeout_s = 1 s")
    with work_scope(work), pytest.raises(ResourceLimitError, match="cancelled: timeout_s"):
        engine.count("context")


@pytest.mark.spark
def test_cancel_stops_the_spark_job_by_its_tag(spark: Any) -> None:
    frame = spark.range(0, 20_000).selectExpr("id", "id % 3 AS k")
    engine = open_engine(frame, engine="spark", spark=spark)
    work = Work("sql", parent=Work("run", limits=WorkLimits(max_view_rows=10**15)))
    outcome: dict[str, Any] = {}

    def run() -> None:
        with work_scope(work):
            try:
                # ~1.3e8 rows, then a cross-like count: many seconds when left alone
                engine.sql("SELECT a.id FROM context a JOIN context b ON a.k = b.k", "big")
            except ResourceLimitError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 60
    while not tracker.getActiveJobsIds() and thread.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    work.parent.cancel("timeout_s = 5 s")  # the run's cancel reaches the tool call's jobs
    cancelled = time.monotonic()
    thread.join(30)
    assert not thread.is_alive()
    print(f"\nspark: job cancelled in {time.monotonic() - cancelled:.2f}s")
    assert "cancelled: timeout_s = 5 s" in str(outcome.get("error"))
    deadline = time.monotonic() + 5
    while tracker.getActiveJobsIds():
        assert time.monotonic() < deadline, tracker.getActiveJobsIds()
        time.sleep(0.1)
