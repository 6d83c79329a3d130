"""``rp.RLM(..., cascade=rp.Cascade(...))``: the root's classify sub-calls go through the cascade.

The root and the oracle are one simulator; the proxy is a second one in cheap mode.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.errors import InputError

from .truth import label_count

QUESTION = "How many questions are about billing?"


def _classify_step(trace: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [r for r in trace if r["kind"] == "tool" and r.get("tool") == "classify"]
    assert len(steps) == 1, [r.get("tool") for r in trace]
    return steps[0]


@pytest.mark.parametrize(
    ("confidence", "accuracy"),
    # informative: a proxy right every time, so the answer is exact whichever rows it keeps;
    # random: uninformative confidences, so every row goes to the (always right) oracle
    [("informative", 1.0), ("random", 0.85)],
)
def test_root_classify_goes_through_the_cascade(
    sim_factory: Any, confidence: str, accuracy: float
) -> None:
    root_sim = sim_factory()
    proxy_sim = sim_factory(accuracy=accuracy, confidence=confidence)
    oracle = rp.LLM(model="sim-1", base_url=root_sim.base_url, api_key="x", max_retries=1)
    proxy = rp.LLM(model="gpt-4.1-nano", base_url=proxy_sim.base_url, api_key="x")
    frame = tickets(1200, seed=3)
    rlm = rp.RLM(oracle, max_depth=1, cascade=rp.Cascade(proxy, target=0.9, sample=100))
    res = rlm.run(QUESTION, frame.drop("true_label"), text_column="question")

    assert res.value == label_count(frame, "billing")
    assert res.errors == 0
    step = _classify_step(res.trace)
    record = step["extra"]["cascade"]
    assert record["proxy_model"] == "gpt-4.1-nano" and record["oracle_model"] == "sim-1"
    assert 0.0 <= record["escalated_share"] <= 1.0
    assert record["proxy_rows"] + record["oracle_rows"] == step["rows_out"] == 1200
    assert proxy_sim.stats()["requests"] > 0
    # the run's usage counts both models' calls
    assert res.usage.calls >= proxy_sim.stats()["requests"]
    assert "answered by the strong model (cascade)" in step["result_summary"]
    if confidence == "informative":
        assert record["reached"] and record["lower_bound"] >= 0.9
        assert record["threshold"] is not None and record["escalated_share"] < 0.5
        assert record["sample_agreement"] == 1.0
    else:  # confidences say nothing: every row to the oracle, and the record says so
        assert not record["reached"] and record["threshold"] is None
        assert record["escalated_share"] == 1.0
        assert "every row went to the oracle" in record["summary"]


def test_cascade_must_be_a_cascade() -> None:
    with pytest.raises(InputError, match="cascade must be an rp.Cascade"):
        rp.RLM(rp.LLM(), cascade=pl.DataFrame())  # type: ignore[arg-type]


def test_cost_budget_with_an_unpriced_proxy_is_refused_at_construction() -> None:
    proxy = rp.LLM(model="no-such-price", base_url="http://127.0.0.1:9/v1", api_key="x")
    with pytest.raises(InputError, match="no price for model 'no-such-price'"):
        rp.RLM(
            rp.LLM(model="gpt-4.1-mini"),
            cascade=rp.Cascade(proxy),
            budget=rp.Budget(max_cost_usd=1.0),
        )
    rp.RLM(rp.LLM(model="gpt-4.1-mini"), cascade=rp.Cascade(proxy))  # no cost limit: fine
