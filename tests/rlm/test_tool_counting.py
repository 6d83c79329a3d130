"""The RLM's classify / llm_map / extract tools count their own calls (review item 4).

The tools fan out through ``Engine.map_llm``, whose Polars form counts the
fan-out's requests on a client of its own (``CountedClient``): other tool calls
may share the run's client and meter at the same time.  Checked against the
simulator's own counters: a reply that failed to parse still counts its tokens,
and a re-run answered from the stored row answers reports its cached rows and
calls (as plain ``classify`` does) and no call.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.engines.polars import PolarsEngine
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.api import run_op
from rlm_pipeline.ops.extract_op import ExtractSpec
from rlm_pipeline.ops.fanout import FANOUT
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec
from rlm_pipeline.ops.stats import OpStats

LABELS = ("billing", "technical", "account", "other")
SPECS = {  # the specs the three tools build (rlm/tools.py, rlm/sem_tools.py)
    "classify": ClassifySpec("question", LABELS, batch_size=4, output_column="label"),
    "llm_map": MapSpec("question", "count the words", "integer", batch_size=4),
    "extract": ExtractSpec("question", {"amount": "number", "plan": ["Basic", "Pro"]}, batch_size=4),
}


def _engine(rows: int = 48) -> PolarsEngine:
    engine = PolarsEngine()
    engine.register("context", tickets(rows, seed=5).drop("true_label"))
    return engine


def _llm(sim: Any, **knobs: Any) -> LLM:
    return LLM(model="gpt-4.1-mini", base_url=sim.base_url, api_key="sk-test", max_retries=2,
               **knobs)


async def _tool_calls(
    engine: PolarsEngine, llm: LLM, meter: UsageMeter, calls: list[tuple[Any, str]]
) -> list[OpStats]:
    """``map_llm`` of each ``(spec, name)`` over ``context``, all at once through one client."""
    async with LLMClient(llm, meter=meter) as client:
        return list(await asyncio.gather(*(
            engine.map_llm("context", spec, client, name, fanout=FANOUT) for spec, name in calls
        )))


@pytest.mark.parametrize("tool", list(SPECS))
def test_malformed_replies_count_their_tokens(sim_factory: Any, tool: str) -> None:
    sim = sim_factory(fault_malformed=0.3, seed=11)
    meter = UsageMeter()
    (stats,) = asyncio.run(_tool_calls(_engine(), _llm(sim), meter, [(SPECS[tool], "out")]))
    served = sim.stats(log=False)
    assert served["faults"].get("malformed", 0) >= 2  # replies that failed to parse were counted
    assert served["errors_by_status"] == {}
    usage = stats.usage
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (
        served["ok"], served["input_tokens"], served["output_tokens"]
    )
    run = meter.snapshot()  # nothing else ran: the run's meter agrees in every count
    assert replace(usage, cost_usd=0.0) == replace(run, cost_usd=0.0)
    assert usage.cost_usd == pytest.approx(run.cost_usd) and usage.cost_usd > 0
    assert usage.cached_tokens == served["cached_tokens"] > 0  # the prompt cache's share, priced
    assert stats.rows == 48


def test_parallel_tool_calls_each_count_their_own(sim_factory: Any) -> None:
    sim = sim_factory(fault_malformed=0.2, seed=3)
    meter = UsageMeter()
    calls = [(spec, f"out_{tool}") for tool, spec in SPECS.items()]
    every = asyncio.run(_tool_calls(_engine(), _llm(sim), meter, calls))
    served = sim.stats(log=False)
    assert served["faults"].get("malformed", 0) >= 2
    total = every[0].usage + every[1].usage + every[2].usage
    assert all(stats.usage.calls > 0 for stats in every)
    assert (total.calls, total.input_tokens, total.output_tokens) == (
        served["ok"], served["input_tokens"], served["output_tokens"]
    )
    assert total.calls == meter.snapshot().calls


def test_a_rerun_reports_cached_rows_and_no_call(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory()
    llm = _llm(sim, cache_path=str(tmp_path / "answers.sqlite"))
    spec = SPECS["classify"]
    engine = _engine()
    (first,) = asyncio.run(_tool_calls(engine, llm, UsageMeter(), [(spec, "labelled")]))
    asked = sim.stats(log=False)["ok"]
    assert first.usage.calls == asked > 0 and first.cached_rows == 0
    meter = UsageMeter()
    (again,) = asyncio.run(_tool_calls(engine, llm, meter, [(spec, "labelled_again")]))
    assert sim.stats(log=False)["ok"] == asked  # nothing sent
    sent_rows = first.rows - first.errors.get("empty_input", 0)
    assert again.usage.calls == 0 and again.cached_rows == sent_rows > 0
    assert again.usage.cached_calls > 0 and again.usage == meter.snapshot()
    # plain classify (rp.classify's front-end) over the same rows counts them the same way
    frame = pl.from_arrow(engine.to_arrow("context"))
    assert isinstance(frame, pl.DataFrame)
    _, plain = run_op(frame, spec, llm)
    assert sim.stats(log=False)["ok"] == asked
    assert (plain.cached_rows, plain.usage.calls, plain.usage.cached_calls) == (
        again.cached_rows, 0, again.usage.cached_calls
    )
