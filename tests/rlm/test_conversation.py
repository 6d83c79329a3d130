"""The root conversation stays under its prompt budget and stays a valid chat."""

from __future__ import annotations

import json

from rlm_pipeline.llm.tokens import estimate_message_tokens
from rlm_pipeline.rlm.conversation import Conversation


def _step(conv: Conversation, i: int, result_chars: int) -> None:
    call = {
        "id": f"c{i}",
        "type": "function",
        "function": {"name": "peek", "arguments": json.dumps({"view": "context", "n": 5})},
    }
    conv.add({"role": "assistant", "content": None, "tool_calls": [call]})
    conv.extend_last({"role": "tool", "tool_call_id": f"c{i}", "content": "r" * result_chars})


def test_small_conversation_is_sent_unchanged() -> None:
    conv = Conversation("system", "first", budget_tokens=6000)
    _step(conv, 0, 100)
    messages = conv.messages_for_call(0)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[3]["content"] == "r" * 100


def test_long_conversation_is_compacted_under_budget_and_valid() -> None:
    conv = Conversation("system", "question and metadata", budget_tokens=3000)
    for i in range(200):
        _step(conv, i, 2000)
        messages = conv.messages_for_call(500)
        assert estimate_message_tokens(messages) + 500 <= 3000
        assert messages[0]["content"] == "system"
        assert messages[1]["content"] == "question and metadata"
        open_calls: set[str] = set()
        for message in messages[2:]:
            if message["role"] == "assistant":
                open_calls = {c["id"] for c in message.get("tool_calls", [])}
            elif message["role"] == "tool":
                assert message["tool_call_id"] in open_calls
    assert conv.omitted > 150
    assert "omitted" in messages[2]["content"]
    # the latest result is never shortened
    assert messages[-1]["content"] == "r" * 2000
