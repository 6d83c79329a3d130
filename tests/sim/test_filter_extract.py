"""The simulator answers filter and extract calls (our specs' own prompts) over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from rlm_pipeline.ops.extract_op import ExtractSpec
from rlm_pipeline.ops.filter_op import FilterSpec
from rlm_pipeline.rlm.limits import over_limit
from rlm_pipeline.sim import map_value
from rlm_pipeline.sim.mapper import condition_holds, extract_fields, extract_value
from rlm_pipeline.sim.wire import plan_task

from .helpers import json_schema_format, map_batch_schema, rows_messages

TEXTS = [
    "Can I get a refund for the $49.00 charge from March? (ref #40123)",
    "The app crashes every time I open the dashboard on my iPhone.",
    "Urgent: I was charged twice for my Pro plan in June.",
    "Do you have an office in Lisbon? I would like to visit.",
]
FIELDS = {
    "refund_amount": "number",
    "order_id": "string",
    "plan": "string",
    "month": "date",
    "topic": ["billing", "technical", "account", "other"],
    "urgent": "boolean",
}


def _ask(client: Any, spec: Any, texts: list[str]) -> Any:
    reply = client.chat.completions.create(
        model="sim-1",
        messages=spec.messages(texts),
        response_format=json_schema_format(spec.reply_schema()),
    )
    return json.loads(reply.choices[0].message.content)


@pytest.mark.parametrize("batch_size", [16, 1])
def test_filter_answers_the_condition(
    sim: Any, client_for: Callable[..., Any], batch_size: int
) -> None:
    spec = FilterSpec("q", "asks for a refund", batch_size=batch_size)
    client = client_for(sim)
    if batch_size == 1:
        values = [_ask(client, spec, [text])["value"] for text in TEXTS]
    else:
        results = _ask(client, spec, TEXTS)["results"]
        assert [r["id"] for r in results] == list(range(len(TEXTS)))
        values = [r["value"] for r in results]
    assert values == [True, False, False, False]
    assert values == [condition_holds(t, "asks for a refund") for t in TEXTS]
    kinds = sim.stats()["by_kind"]
    assert ("filter_single" if batch_size == 1 else "filter_batch") in kinds


def test_condition_words_and_negation() -> None:
    assert [condition_holds(t, "is about billing") for t in TEXTS] == [True, False, True, False]
    assert [condition_holds(t, "is not about billing") for t in TEXTS] == [
        False,
        True,
        False,
        True,
    ]
    assert condition_holds(TEXTS[2], "is urgent")
    assert not condition_holds(TEXTS[0], "the")  # no content word: holds for no row


@pytest.mark.parametrize("batch_size", [16, 1])
def test_extract_answers_typed_objects(
    sim: Any, client_for: Callable[..., Any], batch_size: int
) -> None:
    spec = ExtractSpec("q", FIELDS, batch_size=batch_size)
    client = client_for(sim)
    if batch_size == 1:
        values = [_ask(client, spec, [text])["value"] for text in TEXTS]
    else:
        values = [r["value"] for r in _ask(client, spec, TEXTS)["results"]]
    assert values == [extract_fields(t, FIELDS) for t in TEXTS]
    assert values[0] == {
        "refund_amount": 49,
        "order_id": "40123",
        "plan": None,
        "month": "2024-03-01",
        "topic": "billing",
        "urgent": False,
    }
    assert values[2]["refund_amount"] is None  # charged, but no refund asked: not stated
    assert values[2]["plan"] == "Pro" and values[2]["urgent"] is True
    assert values[1]["topic"] == "technical" and values[1]["month"] is None
    # every value the simulator gives passes our row check
    assert all(spec.check_value(v)[1] is None for v in values)


def test_extract_money_kinds() -> None:
    assert extract_value("Why did my bill go up to EUR 35?", "amount", "number") == 35
    assert extract_value("A $9.99 charge", "amount", "integer") == 9.99  # raw, never rounded
    assert extract_value("no money here", "amount", "number") is None
    assert extract_value("ticket (ref #123)", "ticket_number", "integer") == 123


def test_map_and_classify_kinds_unchanged(sim: Any, client_for: Callable[..., Any]) -> None:
    body = {
        "messages": rows_messages(["Is it on?"]),
        "response_format": json_schema_format(map_batch_schema("boolean")),
    }
    assert plan_task(body).kind == "map_batch"  # no Condition: line, an llm_map
    reply = client_for(sim).chat.completions.create(model="sim-1", **body)
    results = json.loads(reply.choices[0].message.content)["results"]
    assert results[0]["value"] is map_value("Is it on?", "boolean")


def test_schemas_have_no_grammar_limits() -> None:
    assert over_limit(FilterSpec("q", "x").reply_schema()) == []
    assert over_limit(ExtractSpec("q", FIELDS).reply_schema()) == []
    assert over_limit(ExtractSpec("q", FIELDS, batch_size=1).reply_schema()) == []


def test_injected_faults_hit_the_new_shapes(sim_factory: Callable[..., Any], client_for: Any) -> None:
    sim = sim_factory(fault_malformed=1.0)
    spec = FilterSpec("q", "asks for a refund")
    reply = client_for(sim).chat.completions.create(
        model="sim-1",
        messages=spec.messages(TEXTS),
        response_format=json_schema_format(spec.reply_schema()),
    )
    with pytest.raises(ValueError):
        json.loads(reply.choices[0].message.content)
    sim.set_config(fault_malformed=0.0, fault_wrong_ids=1.0)
    spec_x = ExtractSpec("q", FIELDS)
    reply = client_for(sim).chat.completions.create(
        model="sim-1",
        messages=spec_x.messages(TEXTS),
        response_format=json_schema_format(spec_x.reply_schema()),
    )
    ids = [r["id"] for r in json.loads(reply.choices[0].message.content)["results"]]
    assert ids != list(range(len(TEXTS)))
