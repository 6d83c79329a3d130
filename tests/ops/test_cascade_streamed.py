"""The streamed cascade (``classify --cascade-model`` on Polars): the same rows as in memory.

:func:`~rlm_pipeline.ops.cascade.cascade_to_parquet` streams both passes through
scratch Parquet files; its output must equal :func:`rp.classify`'s in-memory
cascade row for row (the simulators answer each text the same way every time),
with the same report, and leave no scratch file behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.api import run_op
from rlm_pipeline.ops.cascade import cascade_to_parquet
from rlm_pipeline.ops.cascade_frames import PolarsFrames, _smallest, smallest_rows
from rlm_pipeline.ops.spec import ClassifySpec

LABELS = ("billing", "technical", "account", "other")


def test_streamed_cascade_equals_the_in_memory_one(sim_factory: Any, tmp_path: Path) -> None:
    proxy_sim, oracle_sim = sim_factory(accuracy=0.85), sim_factory()
    small = rp.LLM(model="gpt-4.1-nano", base_url=proxy_sim.base_url, api_key="x")
    big = rp.LLM(model="gpt-4.1", base_url=oracle_sim.base_url, api_key="x")
    data = tickets(900, seed=6)
    data = data.with_columns(  # blanks and repeats: every row once all the same
        pl.when(pl.int_range(pl.len()) % 50 == 0).then(None).otherwise(pl.col("question"))
        .alias("question")
    )
    source = tmp_path / "in.parquet"
    data.write_parquet(source)
    cascade = rp.Cascade(small, target=0.9, sample=120, confidence="logprobs")
    spec = ClassifySpec("question", LABELS)

    memory, mem_stats = run_op(pl.read_parquet(source), spec, big, cascade=cascade, warn=False)
    out = tmp_path / "out" / "labels.parquet"
    out.parent.mkdir()
    meter = UsageMeter()
    stats = cascade_to_parquet(pl.scan_parquet(source), spec, big, cascade, out, meter=meter)

    streamed = pl.read_parquet(out)
    assert streamed.columns == memory.columns
    assert streamed.equals(memory)  # every row once, in order, the same answers and sources
    assert list(out.parent.iterdir()) == [out]  # the scratch files are gone
    report, mem_report = stats.cascade, mem_stats.cascade
    assert report is not None and mem_report is not None
    assert report.threshold == mem_report.threshold
    assert (report.proxy_rows, report.oracle_rows, report.unsent) == (
        mem_report.proxy_rows, mem_report.oracle_rows, mem_report.unsent
    )
    assert stats.values == mem_stats.values and stats.errors == mem_stats.errors
    assert meter.snapshot().calls == report.proxy_usage.calls + report.oracle_usage.calls > 0


def test_the_batched_sample_is_the_sorted_one() -> None:
    rows = [(f"t{i % 700}", i % 4, (i % 97) / 97) for i in range(3000)] + [(None, 1, 0.5)]
    first = {}
    for text, value, conf in rows:
        if text is not None:
            first.setdefault(text, (text, value, conf))
    for n in (0, 1, 50, 700, 900):
        assert smallest_rows(rows, n, seed=3) == _smallest(list(first.values()), n, 3)
    frame = pl.DataFrame(rows, schema=["t", "v", "c"], orient="row")
    eager = PolarsFrames().sample(frame, "t", "v", "c", n=60, seed=1)
    assert eager == PolarsFrames().sample(frame.lazy(), "t", "v", "c", n=60, seed=1)
    assert eager == _smallest(list(first.values()), 60, 1)
