"""A real RLM run over the simulator (real HTTP, text protocol) whose trace the page tests read,
and the root's ``aggregate`` tool run the same way (:func:`aggregate_records`).

The root filters two users and recurses by user; each sub-run classifies its
rows.  The tickets carry hostile content: HTML/JS that would change the page if
it ran, a U+2028 line separator, a 6,000-character cell, and a blank question
(a failed row with its reason, ``empty_input``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.sim import SimConfig, SimServer

#: Would set the page title / a body attribute if the browser ran it.
SCRIPT = "<script>document.title='PWNED'</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
HOSTILE_TICKET = f"I was charged twice {SCRIPT}{IMG} please refund\u2028my invoice"
LONG_TICKET = "My invoice total is wrong. " + "invoice " * 750
QUESTION = "[plan:recurse] For each of users 12345, 67890, how many questions are about billing?"


def tickets() -> pl.DataFrame:
    return pl.DataFrame({
        "ticket_id": list(range(1, 9)),
        "user_id": [12345, 12345, 12345, 67890, 67890, 67890, 555, 555],
        "question": [HOSTILE_TICKET, "The app crashes when I open the reports screen",
                     LONG_TICKET, "I cannot log in to my account, reset my password",
                     "Refund the double charge on my card", "   ",
                     "Loved the new dashboard", "Where is my invoice?"],
    })


def record_run(path: Path) -> rp.RLMResult:
    """Run the question over :func:`tickets` with the text protocol; the trace goes to ``path``."""
    with SimServer(SimConfig(tool_mode="text")) as sim:
        llm = rp.LLM(model="gpt-4.1-mini", base_url=sim.base_url, api_key="x", max_retries=0)
        sub = rp.LLM(model="gpt-4.1-nano", base_url=sim.base_url, api_key="x", max_retries=0)
        return rp.RLM(llm, sub=sub, max_steps=12, protocol="text").run(
            QUESTION, tickets(), text_column="question", trace_path=str(path)
        )


#: A group key a browser would run if the page did not escape it.
HOSTILE_TEAM = f"ops {SCRIPT}"
AGG_QUESTION = "What do the users of each team complain about?"


def _team_tickets() -> pl.DataFrame:
    frame = tickets()
    teams = [HOSTILE_TEAM] * 3 + ["billing desk"] * 3 + ["web"] * 2
    return frame.with_columns(pl.Series("team", teams))


def aggregate_records() -> list[dict[str, Any]]:
    """The trace of the root's ``aggregate`` tool run as the loop records it (real HTTP).

    Two calls over :func:`tickets` grouped by ``team`` (one team name holds a
    ``<script>``): one against a healthy simulator (every group summarised), one
    against a simulator whose every reply is HTTP 500 (every leaf call fails: the
    sample lists the failed calls with their reasons).  Each call goes through
    :func:`rlm_pipeline.rlm.tools.dispatch`, and its record through
    :class:`~rlm_pipeline.rlm.steps.StepLog` with the fields the loop writes.
    """
    return asyncio.run(_aggregate_records())


async def _aggregate_records() -> list[dict[str, Any]]:
    from rlm_pipeline.engines import open_engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog
    from rlm_pipeline.rlm.tools import dispatch

    steps = StepLog("aggregate-run", None, None)
    steps.record(depth=0, path="root", kind="run_start",
                 extra={"question": AGG_QUESTION, "engine": "polars"})
    engine = open_engine(_team_tickets(), "polars")
    with SimServer(SimConfig()) as ok, SimServer(SimConfig(fault_500=1.0)) as down:
        for sim, name in ((ok, "by_team"), (down, "by_team_again")):
            llm = rp.LLM(model="gpt-4.1-nano", base_url=sim.base_url, api_key="x",
                         max_retries=0)
            meter, budget = UsageMeter(), Budget()
            client = LLMClient(llm, meter=meter, budget=budget)
            state = RunState(run_id="aggregate-run", root_client=client, sub_client=client,
                             sub_llm=llm, meter=meter, budget=budget, max_steps=5, max_depth=1,
                             sub_prompt_tokens=8000, max_parallel=4, steps=steps,
                             run_loop=run_loop)
            scope = Scope(state, engine, 0, "root", AGG_QUESTION, client=client, llm=llm)
            args = {"view": "context", "column": "question", "instruction": "main complaints",
                    "by": ["team"], "name": name}
            started = time.monotonic()
            try:
                outcome = await dispatch("aggregate", json.dumps(args), scope)
            finally:
                await client.aclose()
            spent = meter.snapshot()
            steps.record(depth=0, path="root", kind="error" if outcome.error else "tool",
                         tool="aggregate", arguments=args, result_summary=outcome.text[:2000],
                         rows_in=outcome.rows_in, rows_out=outcome.rows_out,
                         sub_calls=outcome.sub_calls, input_tokens=spent.input_tokens,
                         output_tokens=spent.output_tokens,
                         seconds=time.monotonic() - started, error=outcome.error,
                         extra={"step": 1, "protocol": "tools"})
    steps.record(depth=0, path="root", kind="run_end", extra={"answer": "see the summaries"})
    steps.close()
    return steps.dicts
