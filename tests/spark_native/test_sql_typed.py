"""Typed extract functions and the query budget of the Spark SQL functions
(``rp.spark.register(..., extract=..., budget=..., tasks=...)``), through
``spark.sql`` over a temp view, against the simulator over real HTTP."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pyarrow as pa
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.stats import ERROR_KINDS
from rlm_pipeline.sim import intended_label
from rlm_pipeline.sim.mapper import extract_fields
from rlm_pipeline.spark_sql import register
from tests.ops.tickets import tickets

pytestmark = pytest.mark.spark

REFUND = {"amount": "number", "order_id": "string"}
TICKET = {
    "month": "date",
    "topic": ["billing", "technical", "account", "other"],
    "mentions_refund": "boolean",
    "ref_number": "integer",
}


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 16}
    return rp.LLM(**{**base, **kw})


def _view(spark: Any, n: int, seed: int, distinct: int | None, parts: int = 2) -> dict[int, str]:
    """Temp view ``t(ticket_id, question)`` in ``parts`` partitions (equal texts together)."""
    texts = tickets(n, distinct=distinct, seed=seed)
    table = pa.table({"ticket_id": list(range(n)), "question": texts})
    spark.createDataFrame(table).repartition(parts, "question").createOrReplaceTempView("t")
    return dict(enumerate(texts))


def _expected(text: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The simulator's answer as the typed struct holds it (dates as dates)."""
    out = extract_fields(text, fields)
    return {
        k: datetime.date.fromisoformat(v) if fields[k] == "date" and v is not None else v
        for k, v in out.items()
    }


@pytest.mark.parametrize("kind", ["classic", "connect"])
def test_typed_extract_from_sql(
    kind: str, request: pytest.FixtureRequest, sim_factory: Any
) -> None:
    spark = request.getfixturevalue("spark" if kind == "classic" else "connect")
    sim = sim_factory(seed=6)
    texts = _view(spark, 200, seed=34, distinct=120)
    fns = register(
        spark,
        llm=_llm(sim),
        batch_size=8,
        extract={"rlm_extract_refund": "amount number, order_id string", "rlm_ticket": TICKET},
    )
    assert fns.names[-2:] == ("rlm_extract_refund", "rlm_ticket")
    assert fns.typed["rlm_extract_refund"] == ("struct<amount:double,order_id:string,error:string>")
    out = spark.sql(
        "SELECT ticket_id, question, rlm_extract_refund(question) AS x, "
        "rlm_ticket(question) AS y FROM t"
    )
    assert out.schema["x"].dataType.simpleString() == fns.typed["rlm_extract_refund"]
    assert out.schema["y"].dataType.simpleString() == (
        "struct<month:date,topic:string,mentions_refund:boolean,ref_number:bigint,error:string>"
    )
    rows = out.collect()
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)  # every row once
    for r in rows:
        x, y = r["x"].asDict(), r["y"].asDict()
        assert x.pop("error") is None and y.pop("error") is None
        assert x == _expected(r["question"], REFUND)
        assert y == _expected(r["question"], TICKET)
    # a typed field is a column SQL can compare: the rows with an amount over 100
    kept = spark.sql("SELECT ticket_id FROM t WHERE rlm_extract_refund(question).amount > 100")
    want = {i for i, q in texts.items() if (_expected(q, REFUND)["amount"] or 0) > 100}
    assert {r["ticket_id"] for r in kept.collect()} == want and want


def test_typed_extract_faults_give_nulls_with_reasons(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(fault_500=0.2, fault_wrong_ids=0.05, seed=7)
    texts = _view(spark, 400, seed=35, distinct=300)
    register(spark, llm=_llm(sim, max_retries=0), batch_size=8, extract={"rlm_refund": REFUND})
    rows = spark.sql("SELECT ticket_id, question, rlm_refund(question) AS x FROM t").collect()
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)
    failed = 0
    for r in rows:
        x = r["x"].asDict()
        error = x.pop("error")
        if error is None:
            assert x == _expected(r["question"], REFUND)
        else:  # no value at all, and the reason's kind
            failed += 1
            assert x == {"amount": None, "order_id": None}
            assert error.split(":")[0] in ERROR_KINDS
    assert 0 < failed < len(rows) * 0.5, failed


def test_register_refuses_bad_typed_functions_and_budgets(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory()
    llm = _llm(sim)
    cases = [
        ({"extract": {"rlm_classify": REFUND}}, "is taken"),
        ({"extract": {"Rlm_Extract": REFUND}}, "is taken"),
        ({"extract": {"1x": REFUND}}, "must be an identifier"),
        ({"extract": {"f": "amount number, error string"}}, "may not be called 'error'"),
        ({"extract": {"f": "amount float"}}, "extract: f: field 'amount'"),
        ({"extract": {"f": {"a": "string", "A": "number"}}}, "differ ignoring case"),
        ({"extract": ["f"]}, "extract must be a dict"),
        ({"budget": rp.Budget(max_calls=5)}, "budget= needs tasks="),
        ({"budget": rp.Budget(max_calls=5), "tasks": 0}, "tasks must be an integer >= 1"),
        ({"tasks": 4}, "only used with budget="),
        ({"budget": rp.Budget(max_cost_usd=1.0), "tasks": 2}, "no price for model"),
    ]
    for options, message in cases:
        with pytest.raises(InputError, match=message):
            register(spark, llm=llm, **options)
    assert sim.stats()["requests"] == 0


def test_budget_is_shared_over_the_tasks_of_a_query(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(seed=8)
    labels = ["account", "billing", "shipping", "technical"]
    texts = _view(spark, 400, seed=36, distinct=None, parts=4)  # all different
    query = (
        "SELECT ticket_id, question, spark_partition_id() AS part, "
        "rlm_classify(question, array('account','billing','shipping','technical')) AS r FROM t"
    )
    # 4 partitions, the budget shared over 4 tasks: 2 calls each, 8 in all
    fns = register(spark, llm=_llm(sim), batch_size=8, budget=rp.Budget(max_calls=8), tasks=4)
    sim.reset_stats()
    rows = spark.sql(query).collect()
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)
    calls = sim.stats()["requests"]
    assert 0 < calls <= 8 and fns.usage is not None and fns.usage.calls == calls
    answered = [r for r in rows if r["r"]["label"] is not None]
    assert 0 < len(answered) <= 8 * 8
    assert all(r["r"]["label"] == intended_label(r["question"], labels) for r in answered)
    assert {r["part"] for r in answered} == {0, 1, 2, 3}  # each task had its share
    refused = [r for r in rows if r["r"]["label"] is None]
    assert refused and all(r["r"]["error"].startswith("budget_exceeded") for r in refused)

    # shared over 2 tasks while the query runs 4: partitions 2 and 3 get no share
    register(spark, llm=_llm(sim), batch_size=8, budget=rp.Budget(max_calls=8), tasks=2)
    sim.reset_stats()
    rows = spark.sql(query).collect()
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)
    assert 0 < sim.stats()["requests"] <= 8
    late = [r for r in rows if r["part"] >= 2]
    assert late and all(
        r["r"]["label"] is None and "is past tasks=2" in r["r"]["error"] for r in late
    )
    assert any(r["r"]["label"] is not None for r in rows if r["part"] < 2)


def test_many_arrow_batches_per_task_are_answered_in_order_with_dedup(
    spark: Any, sim_factory: Any
) -> None:
    """Small Arrow batches: several per task, answered two at a time, texts asked once."""
    sim = sim_factory(seed=9)
    labels = ["account", "billing", "shipping", "technical"]
    texts = _view(spark, 600, seed=37, distinct=150)
    fns = register(spark, llm=_llm(sim), batch_size=16)
    sim.reset_stats()
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, "64")
    try:
        rows = spark.sql(
            "SELECT ticket_id, question, "
            "rlm_classify(question, array('account','billing','shipping','technical')) AS r, "
            "rlm_extract(question, 'amount number') AS x FROM t"
        ).collect()
    finally:
        spark.conf.set(key, before)
    assert sorted(r["ticket_id"] for r in rows) == sorted(texts)
    assert all(r["r"]["label"] == intended_label(r["question"], labels) for r in rows)
    assert all(r["x"]["error"] is None for r in rows)
    distinct = len(set(texts.values()))
    batches = 2 * math.ceil(600 / 2 / 64) + 2  # per task ~300 rows in batches of 64 (+ skew)
    requests = sim.stats()["requests"]
    # each distinct text asked once per function (equal texts share a partition): at most
    # one part-filled call per batch more than distinct / 16, for each of the 2 functions
    assert requests <= 2 * (math.ceil(distinct / 16) + batches), requests
    assert fns.usage is not None and fns.usage.calls == requests
