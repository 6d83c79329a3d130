from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_pipeline.engines.partitioning import chunk_count, chunk_label, chunk_sizes


@settings(deadline=None)  # shared, loaded CI cores: no per-example deadline
@given(st.integers(0, 5000), st.integers(1, 1000))
def test_chunk_sizes_are_the_sizes_of_row_to_chunk(rows: int, n: int) -> None:
    chunks = chunk_count(n, rows)
    sizes = chunk_sizes(rows, chunks)
    counted: dict[str, int] = {}
    for r in range(rows):
        label = chunk_label(r * chunks // rows, chunks)
        counted[label] = counted.get(label, 0) + 1
    assert sizes == counted
    assert sum(sizes.values()) == rows
    if rows:
        assert max(sizes.values()) - min(sizes.values()) <= 1
        assert min(sizes.values()) >= 1
    assert list(sizes) == sorted(sizes)


def test_chunk_labels_sort_like_numbers() -> None:
    assert [chunk_label(i, 11) for i in (0, 9, 10)] == ["00", "09", "10"]
    assert chunk_label(0, 1) == "0"
