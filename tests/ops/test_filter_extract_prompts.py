"""filter/extract prompts: batches in the compact ``ops-2`` framing, one-row calls in the
``*-1`` wording (kept apart in the row store), every simulator answer right both ways."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.tokens import estimate_tokens
from rlm_pipeline.ops.extract_op import ExtractSpec
from rlm_pipeline.ops.filter_op import FilterSpec
from rlm_pipeline.ops.spec_base import SpecBase, row_reply_schema
from rlm_pipeline.sim.mapper import condition_holds, extract_fields

TEXTS = [
    "Can I get a refund for the $49.00 charge from March?",
    "The app crashes every time I open the dashboard.",
    "Please refund the $120 I paid twice in June.",
    "Do you have an office in Lisbon?",
]
FIELDS: dict[str, Any] = {"refund_amount": "number", "topic": ["billing", "technical", "other"]}


def test_batches_send_only_the_rows_in_the_user_message() -> None:
    for spec in (FilterSpec("q", "asks for a refund"), ExtractSpec("q", FIELDS)):
        system, user = (m["content"] for m in spec.messages(["a", "b"]))
        assert user.splitlines() == ["Rows:", '0:"a"', '1:"b"']
        assert system.splitlines()[-1] == "Answer each row once by id."
    assert "Condition: asks for a refund" in FilterSpec("q", "asks for a refund").messages(["a"])[0][
        "content"
    ].splitlines()


def test_one_row_calls_keep_the_first_wording() -> None:
    filter_user = FilterSpec("q", "is urgent", batch_size=1).messages(["help"])[1]["content"]
    assert filter_user.splitlines() == ["Condition: is urgent", "Rows:", '{"id": 0, "text": "help"}']
    system, user = (m["content"] for m in ExtractSpec("q", FIELDS, batch_size=1).messages(["x"]))
    assert system.startswith("You extract fields from the text of each row of a table.\nFields:")
    assert user.splitlines() == ["Extract the fields from each row.", "Rows:",
                                 '{"id": 0, "text": "x"}']
    for single, batch in [
        (FilterSpec("q", "c", batch_size=1), FilterSpec("q", "c", batch_size=4)),
        (ExtractSpec("q", FIELDS, batch_size=1), ExtractSpec("q", FIELDS, batch_size=4)),
    ]:  # differently worded answers are never served to each other
        assert single.answer_params()["prompt"].endswith("-1")
        assert batch.answer_params()["prompt"].endswith("-2")


def test_specs_use_the_shared_reply_envelope() -> None:
    for spec in (FilterSpec("q", "c"), ExtractSpec("q", FIELDS), FilterSpec("q", "c", batch_size=1)):
        assert isinstance(spec, SpecBase)
        single = spec.batch_size == 1
        assert spec.reply_schema() == row_reply_schema("value", spec.answer_schema(), single=single)
    assert FilterSpec("q", "c").reply_name() == "filter_batch"
    assert ExtractSpec("q", FIELDS, batch_size=1).reply_name() == "extract_row"


def test_compact_rows_cost_fewer_tokens_per_row() -> None:
    """Each row's framing: ``0:"…"`` (≈ 1.5 tokens) instead of ``{"id": 0, "text": "…"}`` (≈ 6)."""
    texts = [t * 2 for t in TEXTS * 4]  # 16 rows
    for make in (lambda b: FilterSpec("q", "asks for a refund", batch_size=b),
                 lambda b: ExtractSpec("q", FIELDS, batch_size=b)):
        compact = make(16).messages(texts)[1]["content"]
        framed = "\n".join(  # the first wording's rows, for comparison
            make(1).messages([t])[1]["content"].splitlines()[-1] for t in texts
        )
        saved = (estimate_tokens(framed) - estimate_tokens(compact)) / len(texts)
        assert saved >= 4


@pytest.mark.parametrize("batch_size", [1, 3])
def test_the_simulator_answers_both_framings_right(sim: Any, batch_size: int) -> None:
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    df = pl.DataFrame({"id": range(len(TEXTS)), "q": TEXTS})
    kept = rp.filter(df, "q", "asks for a refund", llm, batch_size=batch_size)
    assert kept["id"].to_list() == [i for i, t in enumerate(TEXTS) if condition_holds(t, "asks for a refund")]
    out = rp.extract(df, "q", FIELDS, llm, batch_size=batch_size)
    assert out["extract_error"].null_count() == len(TEXTS)
    assert out["topic"].to_list() == [extract_fields(t, FIELDS)["topic"] for t in TEXTS]
    amounts = [extract_fields(t, FIELDS)["refund_amount"] for t in TEXTS]
    assert out["refund_amount"].to_list() == [None if a is None else float(a) for a in amounts]
