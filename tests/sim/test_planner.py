"""The simulator's root planner: question reading, stateless planning, plain answers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from rlm_pipeline.sim.classifier import intended_label
from rlm_pipeline.sim.planner import (
    DEFAULT_LABELS,
    miss_rate,
    parse_meta,
    parse_question,
    respond,
    respond_plain,
)

FIRST = (
    "Question: {q}\n\nViews:\n- context: 5000 rows\n"
    "  columns: ticket_id (int64), date (date), user_id (int64), question (string)\n"
    "  samples: user_id: 1 | 2\n\nText column: question\nTools: peek, filter, answer"
)


@pytest.mark.parametrize(
    ("question", "users", "label", "shape"),
    [
        (
            "Among users 12345, 67890 and 11111, how many questions are about billing?",
            (12345, 67890, 11111),
            "billing",
            "count",
        ),
        (
            "For each user among users 5, 6 or 7, how many tickets are technical?",
            (5, 6, 7),
            "technical",
            "per_user",
        ),
        ("What is the most common label among users 42 and 43?", (42, 43), None, "most_common"),
        ("Which category is least common overall?", (), None, "least_common"),
        (
            "Which of users 1001, 1002 asked the most account questions?",
            (1001, 1002),
            "account",
            "top_user",
        ),
        ("How many rows are there?", (), None, "count"),
    ],
)
def test_question_reading(
    question: str, users: tuple[int, ...], label: str | None, shape: str
) -> None:
    q = parse_question(question)
    assert (q.users, q.label, q.shape) == (users, label, shape)
    assert q.mode is None


@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("How many billing questions in March 2024?", dt.date(2024, 3, 1), dt.date(2024, 3, 31)),
        (
            "billing between 2024-02-10 and 2024-02-20 from user 5?",
            dt.date(2024, 2, 10),
            dt.date(2024, 2, 20),
        ),
        (
            "billing between Dec 1, 2022 and Dec 12, 2022?",
            dt.date(2022, 12, 1),
            dt.date(2022, 12, 12),
        ),
        ("billing in February 2024", dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
    ],
)
def test_dates_are_read_and_not_taken_for_users(
    question: str, start: dt.date, end: dt.date
) -> None:
    q = parse_question(question)
    assert (q.date_from, q.date_to) == (start, end)
    assert all(u not in (2022, 2024) for u in q.users)


def test_custom_labels_and_modes() -> None:
    q = parse_question("How many are spam? labels: spam, ham")
    assert q.labels == ("spam", "ham") and q.label == "spam"
    assert parse_question("x [adversarial:files] /tmp/a/b.txt").path == "/tmp/a/b.txt"
    assert parse_question("x [adversarial:ddl]").mode == "ddl"
    assert parse_question("billing per user [plan:recurse]").recurse
    assert parse_question("How many?").labels == DEFAULT_LABELS


def test_meta_from_first_message() -> None:
    meta = parse_meta(FIRST.format(q="?"))
    assert meta.rows == 5000
    assert (meta.user_column, meta.date_column, meta.text) == ("user_id", "date", "question")


def _body(
    question: str, turns: list[tuple[str, dict[str, Any], str]], **extra: Any
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": FIRST.format(q=question)},
    ]
    for i, (tool, args, result) in enumerate(turns):
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps(args)},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": result})
    return {
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "answer"}}],
        **extra,
    }


def _call(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    function = message["tool_calls"][0]["function"]
    return function["name"], json.loads(function["arguments"])


def test_plan_follows_results_and_reads_numbers_back() -> None:
    q = "Among users 12345, 67890 and 11111, how many questions are about billing?"
    turns: list[tuple[str, dict[str, Any], str]] = []
    expected = ["peek", "filter", "classify", "sql"]
    results = [
        "view `context`: first 3 rows",
        "view `subset`: 15 rows",
        "view `labeled`: 15 rows labelled",
        'view `result`: 1 rows\ncolumns: n (int64)\n{"n": 4}',
    ]
    for tool, result in zip(expected, results, strict=True):
        name, args = _call(respond(_body(q, turns)))
        assert name == tool
        turns.append((name, args, result))
    _, filter_args = turns[1][0], turns[1][1]
    assert filter_args["where"] == "user_id IN (12345, 67890, 11111)"
    assert turns[2][1]["labels"] == list(DEFAULT_LABELS)
    assert "label = 'billing'" in turns[3][1]["query"]
    name, args = _call(respond(_body(q, turns)))
    assert (name, args["value"]) == ("answer", 4)


def test_planner_is_stateless_and_retries_after_an_error() -> None:
    q = "How many billing questions in March 2024?"
    turns = [
        ("peek", {"view": "context", "n": 3}, "rows"),
        ("filter", {"view": "context", "where": "x", "name": "subset"}, "error: bad"),
    ]
    first = respond(_body(q, turns))
    assert first == respond(_body(q, turns))
    name, args = _call(first)
    assert name == "filter" and args["where"] == "date >= '2024-03-01' AND date <= '2024-03-31'"
    turns.append(("filter", args, "error: again"))
    name, args = _call(respond(_body(q, turns)))
    assert name == "answer" and args["value"] is None


FORCE_ANSWER = {"type": "function", "function": {"name": "answer"}}


def test_forced_turn_answers_and_forever_mode_does_not() -> None:
    q = "How many billing?"
    hint = {"role": "user", "content": "Call `answer` now with your best answer"}
    asked = _body(q, [])
    asked["messages"].append(hint)
    assert _call(respond(asked))[0] == "peek"  # words alone do not force; tool_choice does
    for choice in (FORCE_ANSWER, {"type": "function", "name": "answer"}):
        forced = _body(q, [], tool_choice=choice)
        assert _call(respond(forced))[0] == "answer"
    other = _body(q, [], tool_choice={"type": "function", "function": {"name": "peek"}})
    assert _call(respond(other))[0] == "peek"
    forever = _body(q + " [adversarial:forever]", [])
    assert _call(respond(forever))[0] == "peek"
    forever["tool_choice"] = FORCE_ANSWER
    reply = respond(forever)  # ignores the forced choice: another tool, never `answer`
    assert [c["function"]["name"] for c in reply["tool_calls"]] == ["peek"]


COMPARE_Q = (
    "Are instances about {a} more common than, less common than, or the same frequency as "
    "instances about {b}? Answer with 'more common than', 'less common than' or "
    "'same frequency as'."
)


@pytest.mark.parametrize(
    ("question", "first", "second"),
    [
        (COMPARE_Q.format(a="account", b="billing"), "account", "billing"),
        (COMPARE_Q.format(a="other", b="technical"), "other", "technical"),
        ("Is billing less common than technical among users 5 and 6?", "billing", "technical"),
        ("Are account tickets as common as other tickets?", "account", "other"),
    ],
)
def test_compare_questions_are_read(question: str, first: str, second: str) -> None:
    q = parse_question(question)
    assert (q.shape, q.label, q.other) == ("compare", first, second)
    # one label only is not a comparison
    assert parse_question("Is billing more common than it was?").shape != "compare"


@pytest.mark.parametrize(
    ("first_n", "second_n", "want"),
    [(7, 3, "more common than"), (2, 9, "less common than"), (4, 4, "same frequency as"),
     (None, 1, "less common than")],
)
def test_compare_plan_counts_both_labels(first_n: int | None, second_n: int, want: str) -> None:
    q = COMPARE_Q.format(a="technical", b="account")
    turns: list[tuple[str, dict[str, Any], str]] = [
        ("peek", {"view": "context", "n": 3}, "view `context`: first 3 rows")
    ]
    name, args = _call(respond(_body(q, turns)))
    assert name == "classify" and args["view"] == "context"  # no user/date filter needed
    turns.append((name, args, "view `labeled`: 5000 rows labelled"))
    name, args = _call(respond(_body(q, turns)))
    assert name == "sql"
    assert "label = 'technical'" in args["query"] and "label = 'account'" in args["query"]
    row = json.dumps({"first_n": first_n, "second_n": second_n})
    turns.append((name, args, f"view `result`: 1 rows\ncolumns: first_n (int64)\n{row}"))
    name, args = _call(respond(_body(q, turns)))
    assert (name, args["value"]) == ("answer", want)


@pytest.mark.parametrize("mode", ["ddl", "files", "badjson", "unknown-tool"])
def test_adversarial_scripts_end_with_an_answer(mode: str) -> None:
    q = f"How many? [adversarial:{mode}] /tmp/sentinel"
    turns: list[tuple[str, dict[str, Any], str]] = []
    for _ in range(40):
        reply = respond(_body(q, turns))
        function = reply["tool_calls"][0]["function"]
        if function["name"] == "answer" and "value" in function["arguments"]:
            break
        turns.append((function["name"], {}, "error: refused"))
    else:
        pytest.fail("script never ended")
    assert len(turns) >= 6


def _rows_body(question: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    text = f"Question: {question}\nText column: question\nRows:\n" + "\n".join(
        json.dumps(r) for r in rows
    )
    return {"messages": [{"role": "system", "content": "plain"}, {"role": "user", "content": text}]}


def test_plain_counts_match_the_classifier(ticket_rows: list[dict[str, Any]]) -> None:
    ticket_rows = ticket_rows[:120]  # well under the rot-free prompt size
    want = sum(
        1 for r in ticket_rows if intended_label(r["question"], list(DEFAULT_LABELS)) == "billing"
    )
    assert respond_plain(_rows_body("How many are about billing?", ticket_rows)) == str(want)
    users = sorted({r["user_id"] for r in ticket_rows})[:2]
    per = json.loads(
        respond_plain(
            _rows_body(
                f"For each user among users {users[0]} and {users[1]}, how many are technical?",
                ticket_rows,
            )
        )
    )
    for user in users:
        assert per.get(str(user), 0) == sum(
            1
            for r in ticket_rows
            if r["user_id"] == user
            and intended_label(r["question"], list(DEFAULT_LABELS)) == "technical"
        )


def test_plain_combines_part_answers() -> None:
    text = "Question: How many?\nPartial answers:\n- part 1: 3\n- part 2: 4\n"
    assert respond_plain({"messages": [{"role": "user", "content": text}]}) == "7"
    text = 'Question: per user?\nPartial answers:\n- part 1: {"1": 2}\n- part 2: {"1": 1, "2": 5}'
    assert json.loads(respond_plain({"messages": [{"role": "user", "content": text}]})) == {
        "1": 3,
        "2": 5,
    }


def test_context_rot_grows_with_prompt_length(ticket_rows: list[dict[str, Any]]) -> None:
    assert miss_rate(8000) == 0.0
    assert 0 < miss_rate(16_000) < miss_rate(128_000) <= 0.6
    big = ticket_rows * 8  # ~ tens of thousands of tokens
    full = sum(1 for r in big if intended_label(r["question"], list(DEFAULT_LABELS)) == "billing")
    seen = int(respond_plain(_rows_body("How many are about billing?", big)))
    assert seen < full
    assert respond_plain(_rows_body("How many are about billing?", big)) == str(seen)


def test_oolong_lines_are_read() -> None:
    lines = "\n".join(
        f"Date: Dec {d}, 2022 || User: 7 || Instance: I need a refund on my invoice"
        for d in range(1, 6)
    )
    body = {"messages": [{"role": "user", "content": lines + "\nHow many are about billing?"}]}
    assert respond_plain(body) == "5"


@pytest.fixture(scope="module")
def ticket_rows() -> list[dict[str, Any]]:
    from rlm_pipeline.datasets.tickets import tickets

    frame = tickets(400, seed=3).drop("true_label", "date")
    return list(frame.iter_rows(named=True))


def test_plain_compare_matches_the_classifier(ticket_rows: list[dict[str, Any]]) -> None:
    ticket_rows = ticket_rows[:120]
    counts = {
        lab: sum(1 for r in ticket_rows
                 if intended_label(r["question"], list(DEFAULT_LABELS)) == lab)
        for lab in DEFAULT_LABELS
    }
    for a, b in (("billing", "other"), ("other", "billing"), ("account", "technical")):
        want = ("more common than" if counts[a] > counts[b] else
                "less common than" if counts[a] < counts[b] else "same frequency as")
        assert respond_plain(_rows_body(COMPARE_Q.format(a=a, b=b), ticket_rows)) == want
    assert counts["billing"] != counts["other"]  # so the two orders above differ
