"""Synthetic customer-support tickets with a hidden ground-truth label.

The generator is vectorised (NumPy draws, Polars gathers), deterministic in
its seed, and makes a million rows in about a second.  Texts come from
per-label templates (see :mod:`rlm_pipeline.datasets.templates`), wrapped in
label-neutral greetings, reference numbers and sign-offs; about 3% of rows repeat an earlier
ticket word for word, as real support queues do.
"""

from __future__ import annotations

import itertools
import string
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from rlm_pipeline.datasets.templates import (
    FILLERS,
    GREETINGS,
    LABEL_WEIGHTS,
    SIGNOFFS,
    TEMPLATES,
)
from rlm_pipeline.errors import InputError

__all__ = ["KNOWN_USERS", "LABELS", "TICKETS_SCHEMA", "tickets", "write_tickets"]

#: The labels of ``true_label``, in a fixed order.
LABELS: tuple[str, ...] = tuple(LABEL_WEIGHTS)

#: Users that always have several tickets when ``n >= 1000`` (the demo asks about them).
KNOWN_USERS: tuple[int, ...] = (12345, 67890, 11111)

#: Arrow schema of the tickets table (what :func:`write_tickets` writes).
TICKETS_SCHEMA = pa.schema(
    [
        pa.field("ticket_id", pa.int64(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("true_label", pa.string(), nullable=False),
    ]
)

_REPEAT_SHARE = 0.03
_REF_SHARE = 0.3  # share of tickets quoting a reference number (more distinct texts)
_FIRST_DAY_2024 = 19723  # days since 1970-01-01
_DAYS_IN_2024 = 366
_USER_BASE = 100_000
_USER_SPAN = 900_000
_USER_STRIDE = 7919  # prime, coprime with _USER_SPAN: ranks map to distinct ids


def _expand(template: str) -> list[str]:
    slots = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    if not slots:
        return [template]
    choices = [FILLERS[slot] for slot in slots]
    texts = [
        template.format(**dict(zip(slots, combo, strict=True)))
        for combo in itertools.product(*choices)
    ]
    return [text[:1].upper() + text[1:] for text in texts]


@lru_cache(maxsize=1)
def _body_pool() -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """All template expansions, grouped by label: (bodies, offsets, sizes)."""
    bodies: list[str] = []
    offsets, sizes = [], []
    for label in LABELS:
        expanded = [text for template in TEMPLATES[label] for text in _expand(template)]
        offsets.append(len(bodies))
        sizes.append(len(expanded))
        bodies.extend(expanded)
    return pl.Series("body", bodies, dtype=pl.String), np.array(offsets), np.array(sizes)


def tickets(n: int, seed: int = 0) -> pl.DataFrame:
    """Make ``n`` synthetic support tickets.

    Parameters
    ----------
    n
        Number of rows (``ticket_id`` runs from 1 to ``n``).
    seed
        Random seed; the same ``(n, seed)`` always gives the same frame.

    Returns
    -------
    pl.DataFrame
        Columns ``ticket_id`` (Int64), ``date`` (Date, within 2024, rising with
        ``ticket_id``), ``user_id`` (Int64, skewed: a few users write a lot),
        ``question`` (String) and ``true_label`` (String: billing, technical,
        account or other; hidden ground truth for scoring only).  Users 12345,
        67890 and 11111 have several tickets each whenever ``n >= 1000``.

    Examples
    --------
    >>> df = tickets(1000, seed=1)
    >>> df.columns
    ['ticket_id', 'date', 'user_id', 'question', 'true_label']
    >>> df.filter(pl.col("user_id") == 12345).height >= 3
    True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        msg = f"n must be a non-negative integer, got {n!r}"
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    bodies, offsets, sizes = _body_pool()
    weights = np.array([LABEL_WEIGHTS[label] for label in LABELS])

    label_idx = rng.choice(len(LABELS), size=n, p=weights / weights.sum())
    body_idx = offsets[label_idx] + (rng.random(n) * sizes[label_idx]).astype(np.int64)
    greet_idx = rng.integers(0, len(GREETINGS), size=n)
    sign_idx = rng.integers(0, len(SIGNOFFS), size=n)
    ref_no = np.where(rng.random(n) < _REF_SHARE, rng.integers(10_000, 100_000, size=n), 0)

    # Some tickets repeat an earlier one word for word.
    source = np.arange(n)
    repeats = np.flatnonzero(rng.random(n) < _REPEAT_SHARE)
    repeats = repeats[repeats > 0]
    source[repeats] = (rng.random(repeats.size) * repeats).astype(np.int64)
    label_idx, body_idx = label_idx[source], body_idx[source]
    greet_idx, sign_idx, ref_no = greet_idx[source], sign_idx[source], ref_no[source]

    days = np.sort(rng.integers(0, _DAYS_IN_2024, size=n)) + _FIRST_DAY_2024

    pool = min(_USER_SPAN, max(20, n // 6))
    rank = (pool * rng.random(n) ** 3).astype(np.int64)
    user_id = _USER_BASE + (rank * _USER_STRIDE) % _USER_SPAN
    per_known = 0 if n < 12 else 3 if n < 1000 else max(5, n // 2000)
    if per_known:
        slots = rng.choice(n, size=per_known * len(KNOWN_USERS), replace=False)
        user_id[slots] = np.repeat(np.array(KNOWN_USERS), per_known)

    refs = pl.Series(ref_no)
    ref_text = pl.select(
        pl.when(refs > 0).then(pl.lit(" (ref #") + refs.cast(pl.String) + pl.lit(")"))
        .otherwise(pl.lit(""))
    ).to_series()
    question = (
        pl.Series(GREETINGS, dtype=pl.String).gather(greet_idx)
        + bodies.gather(body_idx)
        + ref_text
        + pl.Series(SIGNOFFS, dtype=pl.String).gather(sign_idx)
    )
    return pl.DataFrame(
        {
            "ticket_id": pl.Series(np.arange(1, n + 1, dtype=np.int64)),
            "date": pl.Series(days.astype(np.int32)).cast(pl.Date),
            "user_id": pl.Series(user_id.astype(np.int64)),
            "question": question,
            "true_label": pl.Series(LABELS, dtype=pl.String).gather(label_idx),
        }
    )


def write_tickets(path: str | Path, n: int, seed: int = 0) -> Path:
    """Write :func:`tickets` ``(n, seed)`` to a Parquet file with :data:`TICKETS_SCHEMA`.

    Parent directories are created.  Returns the path written.

    Examples
    --------
    >>> import tempfile, pyarrow.parquet as pq
    >>> out = write_tickets(Path(tempfile.mkdtemp()) / "t.parquet", 10)
    >>> pq.read_schema(out).names[:2]
    ['ticket_id', 'date']
    """
    import pyarrow.parquet as pq

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        table = tickets(n, seed).to_arrow().cast(TICKETS_SCHEMA)
        pq.write_table(table, target)
    except OSError as exc:
        msg = f"cannot write tickets to {target}: {exc}"
        raise InputError(msg) from exc
    return target
