"""The reply breaker (ops/core): a run whose first calls all come back unusable stops.

Through the real :class:`LLMClient` over the scripted model of ``tests/ops/model.py``
(replies spoiled per test), and over real HTTP against the simulator for
``rp.classify``.  Before the breaker, each of these runs halved every batch down to
single rows and retried each one: ~3 calls per row, every row null, no error.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import LLMResponseParseError
from rlm_pipeline.ops.core import REPLY_BREAKER_CALLS, apply_texts
from rlm_pipeline.ops.memo import Memo
from rlm_pipeline.ops.spec import ClassifySpec
from tests.ops.tickets import LABELS, tickets

from .model import Model, run_with

SPEC = ClassifySpec("t", ("billing", "technical", "other"), batch_size=4)
TEXTS = [f"refund {i}" for i in range(200)]


def _every_row(kind: str) -> Any:
    def spoil(call: int, rows: list[dict[str, Any]], reply: Any) -> Any:
        if kind == "parse_error":
            return '{"results": [{"id": 0, '
        if kind == "invalid_label":
            return {"results": [{"id": r["id"], "label": "refunds"} for r in rows]}
        return {"results": []}  # missing_in_reply

    return spoil


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        ("parse_error", "not valid JSON"),
        ("invalid_label", "labels outside the set"),
        ("missing_in_reply", "do not answer the numbered rows"),
    ],
)
def test_every_reply_unusable_stops_the_run_after_a_few_calls(kind: str, hint: str) -> None:
    model = Model(_every_row(kind))
    with pytest.raises(LLMResponseParseError) as info:
        run_with(model, lambda client: apply_texts(TEXTS, client, SPEC))
    message = str(info.value)
    assert f"no usable reply in the first {REPLY_BREAKER_CALLS} calls" in message
    assert "http://127.0.0.1:9/v1" in message and "(model m)" in message and hint in message
    # the calls already in flight when it tripped, not ~3 per row (600 before the fix)
    assert len(model.calls) < 3 * REPLY_BREAKER_CALLS, len(model.calls)


def test_one_answered_row_disarms_the_breaker() -> None:
    def first_call_only(call: int, rows: list[dict[str, Any]], reply: Any) -> Any:
        return reply if call == 1 else '{"results": ['

    model = Model(first_call_only)
    out = run_with(model, lambda client: apply_texts(TEXTS[:40], client, SPEC), max_concurrency=1)
    answered = [v for v, e in out if e is None]
    assert answered == ["billing"] * 4  # the first call's rows; every later reply is broken
    assert sum(str(e).startswith("parse_error") for _, e in out) == 36


def test_isolated_bad_replies_stay_row_reasons() -> None:
    def poison(call: int, rows: list[dict[str, Any]], reply: Any) -> Any:
        return '{"results": [' if any(r["text"] == "refund 7" for r in rows) else reply

    out = run_with(Model(poison), lambda client: apply_texts(TEXTS[:40], client, SPEC))
    failed = [i for i, (_, e) in enumerate(out) if e is not None]
    assert failed == [7] and str(out[7][1]).startswith("parse_error")


def test_a_shared_memo_is_one_run() -> None:
    """Slices of a stream (one memo) trip together, though each has fewer calls than the limit."""
    model = Model(_every_row("parse_error"))
    memo = Memo()
    per_slice = 2  # rows per slice: 2 rows x 2 tries = 4 calls, under the limit

    async def slices(client: Any) -> None:
        for start in range(0, len(TEXTS), per_slice):
            await apply_texts(TEXTS[start : start + per_slice], client,
                              ClassifySpec("t", SPEC.labels, batch_size=1), memo=memo)

    with pytest.raises(LLMResponseParseError):
        run_with(model, slices)
    assert len(model.calls) <= 2 * REPLY_BREAKER_CALLS


def test_python_classify_raises_on_a_server_that_breaks_every_reply(sim_factory: Any) -> None:
    sim = sim_factory(fault_malformed=1.0)
    df = pl.DataFrame({"q": tickets(200, seed=2)})
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="k", max_retries=0)
    with pytest.raises(LLMResponseParseError, match="no usable reply") as info:
        rp.classify(df, "q", list(LABELS), llm)
    assert sim.base_url in str(info.value)
    assert sim.stats(log=False)["requests"] < 40
