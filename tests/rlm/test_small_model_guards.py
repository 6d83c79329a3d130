"""The root's guards for small models, each against a simulator mode that replays a mistake
Qwen2.5-Coder-0.5B made as root on llama.cpp (bench/results/oolong_real_traces/):
an answer written beside data actions, the same peek over and over, a peek for every row,
an action on a view whose filter failed, a reply that goes on for 1,000 tokens, a
worked example whose label and answer it copied (the plan now holds placeholders: the
guards against copying them are in test_plan_guards.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.prompts import final_answer_message, system_prompt
from rlm_pipeline.rlm.protocol import example, forget_protocols, tool_lines

from .truth import USERS, label_count

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"


@pytest.fixture(autouse=True)
def _fresh_protocol_memory() -> Iterator[None]:
    forget_protocols()
    yield
    forget_protocols()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    """Native tool calls, and calls written as text (styles cycling per turn)."""
    from rlm_pipeline.sim import SimConfig, SimServer

    started = {"tools": SimServer(SimConfig()), "text": SimServer(SimConfig())}
    for server in started.values():
        server.__enter__()
    yield started
    for server in started.values():
        server.__exit__(None, None, None)


def _run(
    server: Any, protocol: str, mode: str | None, parquet: Path, **kwargs: Any
) -> rp.RLMResult:
    llm = LLM(model="sim-1", base_url=server.base_url, api_key="sim", max_retries=1)
    question = DEMO_Q if mode is None else f"{DEMO_Q} [adversarial:{mode}]"
    kwargs.setdefault("max_steps", 12)
    return rp.RLM(llm, protocol=protocol, **kwargs).run(
        question, str(parquet), text_column="question"
    )


def _at(res: rp.RLMResult, step: int) -> list[tuple[str, str]]:
    return [
        (r["tool"], r["kind"])
        for r in res.trace
        if r["extra"].get("step") == step and r["tool"] and r["kind"] != "model"
    ]


@pytest.mark.parametrize("protocol", ["tools", "text"])
def test_an_answer_beside_data_actions_is_refused_on_every_turn(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame, protocol: str
) -> None:
    # data was seen at step 1, so the once-per-run early-answer refusal no longer applies
    res = _run(servers[protocol], protocol, "blind-late", ticket_parquet)
    assert res.value == label_count(ticket_frame, "billing", users=USERS) != 99
    assert _at(res, 2) == [("filter", "tool"), ("answer", "error")]
    refused = next(r for r in res.trace if r["tool"] == "answer" and r["kind"] == "error")
    assert "same reply as other actions" in refused["result_summary"]
    assert res.errors == 1


def test_a_repeated_peek_is_not_run_again_and_a_huge_one_is_cut(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = _run(servers["text"], "text", "peek-loop", ticket_parquet)
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    peeks = [r for r in res.trace if r["tool"] == "peek"]
    assert [r["kind"] for r in peeks] == ["tool", "error", "error", "tool", "error"]
    assert (
        "not run again" in peeks[1]["result_summary"] and "(step 1)" in peeks[1]["result_summary"]
    )
    # the question names users and nothing narrowed the rows yet: filter first, written out
    assert (
        "Take the next step instead: filter to the rows your question names first:\n"
        '<tool_call>{"name": "filter", "arguments": {"view": "context", "where": '
        '"user_id IN (12345, 67890, 11111)", "name": "subset"}}</tool_call>'
        in peeks[2]["result_summary"]
    )
    assert peeks[3]["result_summary"].startswith("note: n = 500 was cut to 20")
    assert peeks[3]["rows_out"] == 20 or "first 20 rows" in peeks[3]["result_summary"]
    assert "(step 4)" in peeks[4]["result_summary"]


def test_an_action_on_a_view_whose_filter_failed_says_so(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = _run(servers["text"], "text", "unmade", ticket_parquet)
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    classify = next(r for r in res.trace if r["tool"] == "classify" and r["kind"] == "error")
    assert "unknown view 'picked'" in classify["result_summary"]
    assert "view `picked` was never made" in classify["result_summary"]


def test_root_turns_are_bounded_by_root_max_tokens(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = _run(servers["text"], "text", "ramble", ticket_parquet, root_max_tokens=100)
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    turns = [r for r in res.trace if r["kind"] == "model" and r["depth"] == 0]
    assert turns[0]["output_tokens"] == 100  # cut by the server at max_tokens
    assert all(r["output_tokens"] <= 100 for r in turns)
    assert any("no valid action" in (r["error"] or "") for r in res.trace if r["kind"] == "error")
    with pytest.raises(rp.InputError, match="root_max_tokens"):
        rp.RLM(LLM(model="m", base_url="http://127.0.0.1:1/v1"), root_max_tokens=0)


@pytest.mark.parametrize("protocol", ["tools", "json", "text"])
def test_the_plan_holds_placeholders_and_nothing_to_replay(protocol: str) -> None:
    """A 0.5B root replayed the worked example: its label (`account`) and number (1284)."""
    steps = example(protocol)
    actions = "\n".join(written for _, written in steps)
    assert "TOPIC" in actions and "USER1" in actions and "FIRST_DAY" in actions
    assert "account" not in actions and "billing" not in actions
    # no results and no number but peek's n
    assert "->" not in actions and re.findall(r"(?<![A-Z\d])\d+", actions) == ["3"]
    if protocol == "json":  # the json schema asks for a value: the plan shows its form only
        assert '"value": "<the value your result shows>"' in steps[-1][1]
    else:  # it names the sql view: nothing to copy
        assert '"arguments": {"view": "result"}' in steps[-1][1]
    for compact in (True, False):
        prompt = system_prompt(protocol, compact=compact, tool_lines=tool_lines(), example=steps)
        assert "1284" not in prompt and "account" not in prompt
    forced = final_answer_message(8, '{"tool": "answer", ...}', last='{"n": 4}')
    assert '{"n": 4}' in forced


@pytest.mark.parametrize("protocol", ["tools", "text"])
def test_an_answer_naming_a_view_answers_with_its_value(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame, protocol: str
) -> None:
    """The whole plan in one reply ends at once: the answer reads the sql view itself."""
    res = _run(servers[protocol], protocol, "cite", ticket_parquet)
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    assert res.stop_reason == "answer" and res.steps == 1 and res.errors == 0


def test_sub_batch_size_sets_the_rows_per_classify_call(
    servers: dict[str, Any], ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    """A 0.5B sub-model labelled a batch in the label list's order: one row per call."""
    one = _run(servers["tools"], "tools", None, ticket_parquet, sub_batch_size=1)
    many = _run(servers["tools"], "tools", None, ticket_parquet)
    for res, per_call in ((one, 1), (many, 16)):
        assert res.value == label_count(ticket_frame, "billing", users=USERS)
        step = next(r for r in res.trace if r["tool"] == "classify" and r["kind"] == "tool")
        assert step["sub_calls"] == -(-step["rows_in"] // per_call), step
    with pytest.raises(rp.InputError, match="sub_batch_size"):
        rp.RLM(LLM(model="m", base_url="http://127.0.0.1:1/v1"), sub_batch_size=0)


def test_an_answer_beside_only_repeats_of_earlier_actions_is_taken(
    servers: dict[str, Any], ticket_parquet: Path
) -> None:
    """Their results were read in the turn before: the answer is no longer written blind.

    (At step 2 it is refused once for another reason: only a peek had run.)"""
    res = _run(servers["text"], "text", "replan", ticket_parquet)
    assert res.stop_reason == "answer" and res.value == 5000 and res.steps == 3
    assert _at(res, 1) == [("peek", "tool"), ("answer", "error")]
    assert _at(res, 2) == [("peek", "error"), ("answer", "error")]
    assert _at(res, 3) == [("peek", "error"), ("answer", "answer")]
    refused = [r for r in res.trace if r["tool"] == "answer" and r["kind"] == "error"]
    assert "same reply as other actions" in refused[0]["result_summary"]
    assert "only peeked at a few rows" in refused[1]["result_summary"]


def test_a_stalled_loop_is_asked_for_its_answer_before_its_steps_run_out(
    servers: dict[str, Any], ticket_parquet: Path
) -> None:
    """A 0.5B root re-sent its whole plan every turn: 3 turns without a new result end it."""
    res = _run(servers["text"], "text", "plan-dump", ticket_parquet)
    assert res.stop_reason == "forced_answer" and res.steps == 4  # of max_steps=12
    stalled = [r for r in res.trace if r["kind"] == "error" and "stalled" in (r["error"] or "")]
    assert len(stalled) == 1 and stalled[0]["extra"]["step"] == 4
    assert [r["kind"] for r in res.trace if r["tool"] == "peek"] == ["tool", *["error"] * 3]


def test_a_slow_root_is_asked_for_its_answer_before_the_timeout(
    sim_factory: Any, ticket_parquet: Path
) -> None:
    """With a quarter of timeout_s left the loop stops planning: an answer, not a timeout."""
    slow = sim_factory(latency_ms=500)
    res = _run(slow, "text", "explore", ticket_parquet, timeout_s=8.0, max_steps=40)
    assert res.stop_reason == "forced_answer" and res.value == "explored"
    late = [r for r in res.trace if r["kind"] == "error" and (r["error"] or "").startswith("time:")]
    assert len(late) == 1
    assert res.steps < 40 and res.seconds < 8.0


def test_a_number_found_in_no_result_is_refused_twice_then_taken(
    servers: dict[str, Any], ticket_parquet: Path
) -> None:
    """A 0.5B root answered a number it read nowhere; the loop says it is not the table's."""
    res = _run(servers["text"], "text", "copycat", ticket_parquet)
    answers = [r for r in res.trace if r["tool"] == "answer"]
    assert [r["kind"] for r in answers] == ["error", "error", "error", "answer"]
    assert "only peeked at a few rows" in answers[0]["result_summary"]  # once per run
    assert "1284 appears in none of the results" in answers[1]["result_summary"]
    assert res.value == 1284 and res.steps == 5  # a model that insists is not looped forever
