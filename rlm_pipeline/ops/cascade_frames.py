"""The frame work of a cascade, on Polars and on Spark: sample, mark, combine, count.

The two passes' model calls go through ``Engine.map_frame`` (the probe and
the calibration sample are asked from the driver, in :mod:`rlm_pipeline.ops.cascade`);
what is left is plain column work on the result of the proxy's pass, which each
engine does natively (Spark: on the checkpointed pass, no model call is ever
repeated).  :func:`frames_for` picks the implementation by the engine's name (``Engine.name``).

The calibration sample is the ``n`` distinct texts with an answer and a
confidence whose ``sha256("<seed>:<text>")`` (hex) is smallest: a seeded
uniform sample of the distinct texts, the same on both engines (Spark's
``sha2`` and Python's ``hashlib`` agree).

Examples
--------
>>> import polars as pl
>>> frame = pl.DataFrame({"t": ["a", "b", "c"], "label": ["x", "y", "x"], "conf": [0.9, None, 0.4]})
>>> sorted(frames_for("polars").sample(frame, "t", "label", "conf", n=5, seed=0))
[('a', 'x', 0.9), ('c', 'x', 0.4)]
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rlm_pipeline.ops.stats import EMPTY_INPUT

__all__ = [
    "CascadeColumns",
    "CascadeFrames",
    "PolarsFrames",
    "frames_for",
    "sample_key",
    "smallest_rows",
]

#: Reasons of rows no model is asked about (the proxy's reason stands).
UNSENT_KINDS = (EMPTY_INPUT, "input_too_long")


def sample_key(seed: int, text: str) -> str:
    """The sampling key of ``text`` (smallest keys are sampled first).

    Examples
    --------
    >>> sample_key(0, "a")[:12]
    '9df3c5fab8ef'
    """
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


@dataclass(frozen=True)
class CascadeColumns:
    """The columns a cascade reads and writes.

    ``text``: the input column; ``value``/``error``: the operator's output
    columns (the proxy's pass writes them, the combination rewrites them);
    ``source``/``confidence``: the cascade's own; ``ask``/``oracle``/``oracle_error``:
    scratch columns of the oracle's pass (dropped at the end).
    """

    text: str
    value: str
    error: str
    source: str
    confidence: str
    ask: str = "__rlm_cascade_ask"
    oracle: str = "__rlm_cascade_oracle"
    #: The text as the sample's join key, and the sample's oracle answer (Polars' combine).
    key: str = "__rlm_cascade_key"
    sampled: str = "__rlm_cascade_sampled"

    @property
    def oracle_error(self) -> str:
        """The oracle pass's reason column."""
        return f"{self.oracle}_error"

    @property
    def scratch(self) -> tuple[str, ...]:
        """The scratch columns."""
        return (self.ask, self.oracle, self.oracle_error, self.key, self.sampled)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The columns a cascade adds, in order."""
        return (self.value, self.error, self.source, self.confidence)


class CascadeFrames(Protocol):
    """What a cascade needs of an engine's frames."""

    def columns(self, frame: Any) -> list[str]: ...

    def drop(self, frame: Any, names: Sequence[str]) -> Any: ...

    def sample(
        self, frame: Any, text: str, value: str, confidence: str, *, n: int, seed: int
    ) -> list[tuple[str, Any, float]]: ...

    def mark(
        self,
        frame: Any,
        cols: CascadeColumns,
        threshold: float | None,
        answered: Mapping[str, Any],
    ) -> Any: ...

    def combine(self, frame: Any, cols: CascadeColumns, answered: Mapping[str, Any]) -> Any: ...

    def counts(
        self, frame: Any, cols: CascadeColumns
    ) -> list[tuple[Any, str | None, str | None, int]]: ...

    def escalated(self, frame: Any, cols: CascadeColumns) -> int: ...


def frames_for(engine: str) -> CascadeFrames:
    """The implementation for the engine named ``engine`` (``Engine.name``, resolved once by
    :func:`~rlm_pipeline.engines.load.engine_for`: no second look at the frame's kind)."""
    frames: dict[str, type[CascadeFrames]] = {"polars": PolarsFrames, "spark": SparkFrames}
    return frames[engine]()


def _smallest(
    rows: Sequence[tuple[str, Any, float]], n: int, seed: int
) -> list[tuple[str, Any, float]]:
    keyed = sorted(rows, key=lambda row: sample_key(seed, row[0]))
    return keyed[:n]


def smallest_rows(
    rows: Iterable[tuple[Any, Any, Any]], n: int, seed: int
) -> list[tuple[str, Any, float]]:
    """The ``n`` distinct texts with the smallest sampling keys, each with its first row's answer.

    One pass over ``rows`` (``(text, value, confidence)``, in order) holding at most
    ``n`` of them: a text is kept at its first row, and a text once turned away (its
    key above the ``n`` smallest so far) can never come back, since that bound only
    falls.  The same rows as sorting the distinct texts by key and taking ``n``.

    Examples
    --------
    >>> rows = [("a", 1, 0.5), ("b", 2, 0.6), ("a", 3, 0.7), ("c", 4, 0.8), (None, 5, 0.9)]
    >>> smallest_rows(rows, 2, 0) == _smallest([rows[0], rows[1], rows[3]], 2, 0)
    True
    """
    heap: list[tuple[int, str]] = []  # (-key, text): the largest kept key on top
    kept: dict[str, tuple[str, Any, float]] = {}
    for text, value, conf in rows:
        if text is None or text in kept:
            continue
        key = int(sample_key(seed, text), 16)
        if len(heap) < n:
            heapq.heappush(heap, (-key, text))
        elif n > 0 and key < -heap[0][0]:
            _, dropped = heapq.heappushpop(heap, (-key, text))
            del kept[dropped]
        else:
            continue
        kept[text] = (text, value, float(conf))
    return sorted(kept.values(), key=lambda row: sample_key(seed, row[0]))


def _batch_rows(frame: Any, first_of: str) -> Iterator[tuple[Any, ...]]:
    """The rows of a ``LazyFrame``, read a batch at a time (each batch's first row per ``first_of``)."""
    for batch in frame.collect_batches(maintain_order=True):
        yield from batch.unique(subset=first_of, keep="first", maintain_order=True).iter_rows()


class PolarsFrames:
    """Polars ``DataFrame`` (the proxy's pass in memory) or ``LazyFrame`` (e.g. a scan of the
    pass streamed to Parquet: the sample is drawn batch by batch, the rest are expressions)."""

    def columns(self, frame: Any) -> list[str]:
        return list(frame.collect_schema().names())

    def drop(self, frame: Any, names: Sequence[str]) -> Any:
        present = set(self.columns(frame))
        return frame.drop([name for name in names if name in present])

    def sample(
        self, frame: Any, text: str, value: str, confidence: str, *, n: int, seed: int
    ) -> list[tuple[str, Any, float]]:
        import polars as pl

        rows = (
            frame.lazy()
            .filter(pl.col(confidence).is_not_null())
            .select(pl.col(text).cast(pl.String), value, confidence)
        )
        if isinstance(frame, pl.LazyFrame):  # a streamed pass: one batch at a time
            return smallest_rows(_batch_rows(rows, text), n, seed)
        first = rows.unique(subset=text, keep="first", maintain_order=True).collect().rows()
        return _smallest([(t, v, float(c)) for t, v, c in first if t is not None], n, seed)

    def mark(
        self,
        frame: Any,
        cols: CascadeColumns,
        threshold: float | None,
        answered: Mapping[str, Any],
    ) -> Any:
        import polars as pl

        text = pl.col(cols.text).cast(pl.String)
        unsent = pl.col(cols.error).str.starts_with(UNSENT_KINDS[0]) | pl.col(
            cols.error
        ).str.starts_with(UNSENT_KINDS[1])
        low = pl.col(cols.confidence).is_null()
        if threshold is not None:
            low = low | (pl.col(cols.confidence) < threshold)
        else:
            low = pl.lit(True)
        ask = ~text.is_in(list(answered)).fill_null(False) & ~unsent.fill_null(False) & low
        return frame.with_columns(pl.when(ask).then(text).otherwise(None).alias(cols.ask))

    def combine(self, frame: Any, cols: CascadeColumns, answered: Mapping[str, Any]) -> Any:
        import polars as pl

        text = pl.col(cols.text).cast(pl.String)
        dtype = frame.collect_schema()[cols.value]
        from_sample = text.is_in(list(answered)).fill_null(False)
        # The sample's answers by a left join on the text (a join streams; replace_strict
        # would make Polars read a streamed pass whole).
        sample = pl.DataFrame(
            {cols.key: list(answered), cols.sampled: list(answered.values())},
            schema={cols.key: pl.String, cols.sampled: dtype},
        )
        frame = frame.with_columns(text.alias(cols.key)).join(
            sample.lazy() if isinstance(frame, pl.LazyFrame) else sample,
            on=cols.key,
            how="left",
            maintain_order="left",
        )
        sample_value = pl.col(cols.sampled)
        asked = pl.col(cols.ask).is_not_null()
        unsent = pl.col(cols.error).str.starts_with(UNSENT_KINDS[0]) | pl.col(
            cols.error
        ).str.starts_with(UNSENT_KINDS[1])
        value = (
            pl.when(from_sample)
            .then(sample_value)
            .when(asked)
            .then(pl.col(cols.oracle).cast(dtype))
            .otherwise(pl.col(cols.value))
        )
        error = (
            pl.when(from_sample)
            .then(pl.lit(None, dtype=pl.String))
            .when(asked)
            .then(pl.col(cols.oracle_error))
            .otherwise(pl.col(cols.error))
        )
        source = (
            pl.when(from_sample | asked)
            .then(pl.lit("oracle"))
            .when(unsent.fill_null(False))
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.lit("proxy"))
        )
        out = frame.with_columns(
            value.alias(cols.value), error.alias(cols.error), source.alias(cols.source)
        )
        names = out.collect_schema().names()
        keep = [c for c in names if c not in (*cols.scratch, *cols.outputs)]
        return out.select([*keep, *cols.outputs])

    def counts(
        self, frame: Any, cols: CascadeColumns
    ) -> list[tuple[Any, str | None, str | None, int]]:
        import polars as pl

        kind = pl.col(cols.error).str.split(":").list.first().str.strip_chars()
        grouped = (
            frame.lazy()
            .group_by(pl.col(cols.value), kind.alias("kind"), pl.col(cols.source))
            .len()
            .collect(engine="streaming")  # a scan of a streamed pass: never all in memory
        )
        return [(v, k, s, int(n)) for v, k, s, n in grouped.rows()]

    def escalated(self, frame: Any, cols: CascadeColumns) -> int:
        import polars as pl

        counted = frame.lazy().select(pl.col(cols.ask).is_not_null().sum())
        return int(counted.collect(engine="streaming").item())


class SparkFrames:
    """Spark ``DataFrame`` (the proxy's pass is checkpointed by the fan-out)."""

    def columns(self, frame: Any) -> list[str]:
        return list(frame.columns)

    def drop(self, frame: Any, names: Sequence[str]) -> Any:
        present = [name for name in names if name in frame.columns]
        return frame.drop(*present) if present else frame

    def sample(
        self, frame: Any, text: str, value: str, confidence: str, *, n: int, seed: int
    ) -> list[tuple[str, Any, float]]:
        from pyspark.sql import functions as F

        rows = (
            frame.where(F.col(confidence).isNotNull() & F.col(text).isNotNull())
            .select(
                F.col(text).cast("string").alias("t"),
                F.col(value).alias("v"),
                F.col(confidence).alias("c"),
            )
            .dropDuplicates(["t"])
            .withColumn("k", F.sha2(F.concat(F.lit(f"{seed}:"), F.col("t")), 256))
            .orderBy("k")
            .limit(n)
            .collect()
        )
        return _smallest([(row["t"], row["v"], float(row["c"])) for row in rows], n, seed)

    def _unsent(self, cols: CascadeColumns) -> Any:
        from pyspark.sql import functions as F

        err = F.col(cols.error)
        return F.coalesce(
            err.startswith(UNSENT_KINDS[0]) | err.startswith(UNSENT_KINDS[1]), F.lit(False)
        )

    def _from_sample(self, cols: CascadeColumns, answered: Mapping[str, Any]) -> Any:
        from pyspark.sql import functions as F

        if not answered:
            return F.lit(False)
        return F.coalesce(F.col(cols.text).cast("string").isin(list(answered)), F.lit(False))

    def mark(
        self,
        frame: Any,
        cols: CascadeColumns,
        threshold: float | None,
        answered: Mapping[str, Any],
    ) -> Any:
        from pyspark.sql import functions as F

        conf = F.col(cols.confidence)
        low = F.lit(True) if threshold is None else (conf.isNull() | (conf < F.lit(threshold)))
        ask = ~self._from_sample(cols, answered) & ~self._unsent(cols) & low
        return frame.withColumn(cols.ask, F.when(ask, F.col(cols.text).cast("string")))

    def combine(self, frame: Any, cols: CascadeColumns, answered: Mapping[str, Any]) -> Any:
        from itertools import chain

        from pyspark.sql import functions as F

        from_sample = self._from_sample(cols, answered)
        asked = F.col(cols.ask).isNotNull()
        dtype = frame.schema[cols.value].dataType
        if answered:
            mapping = F.create_map(
                *chain.from_iterable((F.lit(k), F.lit(v)) for k, v in answered.items())
            )
            sample_value = F.element_at(mapping, F.col(cols.text).cast("string")).cast(dtype)
        else:
            sample_value = F.lit(None).cast(dtype)
        value = (
            F.when(from_sample, sample_value)
            .when(asked, F.col(cols.oracle).cast(dtype))
            .otherwise(F.col(cols.value))
        )
        error = (
            F.when(from_sample, F.lit(None).cast("string"))
            .when(asked, F.col(cols.oracle_error))
            .otherwise(F.col(cols.error))
        )
        source = (
            F.when(from_sample | asked, F.lit("oracle"))
            .when(self._unsent(cols), F.lit(None).cast("string"))
            .otherwise(F.lit("proxy"))
        )
        out = (
            frame.withColumn(cols.value, value)
            .withColumn(cols.error, error)
            .withColumn(cols.source, source)
        )
        keep = [c for c in out.columns if c not in (*cols.scratch, *cols.outputs)]
        return out.select(*[F.col(f"`{c}`") for c in (*keep, *cols.outputs)])

    def counts(
        self, frame: Any, cols: CascadeColumns
    ) -> list[tuple[Any, str | None, str | None, int]]:
        from pyspark.sql import functions as F

        kind = F.trim(F.substring_index(F.col(cols.error), ":", 1)).alias("kind")
        rows = (
            frame.groupBy(F.col(cols.value).alias("v"), kind, F.col(cols.source).alias("s"))
            .count()
            .collect()
        )
        return [(row["v"], row["kind"], row["s"], int(row["count"])) for row in rows]

    def escalated(self, frame: Any, cols: CascadeColumns) -> int:
        from pyspark.sql import functions as F

        return int(frame.where(F.col(cols.ask).isNotNull()).count())
