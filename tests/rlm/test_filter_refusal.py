"""The ``filter`` tool lets the engine refuse before it counts anything; ``partition n``
is held to the engine's one limit by the tool schema."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import polars as pl

from rlm_pipeline.engines.partitioning import MAX_PARTITIONS
from rlm_pipeline.engines.polars import PolarsEngine
from rlm_pipeline.engines.work import Work, WorkLimits, work_scope
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.limits import over_limit, wire_schema
from rlm_pipeline.rlm.tools import TOOLS, ToolOutcome


class CountingEngine(PolarsEngine):
    """A Polars engine that records the views it is asked to count."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[str] = []

    def count(self, view: str) -> int:
        self.counted.append(view)
        return super().count(view)


def _filters(llm: LLM, calls: list[dict[str, Any]], limits: WorkLimits) -> tuple[list[Any], Any]:
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog
    from rlm_pipeline.rlm.tools import dispatch

    engine = CountingEngine()
    engine.register("context", pl.DataFrame({"k": [i % 10 for i in range(1000)]}))

    async def go() -> list[ToolOutcome]:
        meter, budget = UsageMeter(), Budget()
        client = LLMClient(llm, meter=meter, budget=budget)
        state = RunState(
            run_id="test",
            root_client=client,
            sub_client=client,
            sub_llm=llm,
            meter=meter,
            budget=budget,
            max_steps=5,
            max_depth=1,
            sub_prompt_tokens=8000,
            max_parallel=4,
            steps=StepLog("test", None, None),
            run_loop=run_loop,
        )
        scope = Scope(state, engine, 0, "root", None, client=client, llm=llm)
        try:
            with work_scope(Work("run", limits=limits)):
                return [await dispatch("filter", json.dumps(args), scope) for args in calls]
        finally:
            await client.aclose()
            state.steps.close()

    return asyncio.run(go()), engine


def test_a_refused_filter_counts_nothing_and_a_made_one_counts_its_input_once(
    sim_llm: LLM,
) -> None:
    calls = [
        {"view": "context", "where": "k < 5", "name": "a"},
        {"view": "context", "where": "k = 1", "name": "b"},  # past max_views = 1
        {"view": "a", "where": "k = 2", "name": "a"},  # replaces its own input
    ]
    outcomes, engine = _filters(sim_llm, calls, WorkLimits(max_views=1))
    made, refused, replaced = outcomes
    assert made.error is None and made.rows_in == 1000 and made.rows_out == 500
    assert refused.error is not None and "max_views = 1" in refused.text
    assert replaced.error is None and replaced.rows_in == 500 and replaced.rows_out == 100
    # context once for the row cap, the input of each made view once, nothing for `b`
    assert engine.counted == ["context", "context", "a"]


def test_the_partition_schema_says_the_engines_limit() -> None:
    schema = next(t for t in TOOLS if t["function"]["name"] == "partition")
    n = schema["function"]["parameters"]["properties"]["n"]
    assert n["maximum"] == MAX_PARTITIONS == 1000
    assert not over_limit(n) and wire_schema(n) == n  # a number bound: fine for grammars
