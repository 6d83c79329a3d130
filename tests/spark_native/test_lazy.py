"""``rp.spark.classify`` is a lazy transform: no model call until an action, usage after it."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

import rlm_pipeline as rp
from rlm_pipeline.ops.progress import ReportWatcher, RowCounter
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import LABELS, tickets

pytestmark = pytest.mark.spark


def _llm(sim: Any, **kw: Any) -> rp.LLM:
    base = {"model": "sim-1", "base_url": sim.base_url, "api_key": "x", "max_concurrency": 8}
    return rp.LLM(**{**base, **kw})


def _frame(session: Any, texts: list[str | None], partitions: int) -> Any:
    table = pa.table({"id": list(range(len(texts))), "q": texts})
    return session.createDataFrame(table).repartition(partitions, "q")


@pytest.mark.parametrize("kind", ["classic", "connect"])
def test_transform_sends_nothing_until_an_action(
    kind: str, request: pytest.FixtureRequest, sim_factory: Any
) -> None:
    session = request.getfixturevalue("spark" if kind == "classic" else "connect")
    sim = sim_factory(seed=5)
    texts: list[str | None] = list(tickets(600, distinct=300, seed=41))
    texts[7] = None
    op = rp.spark.classify("q", list(LABELS), llm=_llm(sim))
    out = _frame(session, texts, 2).transform(op).select("id", "label", "label_error")
    assert sim.stats()["requests"] == 0  # planned only
    assert op.stats is None and op.usage.calls == 0

    rows = out.collect()
    got = {r["id"]: r["label"] for r in rows}
    assert sorted(got) == list(range(600))  # every row once
    assert all(got[i] == intended_label(t, LABELS) for i, t in enumerate(texts) if t)
    assert got[7] is None
    first = sim.stats()
    distinct = len({t for t in texts if t})
    assert first["requests"] >= distinct / 16
    if kind == "classic":  # filled from the tasks' accumulator
        usage = op.usage
        assert usage.calls == first["requests"]
        assert (usage.input_tokens, usage.output_tokens) == (
            first["input_tokens"],
            first["output_tokens"],
        )
        assert op.stats is not None and op.stats.rows == 600 and op.stats.answered == 599

    # a second action and a sort (its sampling job too) read the persisted answers: no call
    assert out.where("label IS NOT NULL").count() == 599
    assert out.orderBy("label", "id").first() is not None
    assert sim.stats()["requests"] == first["requests"]
    if kind == "classic":
        assert op.usage.calls == first["requests"]


def test_progress_moves_while_tasks_finish(spark: Any, sim_factory: Any) -> None:
    sim = sim_factory(latency_ms=40)
    texts: list[str | None] = list(tickets(360, seed=42))
    op = rp.spark.classify("q", list(LABELS), llm=_llm(sim, max_concurrency=2))
    out = _frame(spark, texts, 6).transform(op)  # 6 tasks, 2 at a time
    seen: list[int] = []

    class Recorder(RowCounter):
        def __call__(self, rows: int, failed: int) -> None:
            super().__call__(rows, failed)
            seen.append(self.done)

    with ReportWatcher(op.report, Recorder(), interval_s=0.05):
        out.collect()
    assert seen[-1] == 360
    assert any(0 < done < 360 for done in seen), seen  # updated before the action ended
