"""classify on Spark (local[2]) against the simulator over real HTTP."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops import spark_fanout
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import FAULTS, LABELS, tickets

pytestmark = pytest.mark.spark


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 32}
    return rp.LLM(**{**base, **kw})


def _frame(spark: Any, texts: list[str | None], partitions: int = 2) -> Any:
    table = pl.DataFrame({"id": range(len(texts)), "q": texts}).to_arrow()
    return spark.createDataFrame(table).repartitionByRange(partitions, "id").sortWithinPartitions("id")


def _check(out: Any, texts: list[str | None], order: list[int] | None = None) -> pl.DataFrame:
    got = pl.DataFrame(out.toArrow())
    assert got.height == len(texts)
    assert got["id"].to_list() == (order if order is not None else list(range(len(texts))))
    assert sorted(got["id"].to_list()) == list(range(len(texts)))
    for row_id, text, label, error in got.select("id", "q", "label", "label_error").iter_rows():
        assert text == texts[row_id]
        if label is None:
            assert error is not None and error.split(":")[0] in rp.ops.stats.ERROR_KINDS  # type: ignore[attr-defined]
        else:
            assert error is None and label == intended_label(text, LABELS)
    return got


def test_20k_rows_with_faults_on_spark(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=5, **FAULTS, seed=11)
    texts: list[str | None] = list(tickets(20_000, distinct=15_000, seed=12))
    texts[3] = None
    df = spark.createDataFrame(pl.DataFrame({"id": range(20_000), "q": texts}).to_arrow())
    meter = UsageMeter()
    out = rp.classify(df, "q", list(LABELS), _llm(sim, timeout_s=1.0), meter=meter)
    got = _check(out, texts)
    assert got["label"].null_count() < 50
    stats = sim.stats()
    assert stats["errors_by_status"]
    # usage from every executor reached the driver: every answered request, less
    # the slow ones the client had given up on (answered after its timeout)
    slow = stats["faults"].get("timeout", 0)
    assert stats["ok"] - slow <= meter.snapshot().calls <= stats["ok"]


def test_global_dedup_and_limits(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=30)
    texts: list[str | None] = list(tickets(3_000, distinct=300, seed=13))
    df = _frame(spark, texts, partitions=4)
    meter = UsageMeter()
    out, stats = spark_fanout.apply(
        df, ClassifySpec("q", LABELS), _llm(sim, max_concurrency=6), meter=meter, global_dedup=True
    )
    _check(out, texts)
    assert sim.stats()["requests"] == meter.snapshot().calls
    assert sim.stats()["requests"] <= -(-len(set(texts)) // 16) + 2
    assert sim.stats()["peak_in_flight"] <= 6
    assert stats.rows == 3_000 and stats.answered == 3_000


def test_per_task_dedup_and_concurrency_share(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=30)
    texts: list[str | None] = list(tickets(2_000, distinct=200, seed=14))
    df = _frame(spark, texts, partitions=6)  # 6 tasks, 2 at a time, each with 5 of 10 slots
    out, _ = spark_fanout.apply(df, ClassifySpec("q", LABELS), _llm(sim, max_concurrency=10))
    _check(out, texts)
    assert sim.stats()["peak_in_flight"] <= 10
    # each of the 6 tasks asks its own distinct texts once
    # (without dedup: 2000 / 16 = 125 calls; 200 distinct texts -> at most 13 per task)
    assert sim.stats()["requests"] <= 6 * 13
