"""Spark fan-outs on one meter (a run's parallel sub-runs) run one at a time.

Each fan-out gives its tasks the budget left when it starts; two at once would
each get all of it.  Checked over real Spark and the simulator: two ``map_llm``
calls started together through one budgeted client stay within the budget.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.engines.load import open_engine
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.fanout import FANOUT
from rlm_pipeline.ops.spec import ClassifySpec

LABELS = ("billing", "technical", "account", "other")


@pytest.mark.spark
def test_parallel_spark_fanouts_share_the_budget(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(seed=3)
    frame = tickets(64, seed=9).drop("true_label")
    engine = open_engine(spark.createDataFrame(frame.to_arrow()), engine="spark", spark=spark)
    spec = ClassifySpec("question", LABELS, batch_size=4, output_column="label")  # 16 calls each
    llm = LLM(model="gpt-4.1-mini", base_url=sim.base_url, api_key="sk-test", max_retries=1)
    meter = UsageMeter()

    async def both() -> list[Any]:
        async with LLMClient(llm, meter=meter, budget=Budget(max_calls=20)) as client:
            return list(await asyncio.gather(
                engine.map_llm("context", spec, client, "a", fanout=FANOUT),
                engine.map_llm("context", spec, client, "b", fanout=FANOUT),
            ))

    try:
        first, second = asyncio.run(both())
    finally:
        engine.close()
    served = sim.stats(log=False)["ok"]
    assert served <= 20 and meter.snapshot().calls <= 20  # the budget held across both
    assert first.rows == second.rows == 64
    cut = first.errors.get("budget_exceeded", 0) + second.errors.get("budget_exceeded", 0)
    assert cut > 0  # the later fan-out started from what the first had spent
