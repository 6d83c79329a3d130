"""A scripted model behind the real :class:`LLMClient` (in-process ``httpx2.MockTransport``).

The operators' unit tests use it instead of a fake client: the client's cache,
meter, ``accept`` and retries all run as in production.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2

from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.retry import RetryPolicy
from rlm_pipeline.llm.structured import remember_mode

FAST = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.002)
Spoil = Callable[[int, list[dict[str, Any]], Any], Any]


def rows_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``{"id", "text"}`` rows of an operator request (``0:"text"`` lines, or JSON objects)."""
    lines = messages[-1]["content"].split("Rows:\n", 1)[1].splitlines()
    rows = []
    for line in lines:
        if line.startswith("{"):
            rows.append(json.loads(line))
        else:
            row_id, text = line.split(":", 1)
            rows.append({"id": int(row_id), "text": json.loads(text)})
    return rows


def truth(text: str) -> str:
    """The label the scripted model gives ``text``."""
    return "billing" if "refund" in text else "technical" if "crash" in text else "other"


def label_reply(rows: list[dict[str, Any]], schema: dict[str, Any]) -> Any:
    """A correct classify reply (batch or single-row schema)."""
    if "results" in schema["properties"]:
        return {"results": [{"id": r["id"], "label": truth(r["text"])} for r in rows]}
    return {"label": truth(rows[0]["text"])}


class Model:
    """Plays the model: answers every request's rows, unless ``spoil`` changes the reply.

    ``spoil(call_number, rows, reply)`` returns the reply object to send, a
    string (sent as the raw content) or an ``httpx2.Response`` (sent as is).
    """

    def __init__(
        self,
        spoil: Spoil | None = None,
        answer: Callable[[list[dict[str, Any]], dict[str, Any]], Any] = label_reply,
        delay_s: float = 0.0,
    ) -> None:
        self.spoil = spoil
        self.answer = answer
        self.delay_s = delay_s
        self.calls: list[list[str]] = []
        self.open = 0
        self.peak = 0
        self.peak_tasks = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        rows = rows_of(body["messages"])
        self.calls.append([r["text"] for r in rows])
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.peak_tasks = max(self.peak_tasks, len(asyncio.all_tasks()))
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.open -= 1
        reply = self.answer(rows, body["response_format"]["json_schema"]["schema"])
        if self.spoil is not None:
            reply = self.spoil(len(self.calls), rows, reply)
        if isinstance(reply, httpx2.Response):
            return reply
        content = reply if isinstance(reply, str) else json.dumps(reply)
        return httpx2.Response(
            200,
            json={
                "choices": [
                    {"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            },
        )


def run_with(
    model: Model,
    make: Callable[[LLMClient], Any],
    *,
    max_concurrency: int = 8,
    cache_path: str | None = None,
    **client_args: Any,
) -> Any:
    """Run ``make(client)`` with a real client whose transport is ``model``."""

    # The model answers json_schema: say so, as a probe (its first call leading) would
    # reorder the first sends, and the tests must not depend on an earlier test's probe.
    remember_mode("http://127.0.0.1:9/v1", "m", "json_schema")

    async def main() -> Any:
        llm = LLM(
            model="m",
            base_url="http://127.0.0.1:9/v1",
            api_key="k",
            max_concurrency=max_concurrency,
            cache_path=cache_path,
        )
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(model))
        try:
            async with LLMClient(llm, http_client=http, retry=FAST, **client_args) as client:
                return await make(client)
        finally:
            await http.aclose()

    return asyncio.run(main())
