"""What a Spark task reports (ops/spark_task), run as the plain function a task calls.

No Spark session: ``task_function`` is called directly (partition 0), over real HTTP
against the simulator.  Two attempts of one partition (a retry, a speculative copy)
must not count its rows twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.spark_task import ReportSum, TaskReport, task_function
from rlm_pipeline.ops.spec import ClassifySpec
from tests.ops.tickets import LABELS, tickets


def test_two_attempts_of_a_partition_count_its_cached_rows_once(
    sim: Any, tmp_path: Path
) -> None:
    spec = ClassifySpec("q", tuple(LABELS), batch_size=8)
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k",
              cache_path=str(tmp_path / "c.sqlite"))
    batch = pa.RecordBatch.from_pydict({"q": tickets(40, seed=3)})
    total = ReportSum()
    summed = TaskReport()

    def report(one: TaskReport) -> None:
        nonlocal summed
        summed = total.addInPlace(summed, one)

    run = task_function(spec, llm, None, report)
    for _ in range(3):  # first attempt asks; the retried and the speculative one read the store
        out = list(run(iter([batch])))
        assert sum(b.num_rows for b in out) == 40
    rows = sum(s.rows for s in summed.stats.values())
    assert rows == 40
    assert summed.cached_rows == 40  # the last attempt's count, not 80 summed over attempts
    assert summed.cached_rows <= rows
    assert sim.stats(log=False)["requests"] == 5  # only the first attempt called the model
