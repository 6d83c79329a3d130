"""``cascade=`` through the Polars namespace (``df.rlm.*``, ``pl.col().rlm.*``): two simulators."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.errors import UnansweredRowsError
from rlm_pipeline.sim import intended_label
from rlm_pipeline.sim.mapper import condition_holds
from tests.ops.test_cascade import LABELS, models

CONDITION = "asks for a refund"


def test_frame_classify_and_filter_with_a_cascade(sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    data = tickets(500, seed=8).select("ticket_id", "question")
    cascade = rp.Cascade(small, target=0.9, sample=120)

    labelled = data.rlm.classify("question", LABELS, llm=big, cascade=cascade)
    assert labelled["ticket_id"].to_list() == data["ticket_id"].to_list()
    assert labelled.columns[-2:] == ["label_source", "label_confidence"]
    sources = set(labelled["label_source"])
    assert sources == {"proxy", "oracle"}
    by_oracle = labelled.filter(pl.col("label_source") == "oracle")
    assert by_oracle["label"].to_list() == [
        intended_label(q, LABELS) for q in by_oracle["question"]
    ]

    kept = data.lazy().rlm.filter("question", CONDITION, llm=big, cascade=cascade)
    assert isinstance(kept, pl.LazyFrame)
    kept = kept.collect()
    assert {"filter_source", "filter_confidence"} <= set(kept.columns)
    assert kept["ticket_id"].n_unique() == kept.height
    assert kept["ticket_id"].is_in(data["ticket_id"].implode()).all()
    judged = kept.filter(pl.col("filter_source") == "oracle")["question"]
    assert all(condition_holds(t, CONDITION) for t in judged)


def test_expression_forms_with_a_cascade(sim_factory: Any) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    small, big = models(proxy, oracle)
    data = tickets(400, seed=6).select("question")
    cascade = rp.Cascade(small, target=0.9, sample=120)
    out = data.with_columns(label=pl.col("question").rlm.classify(LABELS, llm=big, cascade=cascade))
    assert out.columns == ["question", "label"] and out["label"].null_count() == 0
    right = sum(a == intended_label(q, LABELS) for q, a in out.rows())
    assert right / out.height >= 0.9  # the cascade's answers, not the 85% proxy alone
    asked = oracle.stats()["requests"]
    assert asked > 0  # the oracle answered the sample and the escalated rows

    kept = data.filter(pl.col("question").rlm.filter(CONDITION, llm=big, cascade=cascade))
    assert 0 < kept.height < data.height


def test_expression_filter_raise_with_a_cascade(sim_factory: Any) -> None:
    proxy = sim_factory(accuracy=0.85)
    oracle = sim_factory(fault_500=1.0)  # every oracle call fails: the escalated rows too
    small, big = models(proxy, oracle, oracle_max_retries=0)
    data = tickets(200, seed=2).select("question")
    with pytest.raises(UnansweredRowsError):
        data.filter(
            pl.col("question").rlm.filter(CONDITION, llm=big, cascade=rp.Cascade(small, sample=60))
        )
