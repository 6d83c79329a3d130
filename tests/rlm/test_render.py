"""Bounded renderings: no tool result can exceed its limit, whatever the data."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_pipeline.rlm.render import MAX_RESULT_CHARS, bound, cut, rows_as_json_lines


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=3000), min_size=0, max_size=40))
def test_rows_are_bounded_and_cells_cut(texts: list[str]) -> None:
    table = pa.table({"t": texts, "n": list(range(len(texts)))})
    out = rows_as_json_lines(table)
    assert len(out) <= MAX_RESULT_CHARS
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            assert len(row["t"]) <= 200


def test_rows_render_dates_and_nulls() -> None:
    table = pa.table({"d": [dt.date(2024, 3, 1)], "x": [None]})
    assert rows_as_json_lines(table) == '{"d": "2024-03-01", "x": null}'


def test_bound_and_cut() -> None:
    text = "\n".join("x" * 50 for _ in range(100))
    assert len(bound(text, 500)) <= 500
    assert bound(text, 500).endswith("…")
    assert cut("abcdef", 3) == "ab…"
    assert cut("abc", 3) == "abc"
