"""Limits: max_steps, call/token budgets, wall-clock timeout, bad input, dead endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import BudgetExceededError, InputError, LLMError
from rlm_pipeline.llm.config import LLM, Budget

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"


def test_a_model_that_never_answers_ends_at_max_steps(sim_llm: LLM, ticket_parquet: Path) -> None:
    res = rp.RLM(sim_llm, max_steps=200).run(DEMO_Q + " [adversarial:forever]", str(ticket_parquet))
    assert res.stop_reason == "max_steps" and not res.answered
    assert res.value is None and "no answer" in res.answer
    assert res.steps == 200
    assert res.usage.calls == 201  # 200 steps + the one forced final turn
    # 200 steps of tool results, yet the prompt stayed bounded (old steps compacted)
    assert res.usage.max_prompt_tokens < 8000
    assert [r["kind"] for r in res.trace][-2:] == ["error", "run_end"]
    # the final turn forced `answer`; the model called `peek` anyway, which was not run
    final_model = [r for r in res.trace if r["kind"] == "model"][-1]
    assert final_model["extra"]["forced"] and final_model["extra"]["tool_calls"] == 1
    refused = res.trace[final_model["seq"] + 1]
    assert (refused["kind"], refused["tool"]) == ("error", "peek")
    assert "only `answer` is accepted" in refused["error"] and refused["rows_out"] is None


def test_forced_final_answer_after_the_last_step(sim_llm: LLM, ticket_parquet: Path) -> None:
    # the simulator's planner answers early only when tool_choice names `answer`
    res = rp.RLM(sim_llm, max_steps=2).run(DEMO_Q, str(ticket_parquet), text_column="question")
    assert res.stop_reason == "forced_answer"
    assert [r["extra"]["forced"] for r in res.trace if r["kind"] == "model"] == [
        False, False, True]
    assert res.value is None  # the planner had not computed the count yet, and says so
    assert res.explanation


@pytest.mark.parametrize(
    ("budget", "what"),
    [(Budget(max_calls=3), "calls"), (Budget(max_tokens=4000), "tokens")],
)
def test_budget_stops_the_run_with_a_partial_answer(
    sim_llm: LLM, ticket_parquet: Path, budget: Budget, what: str
) -> None:
    with pytest.raises(BudgetExceededError) as info:
        rp.RLM(sim_llm, budget=budget).run(DEMO_Q, str(ticket_parquet), text_column="question")
    err = info.value
    assert err.what == what
    assert err.spent >= err.budget * 0.5
    assert isinstance(err.partial, str) and err.partial  # the last good tool result


def test_timeout_is_a_budget_error(sim_factory: Any, ticket_parquet: Path) -> None:
    slow = sim_factory(latency_ms=400)
    llm = LLM(model="sim-1", base_url=slow.base_url, api_key="sim")
    with pytest.raises(BudgetExceededError) as info:
        rp.RLM(llm, timeout_s=1.0).run(DEMO_Q, str(ticket_parquet), text_column="question")
    assert info.value.what == "time_s"
    assert 1.0 <= info.value.spent < 5.0


def test_bad_input_is_an_input_error(sim_llm: LLM, ticket_parquet: Path, tmp_path: Path) -> None:
    rlm = rp.RLM(sim_llm)
    with pytest.raises(InputError):
        rlm.run("  ", str(ticket_parquet))
    with pytest.raises(InputError, match="text column"):
        rlm.run(DEMO_Q, str(ticket_parquet), text_column="nope")
    with pytest.raises(InputError):
        rlm.run(DEMO_Q, str(tmp_path / "missing.parquet"))
    for kwargs in ({"max_steps": 0}, {"max_depth": -1}, {"timeout_s": 0}, {"engine": "duckdb"}):
        with pytest.raises(InputError):
            rp.RLM(sim_llm, **kwargs)


def test_dead_endpoint_is_an_llm_error(ticket_parquet: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = LLM(model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    with pytest.raises(LLMError):
        rp.RLM(llm).run(DEMO_Q, str(ticket_parquet))
