"""One RLM run shares one concurrency limit and one rpm/tpm limiter per model config.

The run recurses into 4 partitions, each a sub-RLM that classifies its rows,
against a simulator with 100 ms latency.  The bounds are read from the
simulator's own ``/stats`` (``peak_in_flight``, ``requests_log``), over real HTTP.

Bound (Polars engine): at most ``sub.max_concurrency`` requests in flight over
the whole run, whatever ``root`` is — the root model makes one call at a time
and never while one of its tools (where every sub-call happens) is running.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.config import LLM

from .truth import label_count

QUESTION = "How many questions are about billing? [plan:chunks]"
ROWS = 400  # 4 chunks of 100 rows: 7 classify calls (batch 16) per chunk


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return tickets(ROWS, seed=3)


def _check_answer(res: Any, frame: pl.DataFrame) -> None:
    assert res.value == label_count(frame, "billing")
    recurse = next(r for r in res.trace if r["tool"] == "recurse")
    assert recurse["rows_out"] == 4
    starts = [r for r in res.trace if r["kind"] == "run_start" and r["depth"] == 1]
    assert len(starts) == 4  # four sub-RLMs, each with its own loop
    sub_tools = [r["tool"] for r in res.trace if r["depth"] == 1 and r["kind"] == "tool"]
    assert sub_tools.count("classify") == 4


def _classify_calls(stats: dict[str, Any]) -> int:
    return sum(n for kind, n in stats["by_kind"].items() if kind.startswith("classify"))


def test_peak_in_flight_stays_within_sub_concurrency(sim_factory: Any, frame: pl.DataFrame) -> None:
    sim = sim_factory(latency_ms=100, max_concurrency=64)
    root = LLM(model="sim-root", base_url=sim.base_url, api_key="sim", max_concurrency=8)
    sub = LLM(model="sim-sub", base_url=sim.base_url, api_key="sim", max_concurrency=4)
    res = rp.RLM(root, sub=sub, max_depth=2).run(
        QUESTION, frame.drop("true_label"), text_column="question"
    )
    _check_answer(res, frame)
    stats = sim.stats()
    assert _classify_calls(stats) >= 4 * 7
    # the bound: sub.max_concurrency over the whole run (root, sub-RLMs, classify fan-outs)
    assert stats["peak_in_flight"] <= 4, stats["peak_in_flight"]
    # and the run did use that room (so the bound is not met by running serially)
    assert stats["peak_in_flight"] >= 3


def test_rpm_holds_over_the_whole_run(sim_factory: Any, frame: pl.DataFrame) -> None:
    sim = sim_factory(latency_ms=100, max_concurrency=64)
    rpm = 1200  # one request start per 50 ms, for root, sub-RLMs and fan-outs together
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="sim", max_concurrency=4, rpm=rpm)
    res = rp.RLM(llm, max_depth=2).run(QUESTION, frame.drop("true_label"), text_column="question")
    _check_answer(res, frame)
    stats = sim.stats()
    starts = sorted(entry[0] for entry in stats["requests_log"])
    assert len(starts) == stats["requests"] >= 4 * 7 + 4 * 3
    interval = 60 / rpm
    # A pacing limiter may start late but never early: the i-th start (by server
    # arrival) is at least i intervals after the first, up to 40 ms of jitter.
    for i, t in enumerate(starts):
        assert t - starts[0] >= i * interval - 0.04, (i, t - starts[0])
    assert stats["peak_in_flight"] <= 4


@pytest.mark.spark
def test_spark_sub_runs_share_the_sub_limits(
    spark: Any, sim_factory: Any, frame: pl.DataFrame
) -> None:
    # On Spark each of the 4 parallel sub-RLMs gets sub.share(4): one request slot for its
    # driver calls and for its classify job's executor tasks.
    sim = sim_factory(latency_ms=100, max_concurrency=64)
    sub = LLM(model="sim-sub", base_url=sim.base_url, api_key="sim", max_concurrency=4)
    root = LLM(model="sim-root", base_url=sim.base_url, api_key="sim", max_concurrency=8)
    rlm = rp.RLM(root, sub=sub, engine="spark", spark=spark, max_depth=2)
    res = rlm.run(QUESTION, frame.drop("true_label"), text_column="question")
    _check_answer(res, frame)
    stats = sim.stats()
    assert _classify_calls(stats) >= 4 * 7
    assert stats["peak_in_flight"] <= 4, stats["peak_in_flight"]
