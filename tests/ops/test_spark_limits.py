"""Job-wide limits on Spark when more tasks could run at once than the limits allow."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.sim import intended_label

LABELS = ["billing", "technical", "account", "other"]

pytestmark = pytest.mark.spark


def test_share_refuses_more_tasks_than_concurrency() -> None:
    with pytest.raises(rp.InputError, match="max_concurrency=2"):
        rp.LLM(max_concurrency=2).share(3)
    share = rp.LLM(max_concurrency=8, rpm=5, tpm=1000).share(8)
    assert (share.max_concurrency, share.rpm, share.tpm) == (1, 5 / 8, 125)


def test_more_partitions_than_concurrency_keeps_limit_and_order(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=50)
    data = rp_tickets(600)
    # eight ordered partitions (a plain repartition() has no stable row order to compare)
    df = spark.createDataFrame(data.to_arrow()).repartitionByRange(8, "ticket_id")
    df = df.sortWithinPartitions("ticket_id")
    assert df.rdd.getNumPartitions() == 8
    expected_order = sorted(data["ticket_id"].to_list())
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x", max_concurrency=1)
    out = rp.classify(df, column="question", labels=LABELS, llm=llm, batch_size=8)
    rows = out.select("ticket_id", "question", "label").collect()
    assert [r["ticket_id"] for r in rows] == expected_order
    assert all(r["label"] == intended_label(r["question"], LABELS) for r in rows)
    assert sim.stats()["peak_in_flight"] == 1


def rp_tickets(n: int) -> pl.DataFrame:
    from rlm_pipeline.datasets import tickets

    return tickets(n, seed=3)
