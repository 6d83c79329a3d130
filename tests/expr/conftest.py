"""Fixtures for the expression tests: a small typed table with NULLs, non-ASCII
text and quotes."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest


def make_typed_table() -> pa.Table:
    """Eight rows covering NULLs, negatives, non-ASCII, quotes, backslashes, newlines."""
    return pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.int64()),
            "n": pa.array([-7, 0, 3, None, 12, 7, -2, 100], pa.int64()),
            "x": pa.array([2.5, -2.5, 0.0, None, 1.25, 3.75, -0.5, 10.0], pa.float64()),
            "s": pa.array(
                ["Apple", "banana", "a_b%c", None, "Ünïcödé 日本", "it's", "back\\slash", "a\nb"],
                pa.string(),
            ),
            "b": pa.array([True, False, None, True, False, True, None, False], pa.bool_()),
            "d": pa.array(
                [
                    dt.date(2024, 1, 31),
                    dt.date(2023, 12, 1),
                    None,
                    dt.date(2024, 2, 29),
                    dt.date(2020, 6, 15),
                    dt.date(2024, 1, 1),
                    dt.date(1999, 12, 31),
                    dt.date(2024, 3, 1),
                ],
                pa.date32(),
            ),
        }
    )


@pytest.fixture(scope="session")
def typed_table() -> pa.Table:
    return make_typed_table()
