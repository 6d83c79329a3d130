"""Estimates of aggregate, top_k and join against what a run then sends (simulator over HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.aggregate_op import AggregateSpec, run_aggregate
from rlm_pipeline.ops.join_op import JoinSpec, run_join
from rlm_pipeline.ops.multi_estimate import estimate_aggregate, estimate_join, estimate_top_k
from rlm_pipeline.ops.topk_op import TopKSpec, run_top_k
from tests.ops.tickets import tickets


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", **kw)


def _frame() -> pl.DataFrame:
    return pl.DataFrame({"u": [i % 3 for i in range(3_000)],
                         "q": tickets(3_000, distinct=1_500, seed=1)})


def test_aggregate_estimate_bounds_the_run_and_knows_the_cache(sim: Any, tmp_path: Path) -> None:
    df = _frame()
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    spec = AggregateSpec("q", "main complaints", by=("u",), max_prompt_tokens=1_000,
                         summary_tokens=64)
    est = estimate_aggregate(df, spec, llm)
    meter = UsageMeter()
    _, stats = run_aggregate(df, spec, llm, meter=meter)
    leaves = sum(len(group.leaves) for group in stats.groups)
    real = meter.snapshot()
    assert est.rows == 3_000 and est.distinct_texts == df.unique(["u", "q"]).height
    assert real.calls <= est.calls <= real.calls + leaves // 4  # folds at full allowance: a bound
    assert real.input_tokens <= est.input_tokens
    again = estimate_aggregate(df, spec, llm)
    assert (again.calls, again.cached) == (0, est.calls)


def test_top_k_estimate_close_to_the_run(sim: Any) -> None:
    df = _frame()
    spec = TopKSpec("q", "billing refund", k=10)
    est = estimate_top_k(df, spec, _llm(sim))
    meter = UsageMeter()
    run_top_k(df, spec, _llm(sim), meter=meter)
    assert est.calls == meter.snapshot().calls
    assert abs(est.input_tokens - meter.snapshot().input_tokens) <= 0.05 * est.input_tokens


def test_join_estimate_exact_pairs_and_calls(sim: Any) -> None:
    left = _frame().head(300)
    right = pl.DataFrame({"u": [i % 3 for i in range(50)],
                          "f": ["Refunds arrive in 5 days.", "Reset your password."] * 25})
    spec = JoinSpec("q", "f", "the FAQ answers it", block_on="l.u = r.u")
    est = estimate_join(left, right, spec, _llm(sim))
    meter = UsageMeter()
    _, stats = run_join(left, right, spec, _llm(sim), meter=meter)
    assert est.rows == stats.pairs == 5_000
    assert est.calls == meter.snapshot().calls
    with pytest.raises(InputError, match="candidate pairs"):
        estimate_join(left, right, JoinSpec("q", "f", "x", max_pairs=10), _llm(sim))
    assert sim.stats()["requests"] == meter.snapshot().calls


def test_rp_estimate_op(sim: Any) -> None:
    df = _frame().head(200)
    llm = _llm(sim)
    agg = rp.estimate(df, "q", llm=llm, op="aggregate", instruction="themes", by="u")
    assert agg.rows == 200 and agg.calls >= 3
    top = rp.estimate(df, "q", llm=llm, op="top_k", criterion="refund", k=3, batch_size=8)
    assert top.calls == -(-df["q"].n_unique() // 8) + 1
    pairs = rp.estimate(df, "q", llm=llm, op="join", right=df, right_column="q",
                        condition="same topic", block_on="l.u = r.u")
    assert pairs.rows == sum(n * n for n in df["u"].value_counts()["count"])
    with pytest.raises(InputError, match="op must be one of"):
        rp.estimate(df, "q", llm=llm, op="sort")
    assert sim.stats()["requests"] == 0
