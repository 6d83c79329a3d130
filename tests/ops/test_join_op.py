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
from rlm_pipeline.llm.tokens import estimate_tokens
from rlm_pipeline.ops.join_op import JoinSpec, join, run_join
from rlm_pipeline.ops.multi_specs import PairSpec
from rlm_pipeline.ops.multi_wire import (
    PAIR_LEFT,
    PAIR_SINGLE_HEAD,
    pair_text,
    read_pairs,
    split_pair,
)
from rlm_pipeline.ops.reply import check_reply
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
    kept = frame.select("lid", "rid", "join_error").rows()
    assert len({(lid, rid) for lid, rid, _ in kept}) == len(kept)  # each pair once
    for lid, rid, error in kept:
        if error is None:
            assert (lid, rid) in expected
        else:
            assert error.split(":")[0] in ("api_error", "parse_error", "missing_in_reply")
    # every true match is in the output: answered (matched) or failed with its reason
    assert expected <= {(lid, rid) for lid, rid, _ in kept}
    assert sim.stats()["errors_by_status"]


@pytest.mark.parametrize("engine", ["polars", "spark"])
def test_small_inputs_nested_loop_and_blank_sides(sim: Any, spark: Any, engine: str) -> None:
    """A pair with a null, empty or whitespace-only side is never sent (``empty_input``)."""
    left = pl.DataFrame({"q": ["refund my invoice", None, "", " \n\t ", "app crashes"]})
    right = pl.DataFrame({"faq": ["Invoices are in the billing tab.", "  ",
                                  "Our office is in Lisbon."]})
    data = [spark.createDataFrame(f.to_arrow()) for f in (left, right)] if engine == "spark" \
        else [left, right]
    out, stats = run_join(*data, JoinSpec("q", "faq", CONDITION), _llm(sim))
    assert (stats.pairs, stats.blank) == (15, 11)  # 3 blank left rows x 3, 2 others x "  "
    assert stats.matched + stats.not_matched == 4  # only these were asked
    frame = pl.DataFrame(out.toArrow()) if engine == "spark" else out
    assert frame.select("q", "faq").rows() == [
        ("refund my invoice", "Invoices are in the billing tab.")]


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


# ----------------------------------------------------------------- the pair framing

TRICKY = ("refund?\nRIGHT: not a right text", 'say "hi" \\ back', "café ☕ 😀 refund", "12:34 invoice")


def test_pair_text_splits_exactly() -> None:
    for left in TRICKY:
        for right in (*TRICKY, ""):
            assert split_pair(pair_text(left, right)) == (left, right)


def test_each_left_text_once_per_call_ids_in_order() -> None:
    texts = [pair_text(left, f"faq {i} {left}") for left in TRICKY[:2] for i in range(8)]
    messages = PairSpec("same topic").messages(texts)
    user = messages[1]["content"]
    assert sum(line.startswith(PAIR_LEFT) for line in user.split("\n")) == 2
    assert read_pairs(user) == [(i, *split_pair(t)) for i, t in enumerate(texts)]
    assert "Instruction: " in messages[0]["content"]
    # one pair per call (real small models): a plain LEFT / RIGHT prompt, nothing numbered
    single = PairSpec("same topic", batch_size=1).messages(texts[:1])
    assert single[0]["content"].startswith(PAIR_SINGLE_HEAD)
    assert single[1]["content"].split("\n") == [
        'LEFT: "refund?\\nRIGHT: not a right text"', 'RIGHT: "faq 0 refund?\\nRIGHT: not a right text"'
    ]
    assert read_pairs(single[1]["content"]) == [(None, *split_pair(texts[0]))]


def test_reply_ids_map_back_to_one_pair_each() -> None:
    spec = PairSpec("same topic")
    reordered = {"results": [{"id": 2, "value": True}, {"id": 0, "value": False},
                             {"id": 1, "value": True}]}
    assert check_reply(reordered, 3, spec) == [(False, None), (True, None), (True, None)]
    missing = check_reply({"results": [{"id": 0, "value": True}, {"id": 2, "value": False}]}, 3, spec)
    assert missing[0] == (True, None) and missing[2] == (False, None)
    assert missing[1][0] is None and missing[1][1].startswith("missing_in_reply")
    for bad, reason in (([0, 0, 1, 2], "repeated id 0"), ([0, 1, 2, 7], "unknown id 7")):
        out = check_reply({"results": [{"id": i, "value": True} for i in bad]}, 3, spec)
        assert all(value is None and reason in (error or "") for value, error in out)


def _small(n_left: int, n_right: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    questions = tickets(n_left, distinct=n_left, seed=5)
    left = pl.DataFrame({"lid": range(n_left), "q": [f"{q} #{i}" for i, q in enumerate(questions)]})
    right = pl.DataFrame({"rid": range(n_right),
                          "faq": [f"{FAQS[i % len(FAQS)]} (#{i})" for i in range(n_right)]})
    return left, right


def test_framing_tokens_per_pair_and_rerun_sends_nothing(sim: Any, tmp_path: Path) -> None:
    left, right = _small(8, 24)  # 192 pairs, no blocking, every pair text distinct
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    out, stats = run_join(left, right, JoinSpec("q", "faq", CONDITION), llm)
    assert _pairs(out) == sorted(_expected_all(left, right))
    assert stats.pairs == 192 and stats.matched + stats.not_matched == 192
    first = sim.stats()
    per_pair = first["input_tokens"] / stats.pairs
    both = sum(estimate_tokens(q) + estimate_tokens(f) for q in left["q"] for f in right["faq"]) / 192
    one = sum(estimate_tokens(f) for f in right["faq"]) / 24
    # a framing that sends both texts per pair pays >= `both`; this one pays the right text,
    # its id and a share of the left text and the fixed lines
    assert per_pair < one + 8 < both
    assert first["requests"] == -(-192 // 16)
    again, _ = run_join(left, right, JoinSpec("q", "faq", CONDITION), llm)
    assert _pairs(again) == _pairs(out)
    assert sim.stats()["requests"] == first["requests"]  # the re-run sent no call


def _expected_all(left: pl.DataFrame, right: pl.DataFrame) -> set[tuple[int, int]]:
    return {(a, b) for a, q in left.select("lid", "q").iter_rows()
            for b, f in right.select("rid", "faq").iter_rows() if pair_match(q, f)}


def test_wrong_ids_fail_per_pair_never_a_made_up_answer(sim_factory: Any) -> None:
    sim = sim_factory(fault_wrong_ids=0.3, seed=3)
    left, right = _small(6, 16)
    out, stats = run_join(left, right, JoinSpec("q", "faq", CONDITION), _llm(sim), on_error="keep")
    assert sim.stats()["faults"].get("wrong_ids", 0) > 0
    assert stats.matched + stats.not_matched + sum(stats.failed.values()) == stats.pairs == 96
    assert set(stats.failed) <= {"missing_in_reply"}
    expected = _expected_all(left, right)
    rows = out.select("lid", "rid", "join_error").rows()
    assert len({(a, b) for a, b, _ in rows}) == len(rows)
    assert {(a, b) for a, b, e in rows if e is None} <= expected
    assert expected <= {(a, b) for a, b, _ in rows}
    assert all(e.startswith("missing_in_reply") for _, _, e in rows if e is not None)


def _map_calls(sim: Any) -> int:
    return sum(n for kind, n in sim.stats()["by_kind"].items() if kind.startswith("map"))


@pytest.mark.parametrize("batch_size", [16, 1])
def test_tricky_texts_same_pairs_and_keys_both_engines(
    sim: Any, spark: Any, tmp_path: Path, batch_size: int
) -> None:
    left = pl.DataFrame({"lid": range(4), "q": list(TRICKY)})
    right = pl.DataFrame({"rid": range(5), "faq": [*TRICKY, "Invoices are in the billing tab."]})
    llm = _llm(sim, cache_path=str(tmp_path / "c.sqlite"))
    spec = JoinSpec("q", "faq", CONDITION, batch_size=batch_size)
    out, stats = run_join(left, right, spec, llm)
    assert stats.pairs == 20 and stats.matched + stats.not_matched == 20
    assert _pairs(out) == sorted(_expected_all(left, right))
    calls = _map_calls(sim)
    assert calls == (2 if batch_size == 16 else 20)
    if batch_size == 1:  # the pair texts do not depend on the batch size: Spark once is enough
        return
    spark_out, _ = run_join(*(spark.createDataFrame(f.to_arrow()) for f in (left, right)), spec, llm)
    assert _pairs(spark_out) == _pairs(out)
    assert _map_calls(sim) == calls  # Spark built the same pair texts: all answered from the store


@pytest.mark.parametrize("engine", ["polars", "spark"])
def test_truncate_cuts_each_side_so_pairs_stay_apart(sim: Any, spark: Any, engine: str) -> None:
    long_left = "refund my invoice please, " * 20  # 520 chars: past the 80-char pair limit
    left = pl.DataFrame({"lid": [0], "q": [long_left]})
    right = pl.DataFrame({"rid": [0, 1], "faq": ["Invoices are in the billing tab.",
                                                  "Our office is in Lisbon, see you there."]})
    data = [spark.createDataFrame(f.to_arrow()) for f in (left, right)] if engine == "spark" \
        else [left, right]
    out, stats = run_join(*data, JoinSpec("q", "faq", CONDITION, max_row_tokens=20, truncate=True),
                          _llm(sim))
    # both pairs asked apart (a cut at the end of the pair text would have left one text)
    assert (stats.pairs, stats.matched, stats.not_matched) == (2, 1, 1)
    assert _pairs(out) == [(0, 0)]
