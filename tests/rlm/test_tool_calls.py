"""Tool results count their own sub-calls, also when tool calls overlap on one client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import polars as pl

import rlm_pipeline as rp
from tests.ops.tickets import tickets


def test_overlapping_tool_calls_count_their_own_sub_calls(sim_factory: Any) -> None:
    """classify over 96 rows (6 calls of 16) and extract over 48 (3 calls) at once: a
    difference of the shared meter would give both the other's calls too."""
    from rlm_pipeline.engines import open_engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog
    from rlm_pipeline.rlm.tools import dispatch

    sim = sim_factory(latency_ms=40)
    texts = [f"{t} (ticket {i})" for i, t in enumerate(tickets(96, seed=5))]  # all distinct
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", max_concurrency=4)
    classify = {"view": "context", "column": "q", "labels": ["billing", "technical", "other"],
                "name": "labelled"}
    extract = {"view": "half", "column": "q", "fields": {"refund_amount": "number"},
               "name": "amounts"}

    async def go() -> tuple[Any, Any, int]:
        meter, budget = UsageMeter(), Budget()
        client = LLMClient(llm, meter=meter, budget=budget)
        state = RunState(run_id="test", root_client=client, sub_client=client, sub_llm=llm,
                         meter=meter, budget=budget, max_steps=5, max_depth=1,
                         sub_prompt_tokens=8000, max_parallel=4,
                         steps=StepLog("test", None, None), run_loop=run_loop)
        engine = open_engine(pl.DataFrame({"q": texts}), "polars")
        engine.register("half", pl.DataFrame({"q": texts[:48]}))
        scope = Scope(state, engine, 0, "root", "q", client=client, llm=llm)
        try:
            labelled, amounts = await asyncio.gather(
                dispatch("classify", json.dumps(classify), scope),
                dispatch("extract", json.dumps(extract), scope),
            )
        finally:
            await client.aclose()
            state.steps.close()
        return labelled, amounts, meter.snapshot().calls

    labelled, amounts, total = asyncio.run(go())
    assert labelled.error is None and amounts.error is None, (labelled.text, amounts.text)
    by_kind = sim.stats(log=False)["by_kind"]
    assert by_kind.get("classify_batch") == 6 and by_kind.get("extract_batch") == 3
    assert total == 9
    assert (labelled.sub_calls, amounts.sub_calls) == (6, 3)
    assert "(6 sub-calls)" in labelled.text and "(3 sub-calls)" in amounts.text
