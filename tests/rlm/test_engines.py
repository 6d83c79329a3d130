"""Both engines answer the same questions with the same answers (and the right ones).

Spark runs ~3-5 s per question on local[2] (each classify is a mapInArrow job), so the
list is kept short: a count, a most-common label and a recurse with per-user answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM

from .truth import USERS, label_count, most_common, per_user

QUESTIONS = [
    (
        "Among users 12345, 67890 and 11111, how many questions are about billing?",
        lambda f: label_count(f, "billing", users=USERS),
    ),
    (
        "What is the most common label among users 12345, 67890 and 11111?",
        lambda f: most_common(f, users=USERS),
    ),
    (
        "For each of users 12345, 67890 and 11111, how many questions are about technical? "
        "[plan:recurse]",
        lambda f: per_user(f, "technical", USERS),
    ),
]


@pytest.mark.spark
@pytest.mark.parametrize("engine", ["polars", "spark"])
def test_engines_agree_with_each_other_and_the_truth(
    engine: str,
    request: pytest.FixtureRequest,
    sim_llm: LLM,
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
) -> None:
    spark: Any = request.getfixturevalue("spark") if engine == "spark" else None
    # max_depth=1: recurse answers each partition with a plain call (sub-RLMs on Spark cost
    # a Spark job per tool call; tests/rlm/test_recurse.py covers depth 2 on Polars).
    rlm = rp.RLM(sim_llm, engine=engine, spark=spark, max_depth=1)
    for question, expected in QUESTIONS:
        res = rlm.run(question, str(ticket_parquet), text_column="question")
        assert res.value == expected(ticket_frame), question
        assert res.errors == 0
        start = res.trace[0]
        assert start["kind"] == "run_start" and start["extra"]["engine"] == engine
