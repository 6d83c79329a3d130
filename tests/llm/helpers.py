"""Request builders shared by the client tests (classification prompts the simulator reads)."""

from __future__ import annotations

import json
from typing import Any

from rlm_pipeline.llm.retry import RetryPolicy

LABELS = ["billing", "technical", "account", "other"]
LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"enum": LABELS}},
    "required": ["label"],
    "additionalProperties": False,
}
TOPICS = [
    "I was charged twice this month, please refund me",
    "The app crashes when I open settings",
    "How do I change the email on my account?",
    "Do you have an office in Lisbon?",
    "My invoice shows the wrong amount",
    "Login page shows error 500 after the update",
]

#: Fast retries so fault tests take well under a second of backoff.
FAST_RETRY = RetryPolicy(
    max_retries=12, base_delay_s=0.002, max_delay_s=0.02, max_retry_after_s=0.02
)


def ticket(i: int) -> str:
    """A distinct ticket text (so no two requests are identical)."""
    return f"{TOPICS[i % len(TOPICS)]} (ticket {i})"


def classify_messages(text: str) -> list[dict[str, Any]]:
    """One-row classification request in the wire format of docs/internals.md."""
    return [
        {
            "role": "system",
            "content": "You are a classifier. Give each row one label from: " + ", ".join(LABELS),
        },
        {
            "role": "user",
            "content": "Classify the row.\nRows:\n" + json.dumps({"id": 0, "text": text}),
        },
    ]
