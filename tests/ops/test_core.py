"""The pure operators through the real :class:`LLMClient` over an in-process transport.

The "model" is a handler behind ``httpx2.MockTransport``: it reads the rows of
each request and answers them (correctly unless a test spoils the reply), so
the operators take the same code paths as in production (cache, meter,
``accept``, retries).  End-to-end behaviour over real HTTP is tested against
the simulator in the fan-out tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import Budget
from rlm_pipeline.ops.core import apply_texts, classify_texts, llm_map_texts
from rlm_pipeline.ops.memo import Memo
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec

from .model import Model, run_with, truth

LABELS = ("billing", "technical", "other")
_truth = truth


def classify(model: Model, texts: list[Any], spec: ClassifySpec, **client_args: Any) -> Any:
    return run_with(model, lambda client: classify_texts(texts, client, spec), **client_args)


def test_dedup_batches_and_keeps_order() -> None:
    texts = ["refund a", "crash b", None, "refund a", "", "x", "crash b", "  "]
    model = Model()
    out = classify(model, texts, ClassifySpec("t", LABELS, batch_size=2))
    assert out == [
        ("billing", None), ("technical", None), (None, "empty_input"), ("billing", None),
        (None, "empty_input"), ("other", None), ("technical", None), (None, "empty_input"),
    ]
    assert sorted(model.calls) == [["refund a", "crash b"], ["x"]]  # sent concurrently


def test_missing_id_reasks_only_that_row() -> None:
    def drop_second(call: int, rows: Any, reply: Any) -> Any:
        if call == 1:
            reply["results"] = [r for r in reply["results"] if r["id"] != 1]
        return reply

    model = Model(drop_second)
    texts = ["refund 0", "crash 1", "x 2", "refund 3"]
    out = classify(model, texts, ClassifySpec("t", LABELS, batch_size=4))
    assert [v for v, _ in out] == ["billing", "technical", "other", "billing"]
    assert model.calls[1:] == [["crash 1"]]


@pytest.mark.parametrize("variant", ["duplicate", "unknown"])
def test_untrusted_numbering_reasks_everything_by_halves(variant: str) -> None:
    def scramble(call: int, rows: Any, reply: Any) -> Any:
        if call == 1:
            extra = dict(reply["results"][0])
            extra["id"] = 0 if variant == "duplicate" else 99
            extra["label"] = "other"
            reply["results"].append(extra)
        return reply

    model = Model(scramble)
    texts = [f"refund {i}" for i in range(4)]
    out = classify(model, texts, ClassifySpec("t", LABELS, batch_size=4))
    assert out == [("billing", None)] * 4
    assert sorted(map(len, model.calls)) == [2, 2, 4]


def test_invalid_label_gets_one_retry_then_reason() -> None:
    def bad_label(call: int, rows: Any, reply: Any) -> Any:
        for item in reply["results"]:
            if item["id"] == 0 and rows[0]["text"] == "refund 0":
                item["label"] = "refunds"
        return reply

    model = Model(bad_label)
    out = classify(model, ["refund 0", "crash 1"], ClassifySpec("t", LABELS, batch_size=2))
    assert out[1] == ("technical", None)
    assert out[0][0] is None and out[0][1] is not None and out[0][1].startswith("invalid_label")
    assert model.calls == [["refund 0", "crash 1"], ["refund 0"], ["refund 0"]]


def test_unparsable_reply_splits_then_parse_error() -> None:
    def broken(call: int, rows: Any, reply: Any) -> Any:
        if any(r["text"] == "poison" for r in rows):
            return '{"results": ['
        return reply

    model = Model(broken)
    texts = ["refund", "crash", "poison", "x"]
    out = classify(model, texts, ClassifySpec("t", LABELS, batch_size=4))
    assert out[0] == ("billing", None) and out[1] == ("technical", None) and out[3] == ("other", None)
    assert out[2][0] is None and str(out[2][1]).startswith("parse_error")
    assert model.calls.count(["poison"]) == 2  # one row, one retry


def test_a_bad_label_in_a_batch_reply_is_salvaged_per_row() -> None:
    def bad_second(call: int, rows: Any, reply: Any) -> Any:
        if len(rows) == 2:
            return {"results": [{"id": 0, "label": "billing"}, {"id": 1, "label": "nope"}]}
        return reply

    model = Model(bad_second)
    out = classify(model, ["refund", "crash"], ClassifySpec("t", LABELS, batch_size=2))
    assert out == [("billing", None), ("technical", None)]
    assert model.calls[1:] == [["crash"]]


def test_api_error_is_final_for_its_rows() -> None:
    def fail_first(call: int, rows: Any, reply: Any) -> Any:
        return httpx2.Response(500, text="boom") if rows[0]["text"] == "a" else reply

    model = Model(fail_first)
    out = classify(model, ["a", "b", "refund"], ClassifySpec("t", LABELS, batch_size=2))
    assert all(str(e).startswith("api_error: 500 after 3 tries") for _, e in out[:2])
    assert out[2] == ("billing", None)
    assert model.calls.count(["a", "b"]) == 3  # the client's tries; ops never re-ask them


def test_budget_stop_keeps_answered_rows() -> None:
    model = Model()
    texts = [f"refund {i}" for i in range(10)]
    spec = ClassifySpec("t", LABELS, batch_size=2)
    out = classify(model, texts, spec, budget=Budget(max_calls=2))
    answered = [r for r in out if r[1] is None]
    stopped = [r for r in out if r[1] is not None]
    assert len(answered) == 4 and all(v == "billing" for v, _ in answered)
    assert len(stopped) == 6 and all(str(e).startswith("budget_exceeded") for _, e in stopped)
    assert len(model.calls) == 2


def test_single_row_schema_and_map_types() -> None:
    def count_words(rows: list[dict[str, Any]], schema: dict[str, Any]) -> Any:
        assert "results" not in schema["properties"]
        text = rows[0]["text"]
        return {"value": len(text.split()) if text != "bad" else "three"}

    spec = MapSpec("t", "count words", output_type="integer", batch_size=1)
    model = Model(answer=count_words)
    out = run_with(model, lambda client: llm_map_texts(["a b", "bad", "a b c"], client, spec))
    assert out[0] == (2, None) and out[2] == (3, None)
    assert out[1][0] is None and str(out[1][1]).startswith("parse_error")


def test_progress_counts_every_row_once() -> None:
    seen: list[tuple[int, int]] = []
    texts = ["refund", None, "refund", "crash", ""]
    spec = ClassifySpec("t", LABELS, batch_size=1)
    run_with(
        Model(),
        lambda client: apply_texts(
            texts, client, spec, progress=lambda rows, failed: seen.append((rows, failed))
        ),
    )
    assert sum(r for r, _ in seen) == len(texts)
    assert sum(f for _, f in seen) == 2


def test_batches_are_worked_by_a_bounded_pool_in_input_order() -> None:
    texts = [f"refund {i}" if i % 3 else f"crash {i}" for i in range(400)]
    model = Model(delay_s=0.001)
    out = classify(model, texts, ClassifySpec("t", LABELS, batch_size=4), max_concurrency=3)
    assert out == [(_truth(t), None) for t in texts]
    assert len(model.calls) == 100
    assert model.peak == 3  # the client's limit
    # a pool of twice the limit (6 workers) and the main task: not one task per batch
    assert model.peak_tasks <= 6 + 1
    assert [call[0] for call in model.calls] == texts[::4]  # sent in input order


def test_a_failing_callback_fails_the_call_and_every_waiter_sharing_the_memo() -> None:
    texts = [f"refund {i}" for i in range(40)]
    model = Model(delay_s=0.001)
    spec = ClassifySpec("t", LABELS, batch_size=2)
    reports = 0

    def progress(rows: int, failed: int) -> None:
        nonlocal reports
        reports += 1
        if reports == 3:
            raise RuntimeError("a bug in the progress callback")

    async def both(client: LLMClient) -> list[Any]:
        memo = Memo()
        first = asyncio.ensure_future(
            classify_texts(texts, client, spec, memo=memo, progress=progress)
        )
        await asyncio.sleep(0)
        # the same texts again: they wait on the first call's answers
        second = classify_texts(texts[::-1], client, spec, memo=memo)
        return list(await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 10))

    first, second = run_with(model, both, max_concurrency=2)
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert len(model.calls) < 20  # the pool stopped taking batches
