"""The engines' seam to the semantic operators: map_llm runs the fan-out it is given
(rlm_pipeline.ops') and registers the result (checked against the simulator's own
classifier); a child engine is of its parent's kind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import Engine
from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.fanout import FANOUT
from rlm_pipeline.ops.spec import ClassifySpec
from rlm_pipeline.sim import intended_label

from .data import tickets

LABELS = ("billing", "technical", "account", "other")


def test_map_llm_classifies_and_registers_the_result(
    make_engine: Callable[[Any], Engine], sim: Any
) -> None:
    engine = make_engine(tickets(24))
    engine.filter("context", "ticket_id < 16", "first")
    llm = LLM(model="gpt-4.1-mini", base_url=sim.base_url, api_key="sk-test", max_retries=0)
    meter = UsageMeter()
    spec = ClassifySpec("question", LABELS, batch_size=4)
    stats = _map_llm(engine, "first", spec, llm, "labelled", meter)
    assert "labelled" in engine.views()
    assert engine.schema("labelled") == {
        **engine.schema("first"),
        "label": "string",
        "label_error": "string",
    }
    out = pl.from_arrow(engine.to_arrow("labelled"))
    assert isinstance(out, pl.DataFrame)
    assert sorted(out["ticket_id"].to_list()) == list(range(16))
    for text, label, error in out.select("question", "label", "label_error").iter_rows():
        if text is None:
            assert label is None and error.startswith("empty_input")
        else:
            assert label == intended_label(text, LABELS) and error is None
    assert stats.rows == 16
    assert meter.snapshot().calls >= 1
    with pytest.raises(InputError, match="cannot be replaced"):
        _map_llm(engine, "first", ClassifySpec("question", LABELS), llm, "context", meter)


def _map_llm(
    engine: Engine, view: str, spec: ClassifySpec, llm: LLM, name: str, meter: UsageMeter
) -> Any:
    async def run() -> Any:
        async with LLMClient(llm, meter=meter) as client:
            return await engine.map_llm(view, spec, client, name, fanout=FANOUT)

    return asyncio.run(run())


def test_open_child_is_a_new_engine_of_the_same_kind(make_engine: Callable[[Any], Engine]) -> None:
    engine = make_engine(tickets(24))
    engine.filter("context", "ticket_id < 5", "first")
    child = engine.open_child(engine.frame("first"))
    assert type(child) is type(engine) and child is not engine
    assert child.fans_out_in_tasks == engine.fans_out_in_tasks
    assert child.views() == ["context"] and child.count("context") == 5
    assert engine.views() == ["context", "first"]
    child.close()
