"""The Spark engine: views are DataFrames behind session temp views with private names.

pyspark is imported only inside functions, so importing this module never
starts a JVM.  Every view gets a temp view named ``rlm_<engine id>_<n>``; the
model only ever sees its own view names, which are mapped to those private
names when its SQL is compiled, so it cannot reach or overwrite anything else
in the session.

On Spark Connect no temp view is registered: the server analyses a plan again
at every action, so SQL naming a temp view would fail once the view is dropped
or replaced (a frame handed back after an operator ended, a view the model
redefined over itself).  There the compiled SQL carries the views' frames
instead (``spark.sql(text, v0=frame, ...)``, the frames inlined in its plan),
like a classic plan that resolved the views when it was built.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from rlm_pipeline.engines.base import KeyCheck
from rlm_pipeline.engines.cells import normalize_arrow, truncate_cells
from rlm_pipeline.engines.frames import to_spark
from rlm_pipeline.engines.kinds import is_spark_frame
from rlm_pipeline.engines.partitioning import (
    MAX_PARTITIONS,
    NULL_PARTITION,
    PARTITION_COLUMN,
    check_head_rows,
    check_partition_args,
    chunk_count,
    chunk_label,
    chunk_sizes,
    too_many_partitions,
)
from rlm_pipeline.engines.reads import ValueCounts, check_max_values, value_counts_of
from rlm_pipeline.engines.types import neutral_spark_type
from rlm_pipeline.engines.views import CONTEXT_VIEW, ViewRegistry, check_columns
from rlm_pipeline.engines.work import (
    MAX_PLAN_SCANS,
    ViewLedger,
    check_joins,
    check_new_view,
    current_work,
    limits_now,
    scans_error,
    spark_job,
    view_rows_error,
)
from rlm_pipeline.errors import EngineError, InputError
from rlm_pipeline.ops.stats import EMPTY_INPUT

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkDataFrame

    from rlm_pipeline.engines.base import FailedRows, Fanout, RowProgress
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.spec_base import OpSpec
    from rlm_pipeline.ops.stats import OpStats

__all__ = ["SparkEngine"]

logger = logging.getLogger(__name__)

_POSITION_BITS = 33  # monotonically_increasing_id = partition index << 33 | position


@dataclass(frozen=True)
class _SparkView:
    frame: SparkDataFrame
    temp_name: str


class SparkEngine:
    """Views over Spark DataFrames in the caller's session.

    Parameters
    ----------
    session
        The SparkSession to run in (the engine never creates or stops one).

    Examples
    --------
    With a running SparkSession ``spark``::

        eng = SparkEngine(spark)
        eng.register("context", spark.range(10))
        eng.partition("context", n=3, name="chunks")   # {'0': 4, '1': 3, '2': 3}
    """

    name = "spark"
    fans_out_in_tasks = True

    def __init__(self, session: SparkSession) -> None:
        self._session = session
        self._views: ViewRegistry[_SparkView] = ViewRegistry()
        self._prefix = f"rlm_{uuid.uuid4().hex[:12]}"
        self._serial = itertools.count()
        self._ledger = ViewLedger()

    @property
    def session(self) -> SparkSession:
        """The SparkSession this engine runs in."""
        return self._session

    # -- registry -----------------------------------------------------------------

    def register(self, name: str, data: Any, *, replace: bool = False) -> None:
        """Register a Spark ``DataFrame`` (or a ``pa.Table``) as view ``name``."""
        if isinstance(data, pa.Table):
            with _spark_errors("load the Arrow table"):
                data = self._session.createDataFrame(normalize_arrow(data))
        if not is_spark_frame(data):
            msg = f"SparkEngine cannot register {type(data).__name__}; use open_engine()"
            raise InputError(msg)
        self._views.check_name(name, host=True, replace=replace)
        self._store(name, data, host=True, replace=replace)
        self._ledger.scans[name] = 1
        if name == CONTEXT_VIEW:
            self._ledger.context_rows = None

    def views(self) -> list[str]:
        """Names of the registered views, in registration order."""
        return self._views.names()

    def frame(self, view: str) -> SparkDataFrame:
        """The DataFrame of ``view``."""
        return self._views.get(view).frame

    def frame_like(self, view: str, given: Any) -> SparkDataFrame:
        """The DataFrame of ``view`` (whatever the caller gave: Spark hands back Spark).

        It stays usable after the engine's views are dropped: its plan names no
        temp view (classic Spark resolved them when it was built; on Spark Connect
        the engine's SQL carries the frames, see the module docstring).
        """
        return self._views.get(view).frame

    def open_child(self, data: Any) -> SparkEngine:
        """A new SparkEngine on the same session holding ``data`` as view ``context``."""
        child = SparkEngine(self._session)
        child.register(CONTEXT_VIEW, data)
        return child

    def close(self) -> None:
        """Drop this engine's temp views from the session and forget every view.

        Never raises (it runs in ``finally`` blocks): a view that cannot be
        dropped is logged and left to the session.
        """
        try:
            for name in self._views.names():
                try:
                    self._drop(self._views.get(name).temp_name)
                except EngineError as exc:
                    logger.debug("could not drop view %r: %s", name, exc)
        finally:
            self._views.clear()

    def drop(self, name: str) -> None:
        """Forget view ``name`` and drop its temp view from the session; none: nothing to do.

        Host-side (an operator's scratch view, or its input).  Frames already built
        over the view keep working: their plans name no temp view.  Only the name
        goes: ``spark.catalog.dropTempView`` would also uncache the view's plan — a
        DataFrame the caller cached and handed in.  On Spark Connect there is no
        temp view to drop.
        """
        if name not in self._views:
            return
        temp_name = self._views.pop(name).temp_name
        self._ledger.scans.pop(name, None)
        self._drop(temp_name)

    def _store(
        self, name: str, frame: SparkDataFrame, *, host: bool = False, replace: bool = True
    ) -> None:
        temp_name = f"{self._prefix}_{next(self._serial)}"
        if not self._connect:
            with _spark_errors(f"register view {name!r}"):
                frame.createOrReplaceTempView(temp_name)
        old = self._views.get(name).temp_name if name in self._views else None
        self._views.put(name, _SparkView(frame, temp_name), host=host, replace=replace)
        if old is not None:
            self._drop(old)

    @property
    def _connect(self) -> bool:
        """A Spark Connect session: no temp views (see the module docstring)."""
        from rlm_pipeline.engines.spark_workers import is_connect

        return is_connect(self._session)

    def _query(self, checked: Any) -> SparkDataFrame:
        """Spark's DataFrame for a checked query over registered views.

        Classic: the SQL names the views' temp views (resolved now, once).  Spark
        Connect: the SQL carries the views' frames, ``spark.sql(text, v0=frame, ...)``
        (the text's braces doubled, as ``str.format`` reads them).  The server
        resolves those through temp views it drops right after, and dropping a
        temp view uncaches a cached plan equal to its own (a caller's cached
        frame): each frame goes in behind a filter that keeps every row, so the
        plans differ and the cache stays (queries still read it; the optimizer
        removes the filter).
        """
        from pyspark.sql import functions as F

        from rlm_pipeline.expr import to_spark_sql

        temp_names = {v: self._views.get(v).temp_name for v in checked.views_used}
        text = to_spark_sql(checked, temp_names)
        if not self._connect:
            return self._session.sql(text)
        text = text.replace("{", "{{").replace("}", "}}")
        frames: dict[str, Any] = {}
        for view, temp_name in temp_names.items():
            key = f"v{len(frames)}"
            text = text.replace(f"`{temp_name}`", "{" + key + "}")
            frames[key] = self._views.get(view).frame.where(F.lit(True))
        return self._session.sql(text, **frames)

    def _drop(self, temp_name: str) -> None:
        """Drop the temp view's name only, through the session's catalog in the JVM.

        ``spark.catalog.dropTempView`` would also uncache every cached plan equal to
        the view's (the caller's cached input, or a model's ``SELECT * FROM context``
        over it).  Spark Connect: there is no temp view (see the module docstring).
        """
        jsession = getattr(self._session, "_jsparkSession", None)
        if jsession is None:
            return
        with _spark_errors("drop a temp view"):
            jsession.sessionState().catalog().dropTempView(temp_name)

    # -- reading ------------------------------------------------------------------

    def schema(self, view: str) -> dict[str, str]:
        """Column name -> neutral type name."""
        frame = self.frame(view)
        with _spark_errors(f"read the schema of view {view!r}"):
            fields = frame.schema.fields
        return {f.name: neutral_spark_type(f.dataType) for f in fields}

    def count(self, view: str) -> int:
        """Row count of ``view``."""
        return self._count(self.frame(view), f"count view {view!r}")

    def _count(self, frame: SparkDataFrame, what: str) -> int:
        with _spark_errors(what), spark_job(self._session):
            return int(frame.count())

    def head(self, view: str, n: int = 5, columns: list[str] | None = None) -> pa.Table:
        """First ``n`` (≤ 20) rows via ``limit(n).toArrow()``, cells cut to ~200 characters."""
        rows = check_head_rows(n)
        frame = self.frame(view)
        if columns is not None:
            check_columns(columns, self.schema(view), view)
            frame = frame.select(*[_col(c) for c in columns])
        with _spark_errors(f"read the first rows of view {view!r}"), spark_job(self._session):
            table = frame.limit(rows).toArrow()
        return truncate_cells(table)

    def to_arrow(self, view: str, columns: list[str] | None = None) -> pa.Table:
        """All rows of ``view`` (only ``columns`` when given) as Arrow (collected to the driver)."""
        frame = self.frame(view)
        if columns is not None:
            check_columns(columns, self.schema(view), view)
            frame = frame.select(*[_col(c) for c in columns])
        with _spark_errors(f"collect view {view!r}"), spark_job(self._session):
            table = frame.toArrow()
        return normalize_arrow(table)

    # -- the library's own reads (not the model's preview) ----------------------------

    def value_counts(self, view: str, column: str, *, max_values: int) -> ValueCounts:
        """Distinct values of ``column`` with their counts, uncut; see :class:`Engine`.

        One job on the usual path (group, sort, ``limit(max_values + 1)``, ``toArrow``);
        a second one (``count`` of the groups) only when there are more values than that.
        """
        from pyspark.sql import functions as F

        limit = check_max_values(max_values)
        frame = self.frame(view)
        check_columns([column], self.schema(view), view)
        rows = _free_name({column}, "rows")
        what = f"count the values of {column!r} in view {view!r}"
        with _spark_errors(what), spark_job(self._session):
            groups = frame.groupBy(_col(column)).agg(F.count(F.lit(1)).alias(rows))
            top = groups.orderBy(_col(column).asc_nulls_first()).limit(limit + 1).toArrow()
        distinct = top.num_rows
        if distinct > limit:
            distinct = self._count(groups, what)
        return value_counts_of(top, column, rows, limit, distinct)

    def filter_value(self, view: str, column: str, value: Any, name: str) -> None:
        """Register the rows whose ``column`` equals ``value`` (``eqNullSafe``) as ``name``."""
        from pyspark.sql import functions as F

        frame = self.frame(view)
        check_columns([column], self.schema(view), view)
        self._views.check_name(name)
        with _spark_errors(f"match a value of {column!r} in view {view!r}"):
            if value is None:
                result = frame.filter(_col(column).isNull())
            else:
                dtype = frame.schema[column].dataType
                result = frame.filter(_col(column).eqNullSafe(F.lit(value).cast(dtype)))
        self._store(name, result)
        self._ledger.scans[name] = self._ledger.scans.get(view, 1)

    # -- model-facing operations ----------------------------------------------------

    def filter(self, view: str, where: str, name: str) -> int:
        """Register the rows of ``view`` where ``where`` holds as ``name``; returns its count."""
        from pyspark.sql import functions as F

        from rlm_pipeline.expr import compile_where, to_spark_sql

        frame = self.frame(view)
        self._check_new(name)
        checked = compile_where(where, self.schema(view))
        with _spark_errors(f"filter view {view!r}"):
            result = frame.filter(F.expr(to_spark_sql(checked)))
        rows = self._capped_count(result, name, f"filter view {view!r}")
        self._store(name, result)
        self._ledger.scans[name] = self._ledger.scans.get(view, 1)
        logger.debug("filter %s -> %s: %d rows", view, name, rows)
        return rows

    def partition(
        self, view: str, by: str | None = None, n: int | None = None, *, name: str
    ) -> dict[str, int]:
        """Add a string column ``partition`` by key or into ``n`` chunks; see :class:`Engine`."""
        check_partition_args(by, n)
        frame = self.frame(view)
        self._check_new(name)
        if by is not None:
            result, sizes = self._partition_by(view, frame, by)
        else:
            result, sizes = self._partition_chunks(view, frame, cast(int, n))
        self._ledger.add_rows(sum(sizes.values()), limits_now())
        self._store(name, result)
        self._ledger.scans[name] = 1 if by is None else self._ledger.scans.get(view, 1)
        logger.debug("partition %s -> %s: %d partitions", view, name, len(sizes))
        return sizes

    def _partition_by(
        self, view: str, frame: SparkDataFrame, by: str
    ) -> tuple[SparkDataFrame, dict[str, int]]:
        from pyspark.sql import functions as F

        from rlm_pipeline.expr import compile_key, to_spark_sql

        checked = compile_key(by, self.schema(view))
        with _spark_errors(f"partition view {view!r}"):
            key = F.expr(to_spark_sql(checked))
            if checked.dtype == "string":
                text = key
            elif checked.dtype == "timestamp":
                text = F.date_format(key, "yyyy-MM-dd HH:mm:ss")
            else:
                text = key.cast("string")
            result = frame.withColumn(PARTITION_COLUMN, F.coalesce(text, F.lit(NULL_PARTITION)))
        with _spark_errors(f"partition view {view!r}"), spark_job(self._session):
            groups = result.groupBy(PARTITION_COLUMN).count().limit(MAX_PARTITIONS + 1).collect()
        if len(groups) > MAX_PARTITIONS:
            raise too_many_partitions(by)
        return result, {str(row[0]): int(row[1]) for row in sorted(groups, key=lambda r: r[0])}

    def _partition_chunks(
        self, view: str, frame: SparkDataFrame, n: int
    ) -> tuple[SparkDataFrame, dict[str, int]]:
        """Chunks of contiguous rows, numbered like ``RDD.zipWithIndex``: by Spark partition,
        then by position inside it (which is the input order for ordered inputs).

        The numbered rows are checkpointed here (``localCheckpoint(eager=True)``):
        after a shuffle (GROUP BY, DISTINCT, join) the order of rows inside a
        Spark partition may change every time the plan runs, and a number taken
        from a lazy plan would then put a row in two chunks, or in none, once
        each chunk is filtered on its own (as ``recurse`` does).  The partition
        view reads the checkpoint, so every later query sees one assignment.

        Cost: one job that computes ``view`` and stores it in the executors'
        block managers (memory, spilling to disk) for as long as the partition
        view is registered; the per-partition counts are then read from that
        store.  A partition view is what the model fans out over, meant to be
        of moderate size.  A local checkpoint does not survive the loss of an
        executor: queries over the partition view then fail (with an
        :class:`EngineError`) rather than silently renumber rows.
        """
        from pyspark.sql import functions as F

        taken = set(frame.columns)
        mid, part, row = (_free_name(taken, f"_rlm_{s}") for s in ("mid", "part", "row"))
        with _spark_errors(f"partition view {view!r}"), spark_job(self._session):
            tagged = (
                frame.withColumn(mid, F.monotonically_increasing_id())
                .withColumn(part, F.shiftrightunsigned(_col(mid), _POSITION_BITS))
                .localCheckpoint(eager=True)
            )
            counts = sorted((int(r[0]), int(r[1])) for r in tagged.groupBy(part).count().collect())
        rows = sum(c for _, c in counts)
        chunks = chunk_count(n, rows)
        offsets: list[Column] = []
        start = 0
        for index, size in counts:
            offsets += [F.lit(index), F.lit(start)]
            start += size
        if not counts:
            empty = tagged.drop(mid, part)
            return empty.withColumn(PARTITION_COLUMN, F.lit(None).cast("string")), {}
        width = len(chunk_label(max(chunks - 1, 0), chunks))
        position = _col(mid).bitwiseAND(F.lit((1 << _POSITION_BITS) - 1))
        with _spark_errors(f"partition view {view!r}"):
            numbered = tagged.withColumn(
                row, F.element_at(F.create_map(*offsets), _col(part)) + position
            )
            label = F.lpad(F.expr(f"(`{row}` * {chunks}) div {rows}").cast("string"), width, "0")
            result = numbered.withColumn(PARTITION_COLUMN, label).drop(mid, part, row)
        return result, chunk_sizes(rows, chunks)

    def sql(self, query: str, name: str) -> int:
        """Run a checked SELECT over registered views and register it as ``name``."""
        from rlm_pipeline.expr import compile_select
        from rlm_pipeline.expr.estimate import plan_scans

        self._check_new(name)
        schemas = {view: self.schema(view) for view in self._views.names()}
        checked = compile_select(query, schemas)
        unknown = [v for v in checked.views_used if v not in self._views]
        if unknown:
            msg = f"query reads unknown views {unknown}; known views: {', '.join(schemas)}"
            raise InputError(msg)
        scans = plan_scans(checked, self._ledger.scans)
        if scans > MAX_PLAN_SCANS:
            raise scans_error(scans)
        self._check_joins(checked, schemas)
        with _spark_errors("run the query"):
            result = self._query(checked)
        rows = self._capped_count(result, name, "run the query")
        self._store(name, result)
        self._ledger.scans[name] = scans
        logger.debug("sql -> %s: %d rows", name, rows)
        return rows

    # -- host-side: the user's data and the frame form of the fan-out -------------------

    def read(self, data: Any, *, lazy: bool = True) -> SparkDataFrame:
        """``data`` as a Spark DataFrame of this engine's session (``lazy`` does not apply)."""
        return to_spark(data, self._session)

    def map_frame(
        self,
        frame: SparkDataFrame,
        spec: OpSpec,
        llm: LLM,
        *,
        fanout: Fanout,
        meter: UsageMeter | None = None,
        budget: Budget | None = None,
        progress: RowProgress | None = None,
        overwrite: bool = True,
        write_to: str | os.PathLike[str] | None = None,
    ) -> tuple[SparkDataFrame, OpStats]:
        """Run ``spec`` over ``frame`` as executor tasks (see :meth:`Engine.map_frame`)."""
        if not overwrite:
            from rlm_pipeline.ops.spec_base import check_output_columns

            check_output_columns(frame.columns, spec)
        out, stats = fanout.spark(frame, spec, llm, meter=meter, budget=budget, progress=progress)
        if write_to is not None:
            import pyarrow.parquet as pq

            pq.write_table(out.toArrow(), os.fspath(write_to))
        return out, stats

    def column_texts(self, frame: SparkDataFrame, column: str) -> list[str | None]:
        """``column`` as text, nulls kept (only that column reaches the driver)."""
        import polars as pl

        if column not in frame.columns:
            msg = f"column {column!r} not found; columns: {frame.columns}"
            raise InputError(msg)
        series = pl.DataFrame(frame.select(_col(column)).toArrow()).get_column(column)
        if series.dtype != pl.String:
            series = series.cast(pl.String, strict=False)
        return series.to_list()

    def rows_where(
        self,
        frame: SparkDataFrame,
        holds: str,
        *,
        failed: str | None = None,
        failed_rows: FailedRows = "drop",
        blank: str = EMPTY_INPUT,
        message: str = "",
    ) -> SparkDataFrame:
        """Rows where ``holds`` is true, failed rows per ``failed_rows`` (see :meth:`Engine.rows_where`).

        A plan (no job); ``failed_rows="raise"`` is ``raise_error`` in the plan, so the
        action that reaches a failed row fails.
        """
        from pyspark.sql import functions as F

        keep = F.coalesce(_col(holds), F.lit(False))
        drop = [holds]
        if failed is not None:
            reason = _col(failed)
            bad = reason.isNotNull() & ~reason.startswith(blank)
            if failed_rows == "keep":
                keep = keep | bad
            else:
                drop.append(failed)
            if failed_rows == "raise":
                stop = F.raise_error(F.concat(F.lit(message), reason))
                keep = F.when(bad, stop.isNull()).otherwise(keep)
        return frame.filter(keep).drop(*drop)

    def key_check(self, view: str, column: str) -> KeyCheck:
        """Nulls and repeats of ``column`` (two aggregations; no rows collected)."""
        from pyspark.sql import functions as F

        data, col = self.frame(view), _col(column)
        groups = data.where(col.isNotNull()).groupBy(col.alias("key")).count()
        repeated = groups.where(F.col("count") > 1).agg(
            F.sum("count").alias("rows"), F.min("key").alias("example")
        )
        with _spark_errors(f"check column {column!r} of view {view!r}"), spark_job(self._session):
            nulls = data.where(col.isNull()).count()
            found = repeated.collect()[0]
        return KeyCheck(int(nulls), int(found["rows"] or 0), found["example"])

    async def map_llm(
        self, view: str, spec: OpSpec, client: LLMClient, name: str, *, fanout: Fanout
    ) -> OpStats:
        """Fan model sub-calls out as Spark tasks sharing ``client.config`` (in a worker thread)."""
        return await asyncio.to_thread(self._map_llm, view, spec, client, name, fanout)

    def _map_llm(
        self, view: str, spec: OpSpec, client: LLMClient, name: str, fanout: Fanout
    ) -> OpStats:
        frame = self.frame(view)
        self._check_new(name)
        budget = client.guard.budget if client.guard is not None else None
        limited = budget is not None and (
            budget.max_calls, budget.max_tokens, budget.max_cost_usd) != (None, None, None)
        turn = _one_fanout_per_meter(client.meter) if limited else contextlib.nullcontext()
        with turn, spark_job(self._session):
            result, stats = fanout.spark(
                frame, spec, client.config, meter=client.meter, budget=budget
            )
        self._store(name, result)
        self._ledger.scans[name] = 1
        return stats

    # -- limits on model-issued work (rlm_pipeline.engines.work) ----------------------

    def _check_new(self, name: str) -> None:
        self._views.check_name(name)
        check_new_view(self._views.names(), name, limits_now())

    def _view_cap(self) -> int:
        if self._ledger.context_rows is None:
            has_context = CONTEXT_VIEW in self._views
            self._ledger.context_rows = self.count(CONTEXT_VIEW) if has_context else 0
        return limits_now().view_rows(self._ledger.context_rows)

    def _capped_count(self, frame: SparkDataFrame, name: str, what: str) -> int:
        """Rows of ``frame``, counting no further than ``max_view_rows + 1``; refuse above."""
        cap = self._view_cap()
        with _spark_errors(what):
            limited = frame.limit(cap + 1) if cap < _MAX_LIMIT else frame
        rows = self._count(limited, what)
        if rows > cap:
            raise view_rows_error(name, cap)
        self._ledger.add_rows(rows, limits_now())
        return rows

    def _check_joins(self, checked: Any, schemas: dict[str, dict[str, str]]) -> None:
        """Refuse the query if one of its joins would pass ``max_view_rows`` (probed first)."""

        def run_probe(probe: Any, joined: str) -> Any:
            what = f"estimate the size of the join with {joined!r}"
            with _spark_errors(what), spark_job(self._session):
                return self._query(probe).collect()[0][0]

        check_joins(checked, schemas, self._view_cap, run_probe)


#: One lock per meter (a run's): its Spark fan-outs run one at a time (see below).
_FANOUT_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_FANOUT_LOCKS_GUARD = threading.Lock()


@contextmanager
def _one_fanout_per_meter(meter: Any) -> Iterator[None]:
    """Run the block when no other Spark fan-out on ``meter`` runs (a run's parallel sub-runs).

    A fan-out's tasks get their budget when it starts: what is left
    (``Budget.less`` of what the meter shows).  Two at once would each get all
    of it, so a run's budget could be passed; one at a time, each starts from
    what the last one spent.  Only fan-outs under a budget wait (concurrency and
    rates are shared out between parallel sub-runs already: ``LLM.share``).
    Waiting stops when the current work is cancelled.
    """
    with _FANOUT_LOCKS_GUARD:
        lock = _FANOUT_LOCKS.get(meter)
        if lock is None:
            lock = _FANOUT_LOCKS[meter] = threading.Lock()
    work = current_work()
    while not lock.acquire(timeout=0.25):
        if work is not None:
            work.check()
    try:
        yield
    finally:
        lock.release()


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _free_name(taken: set[str], base: str) -> str:
    name = base
    while name in taken:
        name += "_"
    taken.add(name)
    return name


#: Largest ``limit(n)`` Spark takes (a 32-bit int).
_MAX_LIMIT = 2**31 - 2


@contextmanager
def _spark_errors(what: str) -> Iterator[None]:
    """Turn Spark and py4j failures into one-line :class:`EngineError`."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JError) as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[0][:300] if lines else type(exc).__name__
        msg = f"spark could not {what}: {first}"
        raise EngineError(msg) from exc
