"""aggregate / top_k / join through the Polars namespace and as Spark ``DataFrame.transform`` steps."""

from __future__ import annotations

from typing import Any

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.sim.folds import SUMMARY_LABELS, pair_match, parse_summary, summary_counts
from tests.ops.tickets import tickets


def _llm(sim: Any) -> rp.LLM:
    return rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")


def _df() -> pl.DataFrame:
    return pl.DataFrame({"u": [i % 2 for i in range(200)], "q": tickets(200, seed=3)})


def test_polars_namespace(sim: Any) -> None:
    df = _df()
    summaries = df.rlm.aggregate("q", "main complaints", llm=_llm(sim), by="u")
    assert summaries["rows"].to_list() == [100, 100]
    lazy = df.lazy().rlm.top_k("q", "refund", 3, llm=_llm(sim))
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect()["rank"].to_list() == [1, 2, 3]
    faq = pl.DataFrame({"u": [0, 1], "f": ["Refunds arrive in 5 days.", "Reset your password."]})
    pairs = df.rlm.join(faq, "q", "f", "the FAQ answers it", llm=_llm(sim), block_on="l.u = r.u")
    assert set(pairs.columns) >= {"q", "f", "u_right", "join_error"}
    want = sorted((q, f) for u, q in df.iter_rows() for fu, f in faq.iter_rows()
                  if u == fu and pair_match(q, f))
    assert want and sorted(pairs.select("q", "f").iter_rows()) == want
    assert pairs["join_error"].null_count() == pairs.height


def test_spark_transform_steps(sim: Any, spark: Any) -> None:
    df = _df()
    sdf = spark.createDataFrame(df.to_arrow())
    out = sdf.transform(rp.spark.aggregate("q", "main complaints", llm=_llm(sim), by="u"))
    rows = {r["u"]: r for r in out.collect()}
    for user, row in rows.items():
        texts = df.filter(pl.col("u") == user)["q"].to_list()
        assert parse_summary(row["summary"], SUMMARY_LABELS) == summary_counts(texts)
    best = sdf.transform(rp.spark.top_k("q", "refund", 3, llm=_llm(sim)))
    assert [r["rank"] for r in best.collect()] == [1, 2, 3]
    right = spark.createDataFrame(pl.DataFrame({"u": [0], "f": ["Refunds arrive in 5 days."]}).to_arrow())
    pairs = sdf.transform(rp.spark.join(right, "q", "f", "answers it", llm=_llm(sim),
                                        block_on="l.u = r.u"))
    assert "join_error" in pairs.columns
    got = sorted((r["q"], r["f"]) for r in pairs.collect())
    f0 = "Refunds arrive in 5 days."
    assert got and got == sorted((q, f0) for u, q in df.iter_rows() if u == 0 and pair_match(q, f0))
