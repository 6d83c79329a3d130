"""classify / llm_map / estimate on Polars against the simulator over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops import polars_fanout
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import FAULTS, LABELS, tickets


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 64}
    return rp.LLM(**{**base, **kw})


def _check_rows(out: pl.DataFrame, texts: list[str | None]) -> None:
    assert out.height == len(texts)
    assert out["id"].to_list() == list(range(len(texts)))
    assert out["q"].to_list() == texts
    for text, label, error in out.select("q", "label", "label_error").iter_rows():
        if label is None:
            assert error is not None and error.split(":")[0] in rp.ops.stats.ERROR_KINDS  # type: ignore[attr-defined]
        else:
            assert error is None
            assert label == intended_label(text, LABELS)


def test_20k_rows_with_faults_every_row_once(sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=5, **FAULTS, seed=3)
    texts: list[str | None] = list(tickets(20_000, distinct=15_000, seed=1))
    texts[10] = None
    texts[11] = "   "
    df = pl.DataFrame({"id": range(len(texts)), "q": texts})
    out = rp.classify(df, "q", list(LABELS), _llm(sim, timeout_s=1.0, max_retries=6))
    assert isinstance(out, pl.DataFrame)
    _check_rows(out, texts)
    stats = sim.stats()
    assert stats["errors_by_status"]  # faults really happened
    assert out["label"].null_count() < 50
    assert out.filter(pl.col("label").is_null())["label_error"].null_count() == 0


def test_batching_and_dedup_calls(sim: Any) -> None:
    texts = tickets(2_000, distinct=500, seed=2)
    df = pl.DataFrame({"id": range(2_000), "q": texts})
    out = rp.classify(df, "q", list(LABELS), _llm(sim), batch_size=16)
    _check_rows(out, list(texts))
    distinct = len(set(texts))
    assert sim.stats()["requests"] == -(-distinct // 16)


def test_lazyframe_streams_slices_and_keeps_order(sim: Any) -> None:
    texts = tickets(3_000, distinct=1_000, seed=4)
    lf = pl.DataFrame({"id": range(3_000), "q": texts}).lazy()
    meter = UsageMeter()
    out, stats = polars_fanout.apply(lf, ClassifySpec("q", LABELS), _llm(sim), meter=meter,
                                     slice_rows=700)
    assert isinstance(out, pl.LazyFrame)
    _check_rows(out.collect(), list(texts))
    assert stats.rows == 3_000 and stats.answered == 3_000
    calls = sim.stats()["requests"]
    assert calls == meter.snapshot().calls
    # dedup spans slices; each of the 5 slices may end with one partial batch
    least = -(-len(set(texts)) // 16)
    assert least <= calls <= least + 5


def test_rerun_reasks_only_failed_rows(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(fault_500=0.3, seed=5)
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"), max_retries=0)
    texts = tickets(800, seed=6)
    df = pl.DataFrame({"id": range(800), "q": texts})
    first = rp.classify(df, "q", list(LABELS), llm, batch_size=8)
    failed = first.filter(pl.col("label").is_null())
    assert failed.height > 0
    assert all(e.startswith("api_error") for e in failed["label_error"])
    sim.set_config(fault_500=0.0)
    sim.reset_stats()
    second = rp.classify(df, "q", list(LABELS), llm, batch_size=8)
    _check_rows(second, list(texts))
    assert second["label"].null_count() == 0
    # each failed call covered 8 rows of one batch; only those batches are sent again
    assert sim.stats()["requests"] == failed.height // 8


def test_estimate_is_close_to_the_servers_count(sim_factory: Any, tmp_path: Path) -> None:
    # The server counts tokens its own way (words and runs of punctuation, like a
    # tokenizer), not with the client's estimator: the estimate is checked against
    # a count it did not produce.
    sim = sim_factory(token_count="words")
    texts = tickets(1_000, distinct=400, seed=7)
    df = pl.DataFrame({"id": range(1_000), "q": texts})
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"), model="gpt-4.1-mini")
    est = rp.estimate(df, "q", list(LABELS), llm, batch_size=16)
    distinct = len(set(texts))
    assert (est.rows, est.distinct_texts, est.cached) == (1_000, distinct, 0)
    meter = UsageMeter()
    rp.classify(df, "q", list(LABELS), llm, batch_size=16, meter=meter)
    real = meter.snapshot()
    served = sim.stats()
    assert est.calls == real.calls == served["requests"]
    assert (real.input_tokens, real.output_tokens) == (
        served["input_tokens"],
        served["output_tokens"],
    )
    assert est.input_tokens != real.input_tokens  # two independent counts
    assert abs(est.input_tokens - real.input_tokens) <= 0.2 * real.input_tokens
    assert abs(est.output_tokens - real.output_tokens) <= 0.35 * real.output_tokens
    assert est.cost_usd is not None
    assert abs(est.cost_usd - real.cost_usd) <= 0.3 * real.cost_usd
    again = rp.estimate(df, "q", list(LABELS), llm, batch_size=16)
    assert (again.cached, again.calls, again.cost_usd) == (distinct, 0, 0.0)


def test_budget_stops_cleanly_before_limit(sim: Any) -> None:
    texts = tickets(1_600, seed=8)
    df = pl.DataFrame({"id": range(1_600), "q": texts})
    llm = _llm(sim, model="gpt-4.1-mini", max_concurrency=4)
    limit = 0.004
    meter = UsageMeter()
    out = rp.classify(df, "q", list(LABELS), llm, budget=rp.Budget(max_cost_usd=limit), meter=meter)
    _check_rows(out, list(texts))
    spent = meter.snapshot().cost_usd
    assert 0 < spent <= limit
    reasons = out["label_error"].drop_nulls().to_list()
    assert reasons and all(r.startswith("budget_exceeded") for r in reasons)
    assert out["label"].null_count() == len(reasons) < 1_600


def test_llm_map_integer(sim: Any) -> None:
    from rlm_pipeline.sim.mapper import map_value

    texts = tickets(200, seed=9)
    df = pl.DataFrame({"q": texts})
    out = rp.llm_map(df, "q", "Count the words", _llm(sim), output_type="integer")
    assert out["value"].dtype == pl.Int64
    assert out["value"].to_list() == [map_value(t, "integer") for t in texts]
    assert out["value_error"].null_count() == 200


def test_classify_to_parquet_streams(sim: Any, tmp_path: Path) -> None:
    texts = tickets(2_000, distinct=600, seed=10)
    src = tmp_path / "in.parquet"
    pl.DataFrame({"id": range(2_000), "q": texts}).write_parquet(src)
    dest = tmp_path / "out.parquet"
    stats = polars_fanout.classify_to_parquet(
        pl.scan_parquet(src), ClassifySpec("q", LABELS), _llm(sim), dest, slice_rows=300
    )
    _check_rows(pl.read_parquet(dest), list(texts))
    assert stats.rows == 2_000 and stats.usage.calls == sim.stats()["requests"]
