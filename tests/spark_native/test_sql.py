"""Spark SQL functions (``rp.spark.register``): ``rlm_classify`` from ``spark.sql``
over a temp view, against the simulator over real HTTP."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

import rlm_pipeline as rp
from rlm_pipeline.ops.stats import ERROR_KINDS
from rlm_pipeline.sim import intended_label
from rlm_pipeline.spark_sql import register
from tests.ops.tickets import tickets

pytestmark = pytest.mark.spark

LABELS = ["account", "billing", "shipping", "technical"]
QUERY = (
    "SELECT ticket_id, question, r.label AS label, r.error AS error FROM ("
    "SELECT ticket_id, question, "
    "rlm_classify(question, array('account','billing','shipping','technical')) AS r FROM t)"
)


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 16}
    return rp.LLM(**{**base, **kw})


def _view(spark: Any, n: int, seed: int, distinct: int) -> dict[int, str]:
    """Temp view ``t(ticket_id, question)``; equal texts in one partition (hashed by text)."""
    texts = tickets(n, distinct=distinct, seed=seed)
    table = pa.table({"ticket_id": list(range(n)), "question": texts})
    spark.createDataFrame(table).repartition(2, "question").createOrReplaceTempView("t")
    return dict(enumerate(texts))


@pytest.mark.parametrize("kind", ["classic", "connect"])
def test_sql_classify_3000_rows(
    kind: str, request: pytest.FixtureRequest, sim_factory: Any
) -> None:
    spark = request.getfixturevalue("spark" if kind == "classic" else "connect")
    sim = sim_factory(seed=3)
    texts = _view(spark, 3000, seed=31, distinct=1200)
    functions = register(spark, llm=_llm(sim), batch_size=16)
    sim.reset_stats()
    # the documented query form: one call of the function, its label taken in SQL
    labels = spark.sql(
        "SELECT ticket_id, rlm_classify(question, "
        "array('account','billing','shipping','technical')).label AS label FROM t"
    ).collect()
    assert sorted(r["ticket_id"] for r in labels) == sorted(texts)  # every row once
    assert all(r["label"] == intended_label(texts[r["ticket_id"]], LABELS) for r in labels)
    distinct = len(set(texts.values()))
    requests = sim.stats()["requests"]
    # each of the 2 tasks asks each of its distinct texts once, 16 per call
    # (equal texts share a partition): distinct / 16 calls, not rows / 16
    assert math.ceil(distinct / 16) <= requests <= math.ceil(distinct / 16) + 1
    usage = functions.usage
    if kind == "classic":
        assert usage is not None and usage.calls == requests
    else:  # Spark Connect has no accumulators
        assert usage is None


def test_sql_classify_faults_give_nulls_with_reasons(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(fault_500=0.2, fault_wrong_ids=0.05, seed=4)
    texts = _view(spark, 1000, seed=32, distinct=600)
    register(spark, llm=_llm(sim, max_retries=0), batch_size=16)
    rows = spark.sql(QUERY).collect()
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)
    failed = 0
    for r in rows:
        if r["label"] is None:
            failed += 1
            assert r["error"] is not None and r["error"].split(":")[0] in ERROR_KINDS
        else:
            assert r["error"] is None and r["label"] == intended_label(r["question"], LABELS)
    assert 0 < failed < len(rows) * 0.5, failed  # the faults hit rows; most rows answered


def test_sql_filter_and_extract(spark: Any, sim_factory: Any) -> None:
    import json

    from rlm_pipeline.sim.mapper import condition_holds, extract_fields

    sim = sim_factory(seed=5)
    texts = _view(spark, 200, seed=33, distinct=120)
    register(spark, llm=_llm(sim), batch_size=8)
    rows = spark.sql(
        "SELECT ticket_id, question, "
        "rlm_filter(question, 'asks for a refund') AS f, "
        "rlm_extract(question, 'amount number, order_id string') AS x FROM t"  # DESIGN.md's form
    ).collect()
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)
    fields = {"amount": "number", "order_id": "string"}
    for r in rows:
        assert r["f"]["error"] is None and r["x"]["error"] is None
        assert r["f"]["value"] == condition_holds(r["question"], "asks for a refund")
        assert json.loads(r["x"]["value"]) == extract_fields(r["question"], fields)
    kept = spark.sql(
        "SELECT count(*) AS n FROM t WHERE rlm_filter(question, 'asks for a refund').value"
    )
    assert kept.collect()[0]["n"] == sum(
        condition_holds(t, "asks for a refund") for t in texts.values()
    )
