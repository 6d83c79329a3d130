"""The root's `extract` tool: a question that needs extract then sql, on both engines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.errors import ToolError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.tools import TOOL_NAMES, parse_arguments

QUESTION = "What is the total refund amount requested by users 12345 and 67890?"
USERS = (12345, 67890)
_MONEY = re.compile(r"(?:\$|EUR )(\d+(?:\.\d+)?)")

EXTRA = [  # refund requests of the two users (and one of another user, left out)
    (12345, "Can I get a refund for the $49.00 charge from March?"),
    (12345, "Please refund the $120 I paid twice."),
    (67890, "The EUR 35 refund you promised in May never arrived on my Visa."),
    (67890, "I was charged $19 for nothing."),  # no refund asked: not counted
    (11111, "Refund my $249.50 please."),
]


@pytest.fixture(scope="module")
def refund_tickets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """Tickets plus refund requests of users 12345 and 67890; the Parquet path and the truth."""
    base = tickets(400, seed=7).drop("true_label")
    extra = pl.DataFrame(
        {
            "ticket_id": range(10_001, 10_001 + len(EXTRA)),
            "date": [base["date"][0]] * len(EXTRA),
            "user_id": [u for u, _ in EXTRA],
            "question": [t for _, t in EXTRA],
        },
        schema=base.schema,
    )
    frame = pl.concat([base, extra])
    truth = 0.0
    for user, text in frame.select("user_id", "question").iter_rows():
        money = _MONEY.search(text)
        if user in USERS and "refund" in text.lower() and money:
            truth += float(money.group(1))
    path = tmp_path_factory.mktemp("refunds") / "tickets.parquet"
    frame.write_parquet(path)
    return path, round(truth, 2)


@pytest.mark.parametrize("engine", ["polars", pytest.param("spark", marks=pytest.mark.spark)])
def test_total_refund_amount_needs_extract_then_sql(
    engine: str, request: pytest.FixtureRequest, sim_llm: LLM, refund_tickets: Any
) -> None:
    path, truth = refund_tickets
    assert truth >= 49 + 120 + 35  # the question has a non-trivial answer
    spark: Any = request.getfixturevalue("spark") if engine == "spark" else None
    res = rp.RLM(sim_llm, engine=engine, spark=spark).run(QUESTION, str(path), text_column="question")
    assert res.value == truth
    tools = [s["tool"] for s in res.trace if s.get("tool")]
    assert tools[-3:] == ["extract", "sql", "answer"] and "filter" in tools
    extract_step = next(s for s in res.trace if s.get("tool") == "extract")
    assert "refund_amount" in json.dumps(extract_step) and res.errors == 0


def test_extract_tool_arguments_are_checked() -> None:
    assert "extract" in TOOL_NAMES
    good = {"view": "context", "column": "q", "fields": {"amount": "number"}, "name": "x"}
    assert parse_arguments("extract", json.dumps(good)) == good
    enum = {**good, "fields": {"kind": ["a", "b"]}}
    assert parse_arguments("extract", json.dumps(enum)) == enum
    with pytest.raises(ToolError, match="fields"):
        parse_arguments("extract", json.dumps({**good, "fields": {"amount": "float"}}))
    with pytest.raises(ToolError, match="fields"):
        parse_arguments("extract", json.dumps({**good, "fields": {}}))
