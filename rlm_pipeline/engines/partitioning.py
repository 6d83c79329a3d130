"""What both engines agree on when partitioning: limits, labels and chunk arithmetic.

A partition by key labels each row with its key rendered as text (nulls as
:data:`NULL_PARTITION`).  A partition into ``n`` chunks numbers the rows in
their order ``0 .. N-1`` and puts row ``r`` into chunk ``r * k // N`` with
``k = min(n, N)``: contiguous, balanced (sizes differ by at most one) and
computable on both engines without moving rows.

Numbering rows needs a fixed order, which a GROUP BY, DISTINCT or join view
does not promise from one run to the next; so both engines materialise the
numbered rows once when the chunk partition is made (Polars: a collected
DataFrame; Spark: ``localCheckpoint``), and every later filter of the
partition view sees the same assignment.  Key partitions need no such step:
the key is a deterministic function of the row (the allow list has no
random or time functions), so a row's partition never depends on the order.
"""

from __future__ import annotations

from rlm_pipeline.errors import InputError

__all__ = [
    "MAX_HEAD_ROWS",
    "MAX_PARTITIONS",
    "NULL_PARTITION",
    "PARTITION_COLUMN",
    "check_head_rows",
    "check_partition_args",
    "chunk_count",
    "chunk_label",
    "chunk_sizes",
    "too_many_partitions",
]

#: Name of the column :meth:`Engine.partition` adds.
PARTITION_COLUMN = "partition"
#: Label of the rows whose partition key is NULL.
NULL_PARTITION = "(null)"
#: Most partitions one call may create.
MAX_PARTITIONS = 1000
#: Most rows ``head`` returns.
MAX_HEAD_ROWS = 20


def check_head_rows(n: object) -> int:
    """``n`` clipped to :data:`MAX_HEAD_ROWS`; :class:`InputError` unless a non-negative int.

    Examples
    --------
    >>> check_head_rows(5), check_head_rows(500)
    (5, 20)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        msg = f"n must be a non-negative integer (at most {MAX_HEAD_ROWS}), got {n!r}"
        raise InputError(msg)
    return min(n, MAX_HEAD_ROWS)


def check_partition_args(by: object, n: object) -> None:
    """Exactly one of ``by`` (non-empty text) and ``n`` (1 .. :data:`MAX_PARTITIONS`).

    Examples
    --------
    >>> check_partition_args(None, 4)
    >>> check_partition_args("user_id", 4)
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: partition takes either by (a column or expression) or n (a number of chunks), not both
    """
    if by is not None and n is not None:
        msg = (
            "partition takes either by (a column or expression) or n (a number of chunks), not both"
        )
        raise InputError(msg)
    if by is None and n is None:
        msg = "partition needs by (a column or expression) or n (a number of chunks)"
        raise InputError(msg)
    if by is not None and (not isinstance(by, str) or not by.strip()):
        msg = f"by must be a column name or SQL expression, got {by!r}"
        raise InputError(msg)
    if n is not None and (
        isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PARTITIONS
    ):
        msg = f"n must be an integer from 1 to {MAX_PARTITIONS}, got {n!r}"
        raise InputError(msg)


def chunk_count(n: int, rows: int) -> int:
    """Chunks actually made: ``min(n, rows)`` (no empty chunks)."""
    return min(n, rows)


def chunk_label(index: int, chunks: int) -> str:
    """Zero-padded label, so labels sort like numbers.

    Examples
    --------
    >>> chunk_label(3, 12)
    '03'
    """
    return str(index).zfill(len(str(max(chunks - 1, 0))))


def chunk_sizes(rows: int, chunks: int) -> dict[str, int]:
    """Rows per chunk when ``rows`` rows go into ``chunks`` chunks (row r -> r*chunks//rows).

    Examples
    --------
    >>> chunk_sizes(10, 3)
    {'0': 4, '1': 3, '2': 3}
    """
    sizes: dict[str, int] = {}
    for i in range(chunks):
        start = -(-i * rows // chunks)
        stop = -(-(i + 1) * rows // chunks)
        sizes[chunk_label(i, chunks)] = stop - start
    return sizes


def too_many_partitions(by: str) -> InputError:
    """The error for a key with more than :data:`MAX_PARTITIONS` distinct values."""
    msg = (
        f"partition by {by[:100]!r} makes more than {MAX_PARTITIONS} partitions; "
        "use a coarser key or n=<number of chunks>"
    )
    return InputError(msg)
