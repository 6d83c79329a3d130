"""``rp.spark.classify|filter(..., cascade=...)``: a step that runs at transform (two simulators)."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.sim import intended_label
from rlm_pipeline.sim.mapper import condition_holds
from tests.ops.test_cascade import LABELS, models

pytestmark = pytest.mark.spark

CONDITION = "asks for a refund"


def test_spark_steps_with_a_cascade(
    spark: Any, sim_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    table = tickets(300, seed=4).select("ticket_id", "question").to_arrow()
    df = spark.createDataFrame(table).repartition(2)
    cascade = rp.Cascade(small, target=0.9, sample=100)

    step = rp.spark.classify("question", LABELS, llm=big, cascade=cascade)
    assert isinstance(step, rp.spark.CascadeStep) and step.cascade is None
    with caplog.at_level(logging.INFO, logger="rlm_pipeline.spark"):
        out = df.transform(step)
    assert any("runs its Spark jobs now" in r.getMessage() for r in caplog.records)
    asked = proxy.stats()["requests"], oracle.stats()["requests"]
    assert asked[0] > 0 and asked[1] > 0  # applied: the passes ran
    got = pl.DataFrame(out.toArrow()).sort("ticket_id")
    assert got["ticket_id"].to_list() == sorted(table["ticket_id"].to_pylist())
    assert got.columns[-2:] == ["label_source", "label_confidence"]
    by_oracle = got.filter(pl.col("label_source") == "oracle")
    assert by_oracle["label"].to_list() == [
        intended_label(q, LABELS) for q in by_oracle["question"]
    ]
    report = step.cascade
    assert report is not None and report.oracle_rows == by_oracle.height
    assert step.stats is not None and step.stats.rows == 300
    assert step.usage.calls == report.proxy_usage.calls + report.oracle_usage.calls
    assert out.count() == 300  # a later action asks no model again
    assert (proxy.stats()["requests"], oracle.stats()["requests"]) == asked

    fstep = rp.spark.filter("question", CONDITION, llm=big, cascade=cascade, on_error="drop")
    kept = pl.DataFrame(df.transform(fstep).toArrow())
    assert {"filter_source", "filter_confidence"} <= set(kept.columns)
    judged = kept.filter(pl.col("filter_source") == "oracle")["question"]
    assert all(condition_holds(t, CONDITION) for t in judged)
    stats = fstep.filter_stats
    assert stats is not None and stats.kept == kept.height and stats.rows == 300
