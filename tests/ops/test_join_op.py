"""rp.join: blocked candidate pairs asked over real HTTP against the simulator, on both engines."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import (
    ExpressionError,
    InputError,
    UnansweredRowsError,
    UnsupportedExpressionError,
)
from rlm_pipeline.ops.join_op import JoinSpec, join, run_join
from rlm_pipeline.sim.folds import pair_match
from tests.ops.tickets import FAULTS, tickets

FAQS = (
    "Refunds arrive within 5 days of the request.",
    "Reset your password from the login page.",
    "The app crashes: update to the latest version.",
    "Our office is in Lisbon.",
    "Invoices are in the billing tab.",
    "Sync errors: reconnect the integration.",
)
CONDITION = "the FAQ answers the question"


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 64}
    return rp.LLM(**{**base, **kw})


def _sides(n: int = 2_000, topics: int = 100) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = random.Random(1)
    questions = tickets(n, distinct=40, seed=2)
    left = pl.DataFrame({"lid": range(n), "topic": [rng.randrange(topics) for _ in range(n)],
                         "q": questions})
    right = pl.DataFrame({"rid": range(n), "topic": [rng.randrange(topics) for _ in range(n)],
                          "faq": [FAQS[i % len(FAQS)] for i in range(n)]})
    return left, right


def _expected(left: pl.DataFrame, right: pl.DataFrame) -> set[tuple[int, int]]:
    cand = left.join(right, on="topic")
    return {(a, b) for a, b, q, f in cand.select("lid", "rid", "q", "faq").iter_rows()
            if pair_match(q, f)}


def _pairs(out: Any) -> list[tuple[int, int]]:
    frame = pl.DataFrame(out.toArrow()) if hasattr(out, "toArrow") else out
    return sorted(zip(frame["lid"].to_list(), frame["rid"].to_list(), strict=True))


def test_2000_x_2000_blocked_same_pairs_both_engines(sim: Any, spark: Any, tmp_path: Path) -> None:
    left, right = _sides()
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    spec = JoinSpec("q", "faq", CONDITION, block_on="l.topic = r.topic")
    out, stats = run_join(left, right, spec, llm)
    assert out.columns == ["lid", "topic", "q", "rid", "topic_right", "faq", "join_error"]
    expected = _expected(left, right)
    pairs = _pairs(out)
    assert pairs == sorted(expected)
    assert stats.cross_pairs == 4_000_000
    assert stats.pairs == left.join(right, on="topic").height
    assert stats.pairs <= 0.02 * stats.cross_pairs
    assert stats.matched + stats.not_matched + sum(stats.failed.values()) + stats.blank == stats.pairs
    assert stats.matched == len(expected)
    polars_calls = sim.stats()["requests"]
    assert polars_calls <= -(-40 * len(FAQS) // 16) + 2  # distinct pair texts / batch size

    sdf_left, sdf_right = spark.createDataFrame(left.to_arrow()), spark.createDataFrame(right.to_arrow())
    spark_out, spark_stats = run_join(sdf_left, sdf_right, spec, llm)
    assert _pairs(spark_out) == pairs
    assert spark_stats.pairs == stats.pairs and spark_stats.matched == stats.matched
    # the re-run (on Spark) asked no pair again; its one request is the driver's 1-token
    # preflight chat (a fresh endpoint check before Spark tasks start)
    kinds = sim.stats()["by_kind"]
    assert sum(n for kind, n in kinds.items() if kind.startswith("map")) == polars_calls
    assert sim.stats()["requests"] <= polars_calls + 1


@pytest.mark.parametrize("engine", ["polars", "spark"])
def test_faults_every_pair_accounted(sim_factory: Any, spark: Any, engine: str) -> None:
    sim = sim_factory(**FAULTS, seed=8)
    left, right = _sides(300, 10)
    left = left.with_columns(pl.Series("q", tickets(300, distinct=300, seed=4)))
    data = [spark.createDataFrame(f.to_arrow()) for f in (left, right)] if engine == "spark" \
        else [left, right]
    out, stats = run_join(*data, JoinSpec("q", "faq", CONDITION, block_on="l.topic = r.topic"),
                          _llm(sim, timeout_s=1.0), on_error="keep")
    assert stats.matched + stats.not_matched + sum(stats.failed.values()) + stats.blank == stats.pairs
    frame = pl.DataFrame(out.toArrow()) if engine == "spark" else out
    assert frame.height == stats.matched + sum(stats.failed.values())
    expected = _expected(left, right)
    for lid, rid, error in frame.select("lid", "rid", "join_error").iter_rows():
        if error is None:
            assert (lid, rid) in expected
        else:
            assert error.split(":")[0] in ("api_error", "parse_error", "missing_in_reply")
    assert sim.stats()["errors_by_status"]


def test_small_inputs_nested_loop_and_blank_sides(sim: Any) -> None:
    left = pl.DataFrame({"q": ["refund my invoice", None, "app crashes"]})
    right = pl.DataFrame({"faq": ["Invoices are in the billing tab.", "Our office is in Lisbon."]})
    out, stats = run_join(left, right, JoinSpec("q", "faq", CONDITION), _llm(sim))
    assert (stats.pairs, stats.blank) == (6, 2)
    assert stats.matched + stats.not_matched == 4
    assert out.select("q", "faq").rows() == [("refund my invoice", "Invoices are in the billing tab.")]


def test_unblocked_cross_product_refused_before_any_call(sim: Any) -> None:
    left, right = _sides(400, 10)
    with pytest.raises(InputError, match=r"^join of 400 x 400 rows is 160,000 candidate pairs"):
        join(left, right, "q", "faq", CONDITION, _llm(sim))
    with pytest.raises(InputError, match="block_on leaves"):
        join(left, right, "q", "faq", CONDITION, _llm(sim), block_on="l.topic = r.topic",
             max_pairs=100)
    assert sim.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("block_on", "error", "match"),
    [
        ("topic = r.topic", ExpressionError, "qualified with l."),
        ("l.topic > r.topic", ExpressionError, "needs an equality"),
        ("l.topic = r.topic AND read_csv('x') = 1", UnsupportedExpressionError, "read_csv"),
        ("l.topic = r.nope", ExpressionError, "nope"),
        ("l.topic = r.topic; DROP TABLE l", ExpressionError, "."),
    ],
)
def test_block_on_checked_by_the_allow_list(
    sim: Any, block_on: str, error: type[Exception], match: str
) -> None:
    left, right = _sides(20, 3)
    with pytest.raises(error, match=match):
        join(left, right, "q", "faq", CONDITION, _llm(sim), block_on=block_on)
    assert sim.stats()["requests"] == 0


def test_failed_pairs_raise_by_default(sim: Any) -> None:
    left = pl.DataFrame({"q": ["refund " * 40]})
    right = pl.DataFrame({"faq": ["Invoices are in the billing tab."]})
    with pytest.raises(UnansweredRowsError, match="1 of 1 candidate pairs have no answer: input_too_long 1"):
        join(left, right, "q", "faq", CONDITION, _llm(sim), max_row_tokens=20)
    dropped = join(left, right, "q", "faq", CONDITION, _llm(sim), max_row_tokens=20,
                   on_error="drop")
    assert dropped.height == 0


def test_text_columns_of_other_types(sim: Any) -> None:
    left = pl.DataFrame({"n": [1, 2]})
    right = pl.DataFrame({"x": [0.5, 1.5]})
    out = join(left, left.rename({"n": "m"}), "n", "m", "same number", _llm(sim))
    assert out.columns == ["n", "m", "join_error"]  # integers are read as text
    with pytest.raises(InputError, match="holds float64 values"):
        join(left, right, "n", "x", "same", _llm(sim))
