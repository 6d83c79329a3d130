"""The library's own reads of a view: exact, uncut, bounded by an explicit maximum.

:meth:`Engine.head` is the *model's* preview: at most
:data:`~rlm_pipeline.engines.partitioning.MAX_HEAD_ROWS` rows, each text cell cut
to ~200 characters.  Whatever the library reads for itself -- the keys ``recurse``
fans out over, the label counts ``classify`` reports -- must not go through it: a
capped read silently drops the 21st key, and a cut key no longer matches its own
rows.  Those reads use :meth:`Engine.value_counts` (an aggregation in the engine:
one row per distinct value, never the rows themselves) and
:meth:`Engine.filter_value` (an exact, null-safe match on one value, with no SQL
text in between).

Examples
--------
>>> import polars as pl
>>> from rlm_pipeline.engines import open_engine
>>> eng = open_engine(pl.DataFrame({"k": ["b", None, "a", "b"]}))
>>> counts = eng.value_counts("context", "k", max_values=10)
>>> counts.pairs(), counts.distinct, counts.complete
([(None, 1), ('a', 1), ('b', 2)], 3, True)
>>> eng.filter_value("context", "k", "b", "only_b")
>>> eng.count("only_b")
2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rlm_pipeline.errors import InputError

__all__ = ["MAX_VALUE_COUNTS", "ValueCounts", "check_max_values", "value_counts_of"]

#: Most distinct values one :meth:`Engine.value_counts` call may return (driver memory).
MAX_VALUE_COUNTS = 100_000


@dataclass(frozen=True)
class ValueCounts:
    """The distinct values of one column with their row counts.

    Attributes
    ----------
    values
        The distinct values, in the column's own Arrow type (strings never cut), sorted
        ascending with the null value (if any) first; at most ``max_values`` of them.
    counts
        Rows per value, aligned with ``values``.
    distinct
        How many distinct values the column has in all (the null value counts as one),
        exact also when it is more than ``max_values``.

    Examples
    --------
    >>> vc = ValueCounts(pa.array(["a", "b"]), (3, 1), 5)
    >>> vc.complete, vc.pairs()
    (False, [('a', 3), ('b', 1)])
    """

    values: pa.Array
    counts: tuple[int, ...]
    distinct: int

    @property
    def complete(self) -> bool:
        """Whether every distinct value is in :attr:`values`."""
        return len(self.values) == self.distinct

    @property
    def rows(self) -> int:
        """Rows covered by :attr:`values` (all rows of the view when :attr:`complete`)."""
        return sum(self.counts)

    def pairs(self) -> list[tuple[Any, int]]:
        """``[(value as a Python object, rows), ...]`` in :attr:`values` order."""
        return list(zip(self.values.to_pylist(), self.counts, strict=True))

    def count_of(self, value: Any) -> int:
        """Rows whose value is ``value`` (0 if it is not among :attr:`values`).

        Examples
        --------
        >>> ValueCounts(pa.array([None, "x"]), (4, 1), 2).count_of(None)
        4
        """
        return next((n for v, n in self.pairs() if v == value or (v is None and value is None)), 0)


def check_max_values(max_values: object) -> int:
    """``max_values`` if it is an int from 1 to :data:`MAX_VALUE_COUNTS`, else :class:`InputError`.

    Examples
    --------
    >>> check_max_values(64)
    64
    """
    if (
        isinstance(max_values, bool)
        or not isinstance(max_values, int)
        or not 1 <= max_values <= MAX_VALUE_COUNTS
    ):
        msg = f"max_values must be an integer from 1 to {MAX_VALUE_COUNTS}, got {max_values!r}"
        raise InputError(msg)
    return max_values


def value_counts_of(
    table: pa.Table, column: str, count_column: str, max_values: int, distinct: int
) -> ValueCounts:
    """A :class:`ValueCounts` from the first ``max_values`` rows of a sorted group table."""
    from rlm_pipeline.engines.cells import normalize_arrow

    table = normalize_arrow(table.select([column, count_column]).slice(0, max_values))
    values = table.column(column).combine_chunks()
    counts = tuple(int(n) for n in table.column(count_column).to_pylist())
    return ValueCounts(values, counts, distinct)
