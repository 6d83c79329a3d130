"""Unit tests of the pure operators with a tiny in-process client that mimics ``json()``.

End-to-end behaviour over HTTP is tested against the simulator in the fan-out tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from rlm_pipeline.errors import BudgetExceededError, LLMError, LLMResponseParseError
from rlm_pipeline.ops.core import apply_texts, classify_texts, llm_map_texts
from rlm_pipeline.ops.spec import ClassifySpec, MapSpec

LABELS = ("billing", "technical", "other")


def _rows(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = messages[-1]["content"].split("Rows:\n", 1)[1].splitlines()
    return [json.loads(line) for line in lines]


def _truth(text: str) -> str:
    return "billing" if "refund" in text else "technical" if "crash" in text else "other"


class FakeClient:
    """Answers correctly unless ``spoil(call_number, rows, reply)`` changes the reply."""

    def __init__(self, spoil: Callable[[int, list[dict[str, Any]], dict[str, Any]], Any] | None = None):
        self.spoil = spoil
        self.calls: list[list[str]] = []

    async def json(self, messages, schema, *, name, max_tokens=None, prompt_version=None):  # type: ignore[no-untyped-def]
        rows = _rows(messages)
        self.calls.append([r["text"] for r in rows])
        if "results" in schema["properties"]:
            reply: Any = {"results": [{"id": r["id"], "label": _truth(r["text"])} for r in rows]}
        else:
            reply = {"label": _truth(rows[0]["text"])}
        if self.spoil is not None:
            reply = self.spoil(len(self.calls), rows, reply)
        if isinstance(reply, BaseException):
            raise reply
        return reply, None


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_dedup_batches_and_keeps_order() -> None:
    texts = ["refund a", "crash b", None, "refund a", "", "x", "crash b", "  "]
    client = FakeClient()
    out = run(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=2)))
    assert out == [
        ("billing", None), ("technical", None), (None, "empty_input"), ("billing", None),
        (None, "empty_input"), ("other", None), ("technical", None), (None, "empty_input"),
    ]
    assert client.calls == [["refund a", "crash b"], ["x"]]


def test_missing_id_reasks_only_that_row() -> None:
    def drop_second(call: int, rows: Any, reply: Any) -> Any:
        if call == 1:
            reply["results"] = [r for r in reply["results"] if r["id"] != 1]
        return reply

    client = FakeClient(drop_second)
    texts = ["refund 0", "crash 1", "x 2", "refund 3"]
    out = run(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=4)))
    assert [v for v, _ in out] == ["billing", "technical", "other", "billing"]
    assert client.calls[1:] == [["crash 1"]]


@pytest.mark.parametrize("variant", ["duplicate", "unknown"])
def test_untrusted_numbering_reasks_everything_by_halves(variant: str) -> None:
    def scramble(call: int, rows: Any, reply: Any) -> Any:
        if call == 1:
            extra = dict(reply["results"][0])
            extra["id"] = 0 if variant == "duplicate" else 99
            extra["label"] = "other"
            reply["results"].append(extra)
        return reply

    client = FakeClient(scramble)
    texts = [f"refund {i}" for i in range(4)]
    out = run(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=4)))
    assert out == [("billing", None)] * 4
    assert sorted(map(len, client.calls)) == [2, 2, 4]


def test_invalid_label_gets_one_retry_then_reason() -> None:
    def bad_label(call: int, rows: Any, reply: Any) -> Any:
        for item in reply["results"]:
            if item["id"] == 0 and rows[0]["text"] == "refund 0":
                item["label"] = "refunds"
        return reply

    client = FakeClient(bad_label)
    out = run(classify_texts(["refund 0", "crash 1"], client, ClassifySpec("t", LABELS, batch_size=2)))
    assert out[1] == ("technical", None)
    assert out[0][0] is None and out[0][1] is not None and out[0][1].startswith("invalid_label")
    assert client.calls == [["refund 0", "crash 1"], ["refund 0"], ["refund 0"]]


def test_unparsable_reply_splits_then_parse_error() -> None:
    def broken(call: int, rows: Any, reply: Any) -> Any:
        if any(r["text"] == "poison" for r in rows):
            return LLMResponseParseError("no JSON", raw='{"results": [')
        return reply

    client = FakeClient(broken)
    texts = ["refund", "crash", "poison", "x"]
    out = run(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=4)))
    assert out[0] == ("billing", None) and out[1] == ("technical", None) and out[3] == ("other", None)
    assert out[2][0] is None and str(out[2][1]).startswith("parse_error")
    assert client.calls.count(["poison"]) == 2  # one row, one retry


def test_parse_error_raw_with_bad_label_is_salvaged_per_row() -> None:
    def raw_bad(call: int, rows: Any, reply: Any) -> Any:
        if len(rows) == 2:
            bad = {"results": [{"id": 0, "label": "billing"}, {"id": 1, "label": "nope"}]}
            return LLMResponseParseError("schema", raw=json.dumps(bad))
        return reply

    client = FakeClient(raw_bad)
    out = run(classify_texts(["refund", "crash"], client, ClassifySpec("t", LABELS, batch_size=2)))
    assert out == [("billing", None), ("technical", None)]
    assert client.calls[1:] == [["crash"]]


def test_api_error_is_final_for_its_rows() -> None:
    def fail_first(call: int, rows: Any, reply: Any) -> Any:
        return LLMError("500 after 7 tries", status=500, attempts=7) if call == 1 else reply

    client = FakeClient(fail_first)
    out = run(classify_texts(["a", "b", "refund"], client, ClassifySpec("t", LABELS, batch_size=2)))
    assert out[:2] == [(None, "api_error: 500 after 7 tries")] * 2
    assert out[2] == ("billing", None)


def test_budget_stop_keeps_answered_rows() -> None:
    def budget(call: int, rows: Any, reply: Any) -> Any:
        return BudgetExceededError("calls", 2, 2) if call > 2 else reply

    client = FakeClient(budget)
    texts = [f"refund {i}" for i in range(10)]
    out = run(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=2)))
    answered = [r for r in out if r[1] is None]
    stopped = [r for r in out if r[1] is not None]
    assert len(answered) == 4 and all(v == "billing" for v, _ in answered)
    assert len(stopped) == 6 and all(str(e).startswith("budget_exceeded") for _, e in stopped)


def test_single_row_schema_and_map_types() -> None:
    class MapClient:
        async def json(self, messages, schema, *, name, max_tokens=None, prompt_version=None):  # type: ignore[no-untyped-def]
            assert "results" not in schema["properties"]
            text = _rows(messages)[0]["text"]
            return {"value": len(text.split()) if text != "bad" else "three"}, None

    spec = MapSpec("t", "count words", output_type="integer", batch_size=1)
    out = run(llm_map_texts(["a b", "bad", "a b c"], MapClient(), spec))
    assert out[0] == (2, None) and out[2] == (3, None)
    assert out[1][0] is None and str(out[1][1]).startswith("parse_error")


def test_progress_counts_every_row_once() -> None:
    seen: list[tuple[int, int]] = []
    texts = ["refund", None, "refund", "crash", ""]
    run(apply_texts(texts, FakeClient(), ClassifySpec("t", LABELS, batch_size=1),
                    progress=lambda rows, failed: seen.append((rows, failed))))
    assert sum(r for r, _ in seen) == len(texts)
    assert sum(f for _, f in seen) == 2


class SlowClient(FakeClient):
    """A FakeClient that says its concurrency limit and records how many calls overlap."""

    def __init__(self, max_concurrency: int, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.config = type("Config", (), {"max_concurrency": max_concurrency})()
        self.fail_on_call = fail_on_call
        self.open = 0
        self.peak = 0

    async def json(self, messages, schema, *, name, max_tokens=None, prompt_version=None):  # type: ignore[no-untyped-def]
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await asyncio.sleep(0.001)
            if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
                self.calls.append([])
                raise RuntimeError("a bug in the client")
            return await super().json(messages, schema, name=name)
        finally:
            self.open -= 1


def test_batches_are_worked_by_a_bounded_pool_in_input_order() -> None:
    texts = [f"refund {i}" if i % 3 else f"crash {i}" for i in range(400)]
    client = SlowClient(max_concurrency=3)
    out = run(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=4)))
    assert out == [(_truth(t), None) for t in texts]
    assert len(client.calls) == 100
    assert client.peak == 6  # twice the client's limit, not one task per batch
    assert [call[0] for call in client.calls] == texts[::4]  # sent in input order


def test_a_client_bug_fails_the_call_and_every_waiter_sharing_the_memo() -> None:
    from rlm_pipeline.ops.core import Memo

    texts = [f"refund {i}" for i in range(40)]
    client = SlowClient(max_concurrency=2, fail_on_call=3)

    async def both() -> list[Any]:
        memo = Memo()
        first = asyncio.ensure_future(classify_texts(texts, client, ClassifySpec("t", LABELS, batch_size=2), memo=memo))
        await asyncio.sleep(0)
        # the same texts again: they wait on the first call's answers
        second = classify_texts(texts[::-1], client, ClassifySpec("t", LABELS, batch_size=2), memo=memo)
        return list(await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 10))

    first, second = run(both())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert len(client.calls) < 20  # the pool stopped taking batches
