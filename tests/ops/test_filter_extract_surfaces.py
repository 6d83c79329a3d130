"""filter and extract as Polars namespace methods and Spark transforms (simulator over HTTP)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import UnansweredRowsError
from rlm_pipeline.sim.mapper import condition_holds, extract_fields

TEXTS = [
    "Can I get a refund for the $49.00 charge from March?",
    "The app crashes every time I open the dashboard.",
    "Please refund the $120 I paid twice in June.",
    "Do you have an office in Lisbon?",
]
CONDITION = "asks for a refund"
FIELDS: dict[str, Any] = {"refund_amount": "number", "topic": ["billing", "technical", "other"]}


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", **kw)


def test_polars_namespace(sim: Any) -> None:
    llm = _llm(sim)
    df = pl.DataFrame({"id": range(len(TEXTS)), "q": TEXTS})
    want = [i for i, t in enumerate(TEXTS) if condition_holds(t, CONDITION)]
    assert want == [0, 2]
    assert df.filter(pl.col("q").rlm.filter(CONDITION, llm=llm))["id"].to_list() == want
    assert df.rlm.filter("q", CONDITION, llm=llm)["id"].to_list() == want
    assert df.lazy().rlm.filter("q", CONDITION, llm=llm).collect()["id"].to_list() == want

    out = df.rlm.extract("q", FIELDS, llm=llm)
    assert out.columns == ["id", "q", "refund_amount", "topic", "extract_error"]
    expected = [extract_fields(t, FIELDS) for t in TEXTS]
    assert out.select("refund_amount", "topic").to_dicts() == [
        {**e, "refund_amount": None if e["refund_amount"] is None else float(e["refund_amount"])}
        for e in expected
    ]
    struct = df.select(pl.col("q").rlm.extract(FIELDS, llm=llm).alias("x")).unnest("x")
    assert struct.columns == ["refund_amount", "topic"]
    assert struct.to_dicts() == out.select("refund_amount", "topic").to_dicts()


def test_polars_expression_never_drops_failed_rows_silently(sim_factory: Any) -> None:
    sim = sim_factory(fault_500=1.0)
    df = pl.DataFrame({"q": TEXTS})
    llm = _llm(sim, max_retries=0)
    with pytest.raises(UnansweredRowsError, match="4 of 4 rows have no answer"):
        df.filter(pl.col("q").rlm.filter(CONDITION, llm=llm))
    assert df.filter(pl.col("q").rlm.filter(CONDITION, llm=llm, on_error="keep")).height == 4
    assert df.filter(pl.col("q").rlm.filter(CONDITION, llm=llm, on_error="drop")).height == 0


@pytest.mark.spark
def test_spark_transforms(spark: Any, sim: Any) -> None:
    llm = _llm(sim)
    sdf = spark.createDataFrame(pl.DataFrame({"id": range(len(TEXTS)), "q": TEXTS}).to_arrow())
    step = rp.spark.extract("q", FIELDS, llm=llm)
    before = sim.stats()["requests"]
    lazy = sdf.transform(step)
    assert sim.stats()["requests"] == before  # lazy: no call until an action
    got = pl.DataFrame(lazy.toArrow()).sort("id")
    assert got.columns == ["id", "q", "refund_amount", "topic", "extract_error"]
    assert got["topic"].to_list() == [extract_fields(t, FIELDS)["topic"] for t in TEXTS]
    step = rp.spark.filter("q", CONDITION, llm=llm)
    before = sim.stats()["requests"]
    kept = sdf.transform(step)
    assert sim.stats()["requests"] == before  # lazy too: no call until an action
    assert kept.columns == ["id", "q"]
    assert sorted(r["id"] for r in kept.collect()) == [0, 2]
    stats = step.filter_stats
    assert stats is not None and (stats.rows, stats.kept, stats.dropped, stats.failed) == (4, 2, 2, 0)


@pytest.mark.spark
def test_spark_filter_raises_at_the_action(spark: Any, sim_factory: Any) -> None:
    """on_error="raise": transform plans (no call), the action fails with the typed error."""
    sim = sim_factory(fault_500=1.0)
    llm = _llm(sim, max_retries=0)
    sdf = spark.createDataFrame(pl.DataFrame({"id": range(len(TEXTS)), "q": TEXTS}).to_arrow())
    step = rp.spark.filter("q", CONDITION, llm=llm)
    planned = sdf.transform(step)
    assert sim.stats()["requests"] == 0
    with pytest.raises(UnansweredRowsError, match="rows have no answer.*First failed row: api_error"):
        with step.typed_errors():
            planned.collect()
    keep = rp.spark.filter("q", CONDITION, llm=llm, on_error="keep")
    got = sdf.transform(keep).collect()
    assert sorted(r["id"] for r in got) == [0, 1, 2, 3]
    assert all(r["filter_error"].startswith("api_error") for r in got)
    stats = keep.filter_stats
    assert stats is not None and (stats.failed, stats.returned) == (4, 4)
