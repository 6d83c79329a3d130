"""Ground truth from the hidden ``true_label``, computed independently of the planner."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

#: The users of the demo question.
USERS = (12345, 67890, 11111)


def truth_frame(
    frame: pl.DataFrame,
    users: tuple[int, ...] | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> pl.DataFrame:
    """Rows of ``frame`` matching the users and dates (the hidden labels kept)."""
    out = frame
    if users:
        out = out.filter(pl.col("user_id").is_in(list(users)))
    if date_from is not None:
        out = out.filter(pl.col("date").is_between(date_from, date_to or date_from))
    return out


def label_count(frame: pl.DataFrame, label: str, **where: Any) -> int:
    """How many matching rows have ``true_label == label``."""
    return truth_frame(frame, **where).filter(pl.col("true_label") == label).height


def per_user(frame: pl.DataFrame, label: str, users: tuple[int, ...]) -> dict[str, int]:
    """``{user id: rows with that label}`` for each of ``users`` (zeros included)."""
    sub = truth_frame(frame, users=users).filter(pl.col("true_label") == label)
    counts = dict(sub.group_by("user_id").len().iter_rows())
    return {str(u): int(counts.get(u, 0)) for u in users}


def most_common(frame: pl.DataFrame, *, least: bool = False, **where: Any) -> str:
    """The most (or least) common true label among matching rows; ties by name."""
    counts = truth_frame(frame, **where).group_by("true_label").len().rows()
    key = (lambda r: (r[1], r[0])) if least else (lambda r: (-r[1], r[0]))
    return str(sorted(counts, key=key)[0][0])
