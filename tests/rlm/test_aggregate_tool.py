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


def _run_together(llm: LLM, data: Any, engine_name: str, spark: Any,
                  calls: list[dict[str, Any]]) -> tuple[list[Any], list[str]]:
    """Dispatch several ``aggregate`` calls at once on one scope (one client), as the loop
    does when a reply holds several actions; the outcomes and the engine's views after."""
    from rlm_pipeline.engines import open_engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog
    from rlm_pipeline.rlm.tools import dispatch

    async def go() -> tuple[list[Any], list[str]]:
        meter, budget = UsageMeter(), Budget()
        client = LLMClient(llm, meter=meter, budget=budget)
        state = RunState(run_id="test", root_client=client, sub_client=client, sub_llm=llm,
                         meter=meter, budget=budget, max_steps=5, max_depth=1,
                         sub_prompt_tokens=8000, max_parallel=4,
                         steps=StepLog("test", None, None), run_loop=run_loop)
        engine = open_engine(data, engine_name, spark=spark)
        scope = Scope(state, engine, 0, "root", "question", client=client, llm=llm)
        try:
            outcomes = await asyncio.gather(
                *(dispatch("aggregate", json.dumps(args), scope) for args in calls)
            )
        finally:
            await client.aclose()
            state.steps.close()
        return list(outcomes), engine.views()

    return asyncio.run(go())


@pytest.mark.parametrize("engine", ["polars", pytest.param("spark", marks=pytest.mark.spark)])
def test_overlapping_calls_count_their_own_sub_calls_and_leave_only_their_views(
    sim_factory: Any, request: pytest.FixtureRequest, engine: str
) -> None:
    sim = sim_factory(latency_ms=150)  # the two folds' calls are in flight together
    df = pl.DataFrame({"user_id": [i % 3 for i in range(30)], "team": [i % 2 for i in range(30)],
                       "question": tickets(30, seed=4)})
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    before = ({t.name for t in spark.catalog.listTables() if t.isTemporary}
              if spark is not None else set())
    data = spark.createDataFrame(df.to_arrow()) if spark is not None else df
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    calls = [{"view": "context", "column": "question", "instruction": "main complaints",
              "by": [by], "name": f"by_{by}"} for by in ("user_id", "team")]
    (users, teams), views = _run_together(llm, data, engine, spark, calls)
    assert users.error is None and teams.error is None, (users.text, teams.text)
    # one leaf call per group: each call counts its own, not the other's calls in flight
    assert (users.sub_calls, teams.sub_calls) == (3, 2)
    assert sim.stats()["requests"] == 5
    assert "(30 rows, 3 sub-calls)" in users.text and "(30 rows, 2 sub-calls)" in teams.text
    assert sorted(views) == ["by_team", "by_user_id", "context"]  # no scratch view left
    if spark is not None:  # the session holds one temp view per engine view, no more
        after = {t.name for t in spark.catalog.listTables() if t.isTemporary}
        assert len(after - before) == 3


def test_group_cap_checked_before_the_texts_are_read(
    sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlm_pipeline.ops.aggregate_op as aggregate_op

    read: list[str] = []
    real = aggregate_op._grouped

    def grouped(frame: Any, spec: Any) -> Any:
        read.append(frame.view)
        return real(frame, spec)

    monkeypatch.setattr(aggregate_op, "_grouped", grouped)
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    args = {"view": "context", "column": "q", "instruction": "themes", "by": ["u"], "name": "x"}
    many = pl.DataFrame({"u": list(range(100_000)), "q": ["a refund"] * 100_000})
    outcome, _ = _dispatch(llm, many, "polars", None, args)
    assert outcome.error is not None
    assert "more than 64 groups by u" in outcome.text and "at most 64" in outcome.text
    assert read == [] and sim.stats()["requests"] == 0  # no (group, text) pair was read
    few = pl.DataFrame({"u": [i % 64 for i in range(640)], "q": ["a refund"] * 640})
    outcome, view = _dispatch(llm, few, "polars", None, args)  # 64 groups: at the cap, runs
    assert outcome.error is None and read == ["context"]
    assert view is not None and view.height == 64 and view["rows"].sum() == 640
