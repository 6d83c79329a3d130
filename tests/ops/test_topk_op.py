"""rp.top_k: score pass + re-rank over real HTTP against the simulator, on both engines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError, UnansweredRowsError
from rlm_pipeline.ops.topk_op import TopKSpec, run_top_k, top_k
from rlm_pipeline.sim.folds import score_value
from tests.ops.tickets import FAULTS, tickets

CRITERION = "billing refund problems"


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 64}
    return rp.LLM(**{**base, **kw})


def _frame(n: int = 2_000, distinct: int = 1_500) -> pl.DataFrame:
    return pl.DataFrame({"id": range(n), "q": tickets(n, distinct=distinct, seed=9)})


def _expected(df: pl.DataFrame, k: int) -> list[str]:
    """The texts of the simulator's best rows: score, then text (rows sharing a text: any order)."""
    scores = [score_value(t, CRITERION) for t in df["q"].to_list()]
    ranked = df.with_columns(pl.Series("s", scores))
    return ranked.sort(["s", "q"], descending=[True, False]).head(k)["q"].to_list()


@pytest.mark.parametrize("engine", ["polars", "spark"])
def test_top_k_right_rows_few_calls(sim: Any, spark: Any, engine: str) -> None:
    df = _frame()
    data = spark.createDataFrame(df.to_arrow()) if engine == "spark" else df
    out, stats = run_top_k(data, TopKSpec("q", CRITERION, k=10), _llm(sim))
    frame = pl.DataFrame(out.toArrow()) if engine == "spark" else out
    assert frame.columns == ["id", "q", "score", "rank"]
    assert frame["q"].to_list() == _expected(df, 10)
    assert frame["id"].n_unique() == 10  # k different rows
    assert frame["rank"].to_list() == list(range(1, 11))
    assert frame["score"].to_list() == [score_value(t, CRITERION) for t in frame["q"]]
    assert stats.rerank_calls == 1 and stats.rerank_failed == 0
    distinct = df["q"].n_unique()
    if engine == "polars":  # one scoring pass over distinct texts + one re-rank call
        assert sim.stats()["requests"] == math.ceil(distinct / 16) + 1
    else:  # Spark tasks dedup per partition: a text in two partitions is asked twice
        assert sim.stats()["requests"] <= math.ceil(df.height / 16) + 4
    assert sim.stats()["requests"] < distinct * math.log2(distinct) / 100


def test_larger_k_sliding_window_and_cached_rerun(sim: Any, tmp_path: Path) -> None:
    df = _frame(1_000, 800)
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    out, stats = run_top_k(df, TopKSpec("q", CRITERION, k=40), llm)
    assert out["q"].to_list() == _expected(df, 40)
    assert stats.rerank_calls == TopKSpec("q", CRITERION, k=40).rerank_calls(stats.candidates) > 1
    sent = sim.stats()["requests"]
    again = top_k(df, "q", CRITERION, 40, llm)
    assert sim.stats()["requests"] == sent  # row answers and re-rank replies from the cache
    assert again["q"].to_list() == out["q"].to_list()


def test_with_faults_on_error(sim_factory: Any) -> None:
    sim = sim_factory(**FAULTS, seed=4)
    df = _frame(1_000, 900)
    out, stats = run_top_k(df, TopKSpec("q", CRITERION, k=5), _llm(sim, timeout_s=1.0),
                           on_error="drop")
    assert stats.scoring.rows == 1_000
    assert stats.scoring.answered + sum(stats.scoring.errors.values()) == 1_000
    assert out.height == 5 and out["rank"].to_list() == [1, 2, 3, 4, 5]
    assert sim.stats()["errors_by_status"]


def test_unscored_rows_raise_by_default(sim: Any) -> None:
    df = pl.DataFrame({"q": ["refund " * 30, "billing refund", "hello"]})
    with pytest.raises(UnansweredRowsError, match="1 of 3 rows have no score: input_too_long 1"):
        top_k(df, "q", CRITERION, 2, _llm(sim), max_row_tokens=20)
    out = top_k(df, "q", CRITERION, 2, _llm(sim), max_row_tokens=20, on_error="drop")
    assert out["q"].to_list() == ["billing refund", "hello"]


def test_bad_arguments(sim: Any) -> None:
    df = pl.DataFrame({"q": ["a"], "rank": [1]})
    with pytest.raises(InputError, match="'rank' already exists"):
        top_k(df, "q", CRITERION, 1, _llm(sim))
    with pytest.raises(InputError, match="k must be an integer >= 1"):
        top_k(df, "q", CRITERION, 0, _llm(sim))
    assert sim.stats()["requests"] == 0
