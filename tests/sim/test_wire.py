"""Reading requests: rows, labels in prompts, schemas, forced tools, task kinds."""

from __future__ import annotations

import json
from typing import Any

from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX
from rlm_pipeline.rlm.prompts import PLAIN_SYSTEM_PROMPT, combine_message, plain_message
from rlm_pipeline.rlm.tools import TOOLS
from rlm_pipeline.sim.wire import (
    PLAIN_PROMPT_MARKER,
    forced_tool,
    labels_from_prompt,
    parse_rows,
    plan_task,
    requested_schema,
)

from .helpers import batch_schema, json_schema_format, map_batch_schema, rows_messages


def test_parse_rows_takes_the_last_block_and_skips_junk() -> None:
    text = ('Rows:\n{"id": 9, "text": "old"}\nRows:\n{"id": 1, "text": "a"}\nnot json\n'
            '{"id": 2}\n[1, 2]\n{"id": "x", "text": "b"}')
    assert parse_rows(text) == [(1, "a"), (2, ""), ("x", "b")]
    assert parse_rows("no rows here") is None


def test_texts_with_newlines_and_unicode_survive() -> None:
    messages = rows_messages(["line one\nline two «é»"])
    assert parse_rows(messages[1]["content"]) == [(0, "line one\nline two «é»")]


def test_labels_from_prompt_forms() -> None:
    forms = {
        "Labels: billing, technical, account, other": ("billing", "technical", "account", "other"),
        "Answer with one of 'yes' or 'no'.": ("yes", "no"),
        "Pick one of the following categories: [spam, ham]": ("spam", "ham"),
        "classes: a | b | c\nText: hello": ("a", "b", "c"),
        "Classify into one of billing, other: my invoice": ("billing", "other"),
    }
    for prompt, labels in forms.items():
        found = labels_from_prompt(prompt)
        assert found is not None and found[0] == labels, prompt
    assert labels_from_prompt("Summarise the table, please.") is None
    assert labels_from_prompt("The label: billing") is None


def test_label_span_leaves_the_text() -> None:
    prompt = "Classify into one of billing, other: my invoice is wrong"
    found = labels_from_prompt(prompt)
    assert found is not None
    start, end = found[1]
    assert "my invoice is wrong" in prompt[:start] + prompt[end:]


def test_requested_schema_sources() -> None:
    schema = batch_schema()
    assert requested_schema({"response_format": json_schema_format(schema)}) == schema
    assert requested_schema({"response_format": {"type": "json_object", "schema": schema}}) == schema
    prompt = {"role": "system", "content": "Go.\n" + STRUCTURED_PROMPT_PREFIX + json.dumps(schema)}
    assert requested_schema({"messages": [prompt]}) == schema
    assert requested_schema({"messages": [{"role": "user", "content": "hi"}]}) is None


def test_forced_tool() -> None:
    tools = [{"type": "function", "function": {"name": "a"}},
             {"type": "function", "function": {"name": "b"}}]
    named = {"tools": tools, "tool_choice": {"type": "function", "function": {"name": "b"}}}
    assert forced_tool(named) == {"name": "b"}
    assert forced_tool({"tools": tools, "tool_choice": "required"}) is None
    assert forced_tool({"tools": tools[:1], "tool_choice": "required"}) == {"name": "a"}
    assert forced_tool({"tools": tools, "tool_choice": "auto"}) is None


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", **extra}


def test_plan_task_kinds() -> None:
    rows = rows_messages(["a", "b"])
    assert plan_task(_body(messages=rows,
                           response_format=json_schema_format(batch_schema()))).kind \
        == "classify_batch"
    mapped = plan_task(_body(messages=rows,
                             response_format=json_schema_format(map_batch_schema("boolean"))))
    assert (mapped.kind, mapped.output_type, mapped.rows) == ("map_batch", "boolean",
                                                              [(0, "a"), (1, "b")])
    answer = {"type": "function", "function": {"name": "answer", "parameters": {}}}
    assert plan_task(_body(messages=rows, tools=[answer])).kind == "root"
    plain = [{"role": "user", "content": "What is in this table?"}]
    assert plan_task(_body(messages=plain)).kind == "plain"
    other = {"type": "object", "properties": {"summary": {"type": "string"}}}
    assert plan_task(_body(messages=plain, response_format=json_schema_format(other))).kind \
        == "structured"


def test_plain_prompts_over_data_go_to_the_planner() -> None:
    inlined = [{"role": "user", "content": "Question: how many? labels: billing, other\n"
                "Rows:\n" + json.dumps({"id": 0, "text": "refund"})}]
    assert plan_task(_body(messages=inlined)).kind == "plain"
    oolong = [{"role": "user", "content": "Labels: a, b\nDate: Jan 1 || User: 1 || Instance: x"}]
    assert plan_task(_body(messages=oolong)).kind == "plain"
    bare = [{"role": "user", "content": "Labels: billing, other\nText: refund me"}]
    task = plan_task(_body(messages=bare))
    assert (task.kind, task.labels) == ("classify_plain", ("billing", "other"))


def test_a_forced_answer_tool_is_still_the_root_role() -> None:
    answer = {"type": "function", "function": {"name": "answer", "parameters": {
        "type": "object", "properties": {"value": {}}}}}
    body = _body(messages=[{"role": "user", "content": "Question: how many?"}], tools=[answer],
                 tool_choice={"type": "function", "function": {"name": "answer"}})
    assert plan_task(body).kind == "root"


def test_a_forced_answer_with_every_tool_offered_is_the_root_role() -> None:
    body = _body(messages=[{"role": "user", "content": "Question: how many?"}], tools=TOOLS,
                 tool_choice={"type": "function", "function": {"name": "answer"}})
    assert forced_tool(body) is not None  # it is a forced function with a schema ...
    assert plan_task(body).kind == "root"  # ... yet the planner answers, not the mapper


QUESTIONS_WITH_LABEL_WORDS = [
    "Which label is most common? labels: billing, technical, account, other",
    "How many rows fall in the categories billing or account?",
    "Of the classes spam, ham, eggs: which appears least often?",
]


def test_plain_marker_is_the_plain_prompt() -> None:
    assert PLAIN_SYSTEM_PROMPT.startswith(PLAIN_PROMPT_MARKER)


def test_plain_questions_with_label_words_go_to_the_planner() -> None:
    row = json.dumps({"question": "Refund my invoice"})
    for question in QUESTIONS_WITH_LABEL_WORDS:
        assert labels_from_prompt(question) is not None  # the label heuristic would fire
        for user in (plain_message(question, "question", row),
                     combine_message(question, ["3", "4"])):
            messages = [{"role": "system", "content": PLAIN_SYSTEM_PROMPT},
                        {"role": "user", "content": user}]
            assert plan_task(_body(messages=messages)).kind == "plain", (question, user)
        # the plain system prompt alone marks it, whatever the user message looks like
        marked = [{"role": "system", "content": PLAIN_SYSTEM_PROMPT},
                  {"role": "user", "content": question}]
        assert plan_task(_body(messages=marked)).kind == "plain"
        bare = [{"role": "user", "content": question}]
        assert plan_task(_body(messages=bare)).kind == "classify_plain"
