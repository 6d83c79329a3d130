"""The root's `aggregate` tool, dispatched as the loop does, over the simulator (both engines)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import ToolError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.limits import over_limit
from rlm_pipeline.rlm.tools import TOOL_NAMES, TOOLS, parse_arguments
from rlm_pipeline.sim.folds import SUMMARY_LABELS, parse_summary, summary_counts
from tests.ops.tickets import tickets


def _dispatch(llm: LLM, data: Any, engine_name: str, spark: Any, args: dict[str, Any]) -> Any:
    from rlm_pipeline.engines import open_engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog
    from rlm_pipeline.rlm.tools import dispatch

    async def go() -> tuple[Any, pl.DataFrame | None]:
        meter, budget = UsageMeter(), Budget()
        client = LLMClient(llm, meter=meter, budget=budget)
        state = RunState(run_id="test", root_client=client, sub_client=client, sub_llm=llm,
                         meter=meter, budget=budget, max_steps=5, max_depth=1,
                         sub_prompt_tokens=8000, max_parallel=4,
                         steps=StepLog("test", None, None), run_loop=run_loop)
        engine = open_engine(data, engine_name, spark=spark)
        scope = Scope(state, engine, 0, "root", "question", client=client, llm=llm)
        try:
            outcome = await dispatch("aggregate", json.dumps(args), scope)
            view = None
            if outcome.error is None:
                view = pl.DataFrame(engine.to_arrow(args["name"]))
        finally:
            await client.aclose()
            state.steps.close()
        return outcome, view

    return asyncio.run(go())


@pytest.mark.parametrize("engine", ["polars", pytest.param("spark", marks=pytest.mark.spark)])
def test_aggregate_tool_makes_a_view_of_summaries(
    sim: Any, request: pytest.FixtureRequest, engine: str
) -> None:
    df = pl.DataFrame({"user_id": [i % 3 for i in range(300)], "question": tickets(300, seed=2)})
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    data = spark.createDataFrame(df.to_arrow()) if spark is not None else df
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    args = {"view": "context", "column": "question", "instruction": "main complaints",
            "by": ["user_id"], "name": "themes"}
    outcome, view = _dispatch(llm, data, engine, spark, args)
    assert outcome.error is None, outcome.text
    assert outcome.text.startswith("view `themes`: 3 groups (300 rows")
    assert len(outcome.text) <= 2_000 and outcome.sub_calls >= 3
    assert view is not None and view["user_id"].to_list() == [0, 1, 2]
    for user, summary in view.select("user_id", "summary").iter_rows():
        texts = df.filter(pl.col("user_id") == user)["question"].to_list()
        assert parse_summary(summary, SUMMARY_LABELS) == summary_counts(texts)


def test_aggregate_tool_schema_and_refusals(sim: Any) -> None:
    assert "aggregate" in TOOL_NAMES
    sent = next(t for t in TOOLS if t["function"]["name"] == "aggregate")
    assert over_limit(sent) == []  # nothing a grammar engine cannot take
    good = {"view": "context", "column": "q", "instruction": "themes", "name": "x"}
    assert parse_arguments("aggregate", json.dumps(good)) == good
    with pytest.raises(ToolError):
        parse_arguments("aggregate", json.dumps({**good, "instruction": ""}))
    df = pl.DataFrame({"u": list(range(100)), "q": ["a refund"] * 100})
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    outcome, _ = _dispatch(llm, df, "polars", None, {**good, "by": ["u"]})
    assert outcome.error is not None and "at most 64" in outcome.text
    assert sim.stats()["requests"] == 0
