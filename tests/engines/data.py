"""Test tables for the engine suite, and helpers to compare rows across engines."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

QUESTIONS = [
    "I was charged twice on my invoice",
    "The app crashes when I upload a file",
    "How do I reset my password?",
    "Ünïcödé: refund, please — 退款",
    'Comma, and "quotes" inside',
    None,
    "x" * 450,
    "Where is my refund for order 17?",
]


def tickets(rows: int = 64) -> pl.DataFrame:
    """A deterministic tickets table with nulls, unicode, long text, dates and floats."""
    ids = list(range(rows))
    return pl.DataFrame(
        {
            "ticket_id": ids,
            "user_id": [None if i % 13 == 5 else (i * 7) % 9 for i in ids],
            "question": [QUESTIONS[i % len(QUESTIONS)] for i in ids],
            "score": [None if i % 11 == 3 else round((i * 37 % 100) / 100, 2) for i in ids],
            "urgent": [i % 3 == 0 for i in ids],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 40) for i in ids],
        },
        schema={
            "ticket_id": pl.Int64,
            "user_id": pl.Int64,
            "question": pl.String,
            "score": pl.Float64,
            "urgent": pl.Boolean,
            "day": pl.Date,
        },
    )


TICKETS_SCHEMA = {
    "ticket_id": "int64",
    "user_id": "int64",
    "question": "string",
    "score": "float64",
    "urgent": "bool",
    "day": "date",
}


def users() -> pl.DataFrame:
    """Users 0..9 with a region (user 9 has none; user 0 appears in no ticket? no: it does)."""
    return pl.DataFrame(
        {
            "user_id": list(range(10)),
            "region": ["eu", "us", "eu", "apac", None, "us", "eu", "us", "apac", "eu"],
        }
    )


def norm(value: Any) -> Any:
    """A value in a form both engines agree on (naive UTC datetimes, rounded floats)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def rows_of(table: pa.Table | pl.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as tuples of normalised values, in table order."""
    if isinstance(table, pl.DataFrame):
        table = table.to_arrow()
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(norm(v) for v in row) for row in zip(*columns, strict=True)]


def _sort_key(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in row)


def sorted_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows as a sorted list (a multiset comparison), NULLs last."""
    return sorted((tuple(norm(v) for v in r) for r in rows), key=_sort_key)
