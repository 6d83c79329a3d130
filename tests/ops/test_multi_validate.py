"""Validation of aggregate / top_k / join outputs: real outputs pass, broken ones fail."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.ops.multi_validate import validate_aggregate, validate_join, validate_top_k
from tests.ops.tickets import tickets


def _llm(sim: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")


@pytest.mark.parametrize("backend", ["builtin", "great_expectations"])
def test_aggregate_output(sim: Any, backend: str) -> None:
    df = pl.DataFrame({"u": [i % 4 for i in range(400)], "q": tickets(400, seed=1)})
    out = rp.aggregate(df, "q", "themes", _llm(sim), by="u")
    assert validate_aggregate(out, input_rows=400, groups=4, backend=backend).success
    broken = out.with_columns(pl.lit(None, pl.String).alias("summary_error"),
                              (pl.col("rows_summarised") - 1).alias("rows_summarised"))
    result = validate_aggregate(broken, input_rows=401, backend=backend)
    assert not result.success and len(result.failed) == 2


def test_top_k_and_join_outputs(sim: Any) -> None:
    df = pl.DataFrame({"u": [i % 2 for i in range(100)], "q": tickets(100, seed=2)})
    best = rp.top_k(df, "q", "refund", 5, _llm(sim))
    assert validate_top_k(best, k=5, backend="builtin").success
    assert not validate_top_k(best, k=4, backend="builtin").success
    pairs = rp.join(df, df.head(4), "q", "q", "same topic", _llm(sim), block_on="l.u = r.u")
    assert validate_join(pairs, backend="builtin").success
    bad = pairs.with_columns(pl.lit("oops").alias("join_error"))
    assert not validate_join(bad, backend="builtin").success
