"""rp.filter and rp.extract on both engines, over real HTTP against the simulator."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError, UnansweredRowsError
from rlm_pipeline.ops.extract_op import ExtractSpec
from rlm_pipeline.ops.filter_op import FilterSpec
from rlm_pipeline.ops.semantic import run_extract, run_filter
from rlm_pipeline.ops.stats import ERROR_KINDS
from rlm_pipeline.sim.mapper import condition_holds, extract_fields
from tests.ops.tickets import FAULTS, tickets

ENGINES = ["polars", pytest.param("spark", marks=pytest.mark.spark)]
CONDITION = "asks for a refund"
FIELDS: dict[str, Any] = {
    "refund_amount": "number",
    "order_id": "string",
    "month": "date",
    "topic": ["billing", "technical", "account", "other"],
    "urgent": "boolean",
}


def _texts(n: int = 300, distinct: int = 200, seed: int = 31) -> list[str | None]:
    texts: list[str | None] = list(tickets(n, distinct=distinct, seed=seed))
    texts[5], texts[17] = None, "   "  # blank rows: never sent
    return texts


def _data(engine: str, request: Any, texts: list[str | None]) -> Any:
    frame = pl.DataFrame({"id": range(len(texts)), "q": texts})
    if engine == "polars":
        return frame
    spark = request.getfixturevalue("spark")
    sdf = spark.createDataFrame(frame.to_arrow())
    return sdf.repartitionByRange(3, "id").sortWithinPartitions("id")


def _collect(out: Any) -> pl.DataFrame:
    return out if isinstance(out, pl.DataFrame) else pl.DataFrame(out.toArrow())


def _llm(sim: Any, tmp_path: Any, **kw: Any) -> rp.LLM:
    base = {
        "model": "sim-1",
        "base_url": sim.base_url,
        "api_key": "x",
        "max_concurrency": 16,
        "cache_path": str(tmp_path / "cache.sqlite"),
    }
    return rp.LLM(**{**base, **kw})


def _requests(sim: Any, op: str | None = None) -> int:
    """Requests the simulator answered: all, or the operator's own (Spark's driver also
    sends a one-token preflight chat, skipped when the response cache holds it)."""
    stats = sim.stats(log=False)
    deadline = time.monotonic() + 5
    while stats["in_flight"] and time.monotonic() < deadline:  # calls the client gave up on
        time.sleep(0.05)
        stats = sim.stats(log=False)
    if op is None:
        return int(stats["requests"])
    return sum(n for kind, n in stats["by_kind"].items() if kind.startswith(op))


@pytest.mark.parametrize("engine", ENGINES)
def test_filter_accounts_for_every_row_under_faults(
    engine: str, request: Any, sim_factory: Any, tmp_path: Any
) -> None:
    sim = sim_factory(latency_ms=2, **{**FAULTS, "timeout_delay_s": 1.0}, seed=32)
    texts = _texts() if engine == "polars" else _texts(150, distinct=100)  # Spark: time budget
    data = _data(engine, request, texts)
    llm = _llm(sim, tmp_path, max_retries=0, timeout_s=0.5)
    holds = {i for i, t in enumerate(texts) if t and t.strip() and condition_holds(t, CONDITION)}

    # keep: failed rows come out with their reason; every row is kept, dropped or failed
    out, stats = run_filter(data, FilterSpec("q", CONDITION), llm, on_error="keep")
    got = _collect(out)
    assert stats.kept + stats.dropped + stats.failed == stats.rows == len(texts)
    assert stats.failed > 0 and stats.blank == 2 and stats.returned == got.height
    assert got.columns == ["id", "q", "filter_error"]
    assert got["id"].to_list() == sorted(got["id"].to_list())  # input order
    answered = got.filter(pl.col("filter_error").is_null())["id"].to_list()
    failed = got.filter(pl.col("filter_error").is_not_null())
    assert set(answered) <= holds and len(answered) == stats.kept
    assert failed.height == stats.failed
    assert all(r.split(":")[0] in ERROR_KINDS for r in failed["filter_error"])

    if engine == "polars":  # drop: the same counts, the failed rows left out
        out, dropped = run_filter(data, FilterSpec("q", CONDITION), llm, on_error="drop")
        assert dropped.kept + dropped.dropped + dropped.failed == len(texts)
        assert _collect(out).height == dropped.kept
        assert _collect(out).columns == ["id", "q"]

    # raise (default): a typed error naming the count; answered rows are not asked again
    sim.set_config(fault_429=0, fault_500=0, fault_timeout=0, fault_malformed=0, fault_wrong_ids=0)
    before = _requests(sim, "filter")
    out, clean = run_filter(data, FilterSpec("q", CONDITION), llm)
    assert clean.failed == 0 and clean.kept == len(holds)
    assert _collect(out)["id"].to_list() == sorted(holds)
    assert _requests(sim, "filter") - before <= stats.failed  # only the failed rows

    # a cached re-run sends no operator call
    before = _requests(sim, "filter")
    assert _collect(rp.filter(data, "q", CONDITION, llm))["id"].to_list() == sorted(holds)
    assert _requests(sim, "filter") == before


def test_filter_raise_names_the_count(sim_factory: Any, tmp_path: Any) -> None:
    sim = sim_factory(fault_500=1.0)
    texts = ["Can I get a refund?", "The app crashes", "refund me please"]
    llm = _llm(sim, tmp_path, max_retries=0)
    with pytest.raises(UnansweredRowsError) as caught:
        rp.filter(pl.DataFrame({"q": texts}), "q", CONDITION, llm)
    err = caught.value
    assert (err.failed, err.rows, err.errors) == (3, 3, {"api_error": 3})
    assert "3 of 3 rows have no answer" in str(err) and "Re-run" in str(err)
    with pytest.raises(InputError, match="on_error"):
        rp.filter(pl.DataFrame({"q": texts}), "q", CONDITION, llm, on_error="ignore")


@pytest.mark.parametrize("engine", ENGINES)
def test_filter_calls_are_distinct_texts_over_batch_size(
    engine: str, request: Any, sim_factory: Any, tmp_path: Any
) -> None:
    sim = sim_factory()
    texts = _texts(400, distinct=160, seed=33)
    distinct = len({t for t in texts if t and t.strip()})
    out = rp.filter(_data(engine, request, texts), "q", CONDITION, _llm(sim, tmp_path))
    calls = sim.stats()["by_kind"].get("filter_batch", 0)
    if engine == "polars":
        assert calls == math.ceil(distinct / 16)
    else:  # each of the 3 tasks dedups its own rows: at most one partial batch more per task
        assert math.ceil(distinct / 16) <= calls <= math.ceil(distinct / 16) * 3
    expected = [i for i, t in enumerate(texts) if t and t.strip() and condition_holds(t, CONDITION)]
    assert _collect(out)["id"].to_list() == expected


def _expected(text: str) -> dict[str, Any]:
    values = extract_fields(text, FIELDS)
    if values["month"] is not None:
        values["month"] = dt.date.fromisoformat(values["month"])
    if values["refund_amount"] is not None:
        values["refund_amount"] = float(values["refund_amount"])
    return values


@pytest.mark.parametrize("engine", ENGINES)
def test_extract_typed_columns_under_faults(
    engine: str, request: Any, sim_factory: Any, tmp_path: Any
) -> None:
    sim = sim_factory(latency_ms=2, **{**FAULTS, "timeout_delay_s": 1.0}, seed=34)
    texts = _texts(seed=35) if engine == "polars" else _texts(150, distinct=100, seed=35)
    data = _data(engine, request, texts)
    llm = _llm(sim, tmp_path, max_retries=1, timeout_s=0.5)
    out, stats = run_extract(data, ExtractSpec("q", FIELDS), llm)
    got = _collect(out).sort("id") if engine == "spark" else _collect(out)
    assert got.columns == ["id", "q", *FIELDS, "extract_error"]
    assert got["id"].to_list() == list(range(len(texts)))  # every row once
    assert dict(got.schema) == {
        "id": pl.Int64,
        "q": pl.String,
        "refund_amount": pl.Float64,
        "order_id": pl.String,
        "month": pl.Date,
        "topic": pl.String,
        "urgent": pl.Boolean,
        "extract_error": pl.String,
    }
    assert stats.rows == len(texts) and stats.errors.get("empty_input") == 2
    failed = 0
    for row in got.iter_rows(named=True):
        values = {name: row[name] for name in FIELDS}
        if row["extract_error"] is None:
            assert values == _expected(row["q"])  # nulls here: the text does not say
        else:  # a reason for every row without values
            failed += 1
            assert row["extract_error"].split(":")[0] in ERROR_KINDS
            assert all(v is None for v in values.values())
    assert failed == stats.failed
    assert got["refund_amount"].drop_nulls().len() > 0 and got["month"].drop_nulls().len() > 0

    # the failed rows are asked again, the answered ones come from the store
    sim.set_config(fault_429=0, fault_500=0, fault_timeout=0, fault_malformed=0, fault_wrong_ids=0)
    out, again = run_extract(data, ExtractSpec("q", FIELDS), llm)
    assert again.failed == 2  # the blank rows only
    assert again.cached_rows == stats.rows - stats.failed
    before = _requests(sim, "extract")
    rp.extract(data, "q", FIELDS, llm)
    assert _requests(sim, "extract") == before  # a cached re-run sends no operator call


def test_extract_never_casts(sim_factory: Any, tmp_path: Any) -> None:
    sim = sim_factory()
    texts = ["A refund of $19 please", "A refund of $249.50 please", "no amount"]
    out = rp.extract(pl.DataFrame({"q": texts}), "q", {"amount": "integer"}, _llm(sim, tmp_path))
    assert out["amount"].to_list() == [19, None, None]
    errors = out["extract_error"].to_list()
    assert errors[0] is None and errors[2] is None  # no amount: null, no error
    assert errors[1].startswith("parse_error: field 'amount': expected integer, got 249.5")


def test_extract_refuses_bad_fields_before_any_call(sim_factory: Any, tmp_path: Any) -> None:
    sim = sim_factory()
    frame = pl.DataFrame({"q": ["x"], "amount": [1.0]})
    llm = _llm(sim, tmp_path)
    with pytest.raises(InputError, match="float"):
        rp.extract(frame, "q", {"total": "float"}, llm)
    with pytest.raises(InputError, match="identifier"):
        rp.extract(frame, "q", {"total amount": "number"}, llm)
    with pytest.raises(InputError, match="already exists"):
        rp.extract(frame, "q", {"amount": "number"}, llm)
    assert _requests(sim) == 0


@pytest.mark.parametrize(
    ("op", "params"),
    [("filter", {"condition": CONDITION}), ("extract", {"fields": FIELDS})],
)
def test_estimate_matches_the_run(op: str, params: dict[str, Any], sim_factory: Any,
                                  tmp_path: Any) -> None:
    sim = sim_factory(token_count="words")  # the server counts tokens its own way
    texts = _texts(200, distinct=120, seed=36)
    frame = pl.DataFrame({"id": range(len(texts)), "q": texts})
    llm = _llm(sim, tmp_path)
    est = rp.estimate(frame, "q", llm=llm, op=op, **params)
    assert est.rows == 200 and est.cached == 0
    if op == "filter":
        rp.filter(frame, "q", CONDITION, llm)
    else:
        rp.extract(frame, "q", FIELDS, llm)
    stats = sim.stats(log=False)
    assert est.calls == stats["requests"] == math.ceil(est.distinct_texts / 16)
    assert 0.5 < est.input_tokens / stats["input_tokens"] < 2.0
    again = rp.estimate(frame, "q", llm=llm, op=op, **params)
    assert (again.calls, again.cached) == (0, est.distinct_texts)  # stored answers are free
