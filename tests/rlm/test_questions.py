"""RLM runs against the simulator over HTTP: several question shapes vs the hidden labels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM

from .truth import USERS, label_count, most_common, per_user

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"


def _run(llm: LLM, question: str, data: Any, **kwargs: Any) -> rp.RLMResult:
    return rp.RLM(llm, **kwargs).run(question, data, text_column="question")


def test_demo_question_equals_ground_truth(
    sim_llm: LLM, ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = _run(sim_llm, DEMO_Q, str(ticket_parquet))
    truth = label_count(ticket_frame, "billing", users=USERS)
    assert truth > 0
    assert res.value == truth
    assert res.answer == str(truth)
    assert res.stop_reason == "answer" and res.errors == 0
    tools = [r["tool"] for r in res.trace if r["kind"] == "tool"]
    assert tools == ["peek", "filter", "classify", "sql"]
    # the root only ever saw bounded metadata and results, never the table
    assert res.usage.max_prompt_tokens < 8000
    assert res.usage.calls >= 6  # 5 root turns + at least one classify sub-call


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "For each of users 12345, 67890 and 11111, how many questions are about technical?",
            lambda f: per_user(f, "technical", USERS),
        ),
        (
            "What is the most common label among users 12345, 67890 and 11111?",
            lambda f: most_common(f, users=USERS),
        ),
        (
            "How many questions about account were asked in March 2024?",
            lambda f: label_count(
                f, "account", date_from=dt.date(2024, 3, 1), date_to=dt.date(2024, 3, 31)
            ),
        ),
        (
            "How many billing questions were asked between 2024-06-10 and 2024-06-20?",
            lambda f: label_count(
                f, "billing", date_from=dt.date(2024, 6, 10), date_to=dt.date(2024, 6, 20)
            ),
        ),
        (
            "Which label is least common in February 2024?",
            lambda f: most_common(
                f, least=True, date_from=dt.date(2024, 2, 1), date_to=dt.date(2024, 2, 29)
            ),
        ),
    ],
    ids=["per-user", "most-common", "month", "date-range", "least-common-month"],
)
def test_question_shapes_match_ground_truth(
    sim_llm: LLM,
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
    question: str,
    expected: Any,
) -> None:
    res = _run(sim_llm, question, str(ticket_parquet))
    assert res.value == expected(ticket_frame)
    assert res.errors == 0


def test_top_user_matches_ground_truth(
    sim_llm: LLM, ticket_frame: pl.DataFrame, ticket_parquet: Path
) -> None:
    counts = per_user(ticket_frame, "billing", USERS)
    best = max(counts.values())
    res = _run(
        sim_llm,
        "Which of users 12345, 67890 and 11111 asked the most billing questions?",
        str(ticket_parquet),
    )
    assert str(res.value) in {u for u, n in counts.items() if n == best}
    assert counts[str(res.value)] == best


def test_in_memory_frame_gives_the_same_answer(sim_llm: LLM, ticket_frame: pl.DataFrame) -> None:
    res = _run(sim_llm, DEMO_Q, ticket_frame.drop("true_label").lazy())
    assert res.value == label_count(ticket_frame, "billing", users=USERS)


def test_text_replies_are_nudged_never_read_as_answers(
    sim_llm: LLM, ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = _run(sim_llm, DEMO_Q + " [adversarial:text]", str(ticket_parquet))
    truth = label_count(ticket_frame, "billing", users=USERS)
    assert truth != 42
    assert res.value == truth
    assert res.errors == 2
    nudges = [r for r in res.trace if r["kind"] == "error" and r["tool"] is None]
    assert len(nudges) == 2


def test_llm_map_question_sums_mapped_values(
    sim_llm: LLM, ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    # The simulator's llm_map answers an integer request with the text's word count.
    res = _run(
        sim_llm,
        "How many words do the questions of users 12345, 67890 and 11111 have?",
        str(ticket_parquet),
    )
    rows = ticket_frame.filter(pl.col("user_id").is_in(list(USERS)))
    assert res.value == sum(len(q.split()) for q in rows["question"])
    assert [r["tool"] for r in res.trace if r["kind"] == "tool"][2] == "llm_map"


@pytest.mark.parametrize("max_depth", [1, 2])
def test_partition_into_chunks_then_recurse(
    sim_llm: LLM, ticket_parquet: Path, ticket_frame: pl.DataFrame, max_depth: int
) -> None:
    res = _run(
        sim_llm,
        "How many billing questions were asked in March 2024? [plan:chunks]",
        str(ticket_parquet),
        max_depth=max_depth,
    )
    march = {"date_from": dt.date(2024, 3, 1), "date_to": dt.date(2024, 3, 31)}
    assert res.value == label_count(ticket_frame, "billing", **march)
    part = next(r for r in res.trace if r["tool"] == "partition")
    assert "4 partitions" in part["result_summary"]
    recurse = next(r for r in res.trace if r["tool"] == "recurse")
    assert recurse["rows_out"] == 4 and recurse["sub_calls"] >= 4
    assert res.errors == 0
