"""rp.classify(..., cascade=...) on Spark (the session's local[2]), two simulators over real HTTP."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.ops.api import run_op
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label
from tests.ops.test_cascade import LABELS, ORACLE_MODEL, PROXY_MODEL, models, sampled_texts

pytestmark = pytest.mark.spark


def _frame(spark: Any, questions: list[str | None]) -> Any:
    table = pl.DataFrame({"id": range(len(questions)), "question": questions}).to_arrow()
    return spark.createDataFrame(table)  # in order, in the session's default partitions


def test_cascade_on_spark_meets_the_target_within_the_limits(spark: Any, sim_factory: Any) -> None:
    proxy = sim_factory(accuracy=0.85, latency_ms=2)
    oracle = sim_factory(latency_ms=2)
    small, big = models(proxy, oracle, proxy_max_concurrency=4, oracle_max_concurrency=2)
    questions: list[str | None] = list(tickets(1500, seed=11)["question"])
    questions[7] = None
    cascade = rp.Cascade(small, target=0.95, sample=200)
    out, stats = run_op(
        _frame(spark, questions), ClassifySpec("question", tuple(LABELS)), big, cascade=cascade
    )
    got = pl.DataFrame(out.toArrow())
    assert got.columns == [
        "id",
        "question",
        "label",
        "label_error",
        "label_source",
        "label_confidence",
    ]
    assert got["id"].to_list() == list(range(len(questions)))  # every row once, in order
    assert got.row(7, named=True)["label_error"] == "empty_input"
    assert got.row(7, named=True)["label_source"] is None
    answered = got.filter(pl.col("label").is_not_null())
    assert answered.height == len(questions) - 1
    sample = sampled_texts(got, cascade.seed, cascade.sample)
    held_out = answered.filter(~pl.col("question").is_in(list(sample)))
    agree = sum(
        label == intended_label(q, LABELS)
        for q, label in held_out.select("question", "label").rows()
    )
    assert agree / held_out.height >= 0.95
    report = stats.cascade
    assert report is not None and report.reached and report.confidence == "logprobs"
    assert report.escalated_share <= 0.40 and report.unsent == 1
    assert report.proxy_rows + report.oracle_rows + report.unsent == len(questions)
    assert report.cost_usd < report.cost_all_oracle_usd
    # the limits held across the Spark tasks, for each model
    assert 1 <= proxy.stats()["by_model"][PROXY_MODEL]["peak_in_flight"] <= 4
    assert 1 <= oracle.stats()["by_model"][ORACLE_MODEL]["peak_in_flight"] <= 2
    # a later action does not call the models again
    before = proxy.stats()["requests"], oracle.stats()["requests"]
    assert out.count() == len(questions)
    assert (proxy.stats()["requests"], oracle.stats()["requests"]) == before


def test_uninformative_proxy_on_spark_escalates_everything(spark: Any, sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85, confidence="random"), sim_factory()
    small, big = models(proxy, oracle)
    questions: list[str | None] = list(tickets(300, seed=13)["question"])
    out = rp.classify(_frame(spark, questions), "question", LABELS, big, cascade=rp.Cascade(small))
    got = pl.DataFrame(out.toArrow())
    assert got["label_source"].unique().to_list() == ["oracle"]
    assert got["label"].to_list() == [intended_label(q, LABELS) for q in questions]
