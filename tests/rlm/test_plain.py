"""Plain calls over inlined rows: chunking to the prompt budget and reply values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_pipeline.llm.tokens import estimate_tokens
from rlm_pipeline.rlm.plain import chunk_lines, parse_value


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=900), max_size=60), st.integers(16, 400))
def test_chunks_keep_order_and_budget(lines: list[str], budget: int) -> None:
    chunks = chunk_lines(lines, budget)
    assert sum(len(c) for c in chunks) == len(lines)
    for chunk in chunks:
        assert sum(estimate_tokens(line + "\n") for line in chunk) <= budget or len(chunk) == 1
        for line in chunk:
            assert estimate_tokens(line + "\n") <= budget + 1
    flat = [line for c in chunks for line in c]
    for original, packed in zip(lines, flat, strict=True):
        assert packed == original or packed.endswith("…")


def test_parse_value() -> None:
    assert parse_value("7") == 7
    assert parse_value(" 2.5 ") == 2.5
    assert parse_value('{"a": 1}') == {"a": 1}
    assert parse_value("billing") == "billing"
    assert parse_value("the answer is 42") == "the answer is 42"
