from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_pipeline.engines.cells import normalize_arrow, truncate_cells


@settings(deadline=None)  # shared, loaded CI cores: no per-example deadline
@given(st.lists(st.one_of(st.none(), st.text(max_size=400)), max_size=20), st.integers(1, 300))
def test_truncate_cells_bounds_every_cell(values: list[str | None], limit: int) -> None:
    out = truncate_cells(pa.table({"s": pa.array(values, pa.large_string())}), limit)
    got = out.column("s").to_pylist()
    assert out.schema.field("s").type == pa.string()
    for before, after in zip(values, got, strict=True):
        if before is None:
            assert after is None
        elif len(before) <= limit:
            assert after == before
        else:
            assert after is not None
            assert len(after) == limit and after.endswith("…")
            assert after[:-1] == before[: limit - 1]


def test_truncate_cells_renders_nested_and_binary_and_keeps_numbers() -> None:
    table = pa.table(
        {
            "n": [1, 2],
            "l": [[1] * 100, None],
            "b": pa.array([b"x" * 300, b"ok"], pa.large_binary()),
        }
    )
    out = truncate_cells(table, 20)
    assert out.column("n").to_pylist() == [1, 2]
    assert out.column("l").to_pylist()[1] is None
    assert len(out.column("l").to_pylist()[0]) == 20
    assert len(out.column("b").to_pylist()[0]) == 20
    assert out.column("b").to_pylist()[1] == "b'ok'"


def test_truncate_cells_rejects_a_bad_limit() -> None:
    with pytest.raises(ValueError, match="limit must be >= 1"):
        truncate_cells(pa.table({"s": ["a"]}), 0)


def test_normalize_arrow_casts_view_and_large_types_only() -> None:
    table = pa.table(
        {
            "a": pa.array(["x"], pa.string_view()),
            "b": pa.array([b"y"], pa.large_binary()),
            "c": pa.array([1], pa.int32()),
        }
    )
    out = normalize_arrow(table)
    assert [f.type for f in out.schema] == [pa.string(), pa.binary(), pa.int32()]
    assert out.to_pylist() == [{"a": "x", "b": b"y", "c": 1}]
