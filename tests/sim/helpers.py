"""Helpers for simulator tests: our wire format and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import httpx2

TICKET_LABELS = ["billing", "technical", "account", "other"]


def batch_schema(labels: Sequence[str] = TICKET_LABELS) -> dict[str, Any]:
    """Our classify batch reply schema."""
    return {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "label": {"enum": list(labels)}},
                    "required": ["id", "label"],
                },
            }
        },
        "required": ["results"],
    }


def map_batch_schema(output_type: str) -> dict[str, Any]:
    """Our llm_map batch reply schema."""
    return {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "value": {"type": output_type}},
                    "required": ["id", "value"],
                },
            }
        },
        "required": ["results"],
    }


def rows_messages(texts: Sequence[str], *, instruction: str | None = None,
                  labels: Sequence[str] = TICKET_LABELS) -> list[dict[str, Any]]:
    """System + user messages in our wire format (``Rows:`` JSON lines)."""
    rows = "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(texts))
    head = f"Instruction: {instruction}\n" if instruction else "Classify each row.\n"
    system = (
        "You transform rows." if instruction
        else f"You are a classifier. Labels: {', '.join(labels)}."
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{head}Rows:\n{rows}"},
    ]


def json_schema_format(schema: dict[str, Any], name: str = "reply") -> dict[str, Any]:
    """``response_format`` of type json_schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


@lru_cache(maxsize=1)
def _http() -> httpx2.Client:
    return httpx2.Client(trust_env=False, verify=False, timeout=10)


def raw_post(sim: Any, body: dict[str, Any], **headers: str) -> httpx2.Response:
    """POST a chat completion with plain httpx2 (to see statuses and headers as sent)."""
    return _http().post(f"{sim.base_url}/chat/completions", json=body, headers=headers)
