"""Guards around the root's plan (prompt ``rlm-root-v5``) and the loop's own checks.

The plan shows placeholders (TOPIC, USER1, ...) instead of a runnable example that a
0.5B root replayed; an action that copies a placeholder, or an answer that copies a
number only the instructions hold, is refused with what to write instead.  A call may
run again when a view it names was made again since; an answer citing a view reads
only the model's views.  Each against a simulator mode or a real Polars engine.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.prompts import system_prompt
from rlm_pipeline.rlm.protocol import example, forget_protocols, tool_lines

from .truth import USERS, label_count

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"


@pytest.fixture(autouse=True)
def _fresh_protocol_memory() -> Iterator[None]:
    forget_protocols()
    yield
    forget_protocols()


def _run(server: Any, protocol: str, mode: str, parquet: Path, **kwargs: Any) -> rp.RLMResult:
    llm = LLM(model="sim-1", base_url=server.base_url, api_key="sim", max_retries=1)
    kwargs.setdefault("max_steps", 12)
    return rp.RLM(llm, protocol=protocol, **kwargs).run(
        f"{DEMO_Q} [adversarial:{mode}]", str(parquet), text_column="question"
    )


@pytest.mark.parametrize("protocol", ["tools", "text"])
def test_a_placeholder_copied_from_the_plan_is_refused_with_what_to_write(
    module_sim: Any, ticket_parquet: Path, ticket_frame: pl.DataFrame, protocol: str
) -> None:
    res = _run(module_sim, protocol, "placeholder", ticket_parquet)
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    refused = [r for r in res.trace if r["error"] == "placeholder left in an action"]
    assert [r["tool"] for r in refused] == ["classify", "sql"]
    assert "TEXT_COLUMN, TOPIC are placeholders" in refused[0]["result_summary"]
    assert "TOPIC -> the topic word your question names" in refused[1]["result_summary"]
    # filled from the question, in the protocol's own syntax, to copy
    assert '"labels": ["billing", "other"]' in refused[0]["result_summary"]
    assert '"column": "question"' in refused[0]["result_summary"]
    assert "label = 'billing'" in refused[1]["result_summary"]
    assert all(r["sub_calls"] == 0 for r in refused)  # nothing was labelled for them


def test_a_number_only_the_instructions_hold_is_never_taken(
    module_sim: Any, ticket_parquet: Path
) -> None:
    """Refused on every turn, the forced one too: the run ends without an answer."""
    assert "64" in system_prompt(
        "text", compact=True, tool_lines=tool_lines(), example=example("text")
    )
    res = _run(module_sim, "text", "prompt-copy", ticket_parquet, max_steps=6)
    shown = " ".join(r["result_summary"] or "" for r in res.trace if r["kind"] == "tool")
    assert not re.search(r"(?<![A-Za-z_\d])64(?!\d)", shown)  # `int64` is not the number
    answers = [r for r in res.trace if r["tool"] == "answer"]
    assert len(answers) >= 3 and all(r["kind"] == "error" for r in answers)
    assert all("64 is a number from the instructions" in r["result_summary"] for r in answers)
    assert answers[-1]["extra"]["step"] == res.steps + 1  # the forced turn's answer, refused
    assert res.stop_reason == "max_steps" and res.value is None


@pytest.mark.parametrize("protocol", ["tools", "text"])
def test_a_call_runs_again_when_a_view_it_names_was_made_again(
    module_sim: Any, ticket_parquet: Path, ticket_frame: pl.DataFrame, protocol: str
) -> None:
    """filter one user -> classify -> filter all users into the same view -> same classify."""
    res = _run(module_sim, protocol, "rerun", ticket_parquet)
    classify = [r for r in res.trace if r["tool"] == "classify"]
    assert [r["kind"] for r in classify] == ["tool", "tool"]
    one = ticket_frame.filter(pl.col("user_id") == USERS[0]).height
    allx = ticket_frame.filter(pl.col("user_id").is_in(list(USERS))).height
    assert [r["rows_in"] for r in classify] == [one, allx] and one < allx
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    assert not any("not run again" in (r["result_summary"] or "") for r in res.trace)


def test_an_exact_repeat_on_unchanged_views_is_still_not_run(
    module_sim: Any, ticket_parquet: Path
) -> None:
    res = _run(module_sim, "text", "plan-dump", ticket_parquet)
    assert [r["kind"] for r in res.trace if r["tool"] == "peek"] == ["tool", *["error"] * 3]


def test_an_answer_citing_a_view_reads_only_the_models_views(sim_llm: LLM) -> None:
    """A scratch view of the library (``_rlm…``) is not the model's to cite."""
    from rlm_pipeline.engines.polars import PolarsEngine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import _Call, _cite, run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog

    engine = PolarsEngine()
    engine.register("context", pl.DataFrame({"k": [1, 2, 3]}))
    engine.register("result", pl.DataFrame({"n": [7]}))
    engine.register("_rlm_secret", pl.DataFrame({"n": [42]}))

    async def go() -> list[Any]:
        meter, budget = UsageMeter(), Budget()
        client = LLMClient(sim_llm, meter=meter, budget=budget)
        state = RunState(
            run_id="test",
            root_client=client,
            sub_client=client,
            sub_llm=sim_llm,
            meter=meter,
            budget=budget,
            max_steps=5,
            max_depth=1,
            sub_prompt_tokens=8000,
            max_parallel=4,
            steps=StepLog("test", None, None),
            run_loop=run_loop,
        )
        scope = Scope(state, engine, 0, "root", None, client=client, llm=sim_llm)
        try:
            return [
                await _cite(scope, _Call("answer", json.dumps({"view": view})))
                for view in ("result", "_rlm_secret")
            ]
        finally:
            await client.aclose()
            state.steps.close()

    (ok, ok_cited, ok_error), (bad, bad_cited, bad_error) = asyncio.run(go())
    assert ok_cited and ok_error is None and json.loads(ok.arguments)["value"] == 7
    assert not bad_cited and bad_error is not None
    assert "unknown view '_rlm_secret'" in bad_error.text and "42" not in bad_error.text
    assert "views are: context, result" in bad_error.text


def test_the_root_prompt_stays_under_2000_tokens(
    module_sim: Any, ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    """Issue 19's target, the seed question's whole run (the simulator counts chars / 4)."""
    from rlm_pipeline.rlm.loop import _OFFERED

    llm = LLM(model="sim-1", base_url=module_sim.base_url, api_key="sim", max_retries=1)
    res = rp.RLM(llm, protocol="tools").run(DEMO_Q, str(ticket_parquet), text_column="question")
    assert res.value == label_count(ticket_frame, "billing", users=USERS)
    assert 1000 < res.usage.max_prompt_tokens <= 2000
    # the offered schemas say no more than the system prompt does once...
    assert not any("description" in json.dumps(t["function"]["parameters"]) for t in _OFFERED)
    # ...and unknown arguments are still refused after parsing
    peek = rp.RLM(llm, protocol="tools").run(
        DEMO_Q + " [adversarial:badjson]", str(ticket_parquet), text_column="question"
    )
    shell = next(r for r in peek.trace if "shell" in json.dumps(r.get("arguments") or {}))
    assert shell["kind"] == "error" and "Additional properties" in shell["result_summary"]


def test_a_number_inside_an_object_answer_is_checked_too(
    module_sim: Any, ticket_parquet: Path
) -> None:
    """A 0.5B root (json protocol) answered {"count": 120, ...} without reading any data."""
    res = _run(module_sim, "text", "copy-object", ticket_parquet)
    answers = [r for r in res.trace if r["tool"] == "answer"]
    assert [r["kind"] for r in answers] == ["error", "error", "error", "answer"]
    assert "only peeked at a few rows" in answers[0]["result_summary"]
    assert all("1284 appears in none of the results" in r["result_summary"] for r in answers[1:3])
    assert res.value == {"count": 1284, "label": "billing"}  # twice at most, then taken


def test_classifying_a_labelled_view_again_points_to_the_count(
    module_sim: Any, ticket_parquet: Path
) -> None:
    """A 0.5B root classified `labeled`'s label column again, turn after turn."""
    res = _run(module_sim, "text", "relabel", ticket_parquet)
    again = next(r for r in res.trace if r["tool"] == "classify" and r["kind"] == "error")
    assert "would overwrite the input column" in again["result_summary"]
    assert "view `labeled` is labelled already" in again["result_summary"]
    assert "SELECT COUNT(*) AS n FROM labeled WHERE label = 'billing'" in again["result_summary"]
    assert again["sub_calls"] == 0
