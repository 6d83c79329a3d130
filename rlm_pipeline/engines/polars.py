"""The Polars engine: views are LazyFrames, results are computed lazily and bounded."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import polars as pl
import pyarrow as pa

from rlm_pipeline.engines.base import KeyCheck
from rlm_pipeline.engines.cells import normalize_arrow, truncate_cells
from rlm_pipeline.engines.frames import to_polars
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
from rlm_pipeline.engines.types import neutral_polars_type
from rlm_pipeline.engines.views import CONTEXT_VIEW, ViewRegistry, check_columns
from rlm_pipeline.engines.work import (
    MAX_PLAN_SCANS,
    ViewLedger,
    check_joins,
    check_new_view,
    collect_polars,
    limits_now,
    scans_error,
    view_rows_error,
)
from rlm_pipeline.errors import (
    BudgetExceededError,
    EngineError,
    InputError,
    LLMError,
    LLMResponseParseError,
    UnansweredRowsError,
)
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.stats import EMPTY_INPUT

if TYPE_CHECKING:
    from rlm_pipeline.engines.base import FailedRows, Fanout, RowProgress
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.ops.spec_base import OpSpec
    from rlm_pipeline.ops.stats import OpStats

__all__ = ["PolarsEngine", "row_failed"]

logger = logging.getLogger(__name__)


class PolarsEngine:
    """Views over Polars LazyFrames.

    ``count`` and ``head`` never collect the whole table, and Parquet scans
    push filters and projections down to the files.  A partition into ``n``
    chunks is the exception: it collects its view once, so that the chunk of
    every row stays fixed (see :meth:`_partition_chunks`).

    Examples
    --------
    >>> eng = PolarsEngine()
    >>> eng.register("context", pl.DataFrame({"user": [1, 2, 2], "q": ["a", "b", "c"]}))
    >>> eng.filter("context", "user = 2", "mine")
    2
    >>> eng.partition("mine", n=2, name="halves")
    {'0': 1, '1': 1}
    """

    name = "polars"
    fans_out_in_tasks = False

    def __init__(self) -> None:
        self._views: ViewRegistry[pl.LazyFrame] = ViewRegistry()
        self._ledger = ViewLedger()

    # -- registry -----------------------------------------------------------------

    def register(self, name: str, data: Any, *, replace: bool = False) -> None:
        """Register a ``LazyFrame``, ``DataFrame`` or ``pa.Table`` as view ``name``."""
        self._views.put(name, _as_lazy(data), host=True, replace=replace)
        self._ledger.scans[name] = 1
        if name == CONTEXT_VIEW:
            self._ledger.context_rows = None

    def views(self) -> list[str]:
        """Names of the registered views, in registration order."""
        return self._views.names()

    def frame(self, view: str) -> pl.LazyFrame:
        """The LazyFrame of ``view``."""
        return self._views.get(view)

    def frame_like(self, view: str, given: Any) -> pl.DataFrame | pl.LazyFrame:
        """``view`` as a LazyFrame when ``given`` is one, else collected into a DataFrame."""
        frame = self._views.get(view)
        return frame if isinstance(given, pl.LazyFrame) else frame.collect()

    def open_child(self, data: Any) -> PolarsEngine:
        """A new PolarsEngine holding ``data`` as view ``context``.

        Examples
        --------
        >>> child = PolarsEngine().open_child(pl.DataFrame({"x": [1, 2]}))
        >>> child.name, child.views(), child.count("context")
        ('polars', ['context'], 2)
        """
        child = PolarsEngine()
        child.register(CONTEXT_VIEW, data)
        return child

    def close(self) -> None:
        """Forget every view."""
        self._views.clear()

    def drop(self, name: str) -> None:
        """Forget view ``name`` (host-side: an operator's scratch view); none: nothing to do."""
        if name in self._views:
            self._views.pop(name)
        self._ledger.scans.pop(name, None)

    # -- reading ------------------------------------------------------------------

    def schema(self, view: str) -> dict[str, str]:
        """Column name -> neutral type name."""
        frame = self._views.get(view)
        with _polars_errors(f"read the schema of view {view!r}"):
            schema = frame.collect_schema()
        return {col: neutral_polars_type(dtype) for col, dtype in schema.items()}

    def count(self, view: str) -> int:
        """Row count of ``view`` (``select(len())``: no rows are collected)."""
        return _count(self._views.get(view), f"count view {view!r}")

    def head(self, view: str, n: int = 5, columns: list[str] | None = None) -> pa.Table:
        """First ``n`` (≤ 20) rows, cells cut to ~200 characters."""
        rows = check_head_rows(n)
        frame = self._views.get(view)
        if columns is not None:
            check_columns(columns, self.schema(view), view)
            frame = frame.select(columns)
        with _polars_errors(f"read the first rows of view {view!r}"):
            table = collect_polars(frame.head(rows)).to_arrow()
        return truncate_cells(table)

    def to_arrow(self, view: str, columns: list[str] | None = None) -> pa.Table:
        """All rows of ``view`` (only ``columns`` when given) as Arrow."""
        frame = self._views.get(view)
        if columns is not None:
            check_columns(columns, self.schema(view), view)
            frame = frame.select(columns)
        with _polars_errors(f"collect view {view!r}"):
            table = collect_polars(frame).to_arrow()
        return normalize_arrow(table)

    # -- the library's own reads (not the model's preview) ----------------------------

    def value_counts(self, view: str, column: str, *, max_values: int) -> ValueCounts:
        """Distinct values of ``column`` with their counts, uncut; see :class:`Engine`."""
        limit = check_max_values(max_values)
        frame = self._views.get(view)
        check_columns([column], self.schema(view), view)
        rows = _free_name(column, "rows")
        groups = frame.group_by(column).agg(pl.len().alias(rows))
        with _polars_errors(f"count the values of {column!r} in view {view!r}"):
            top = collect_polars(groups.sort(column, nulls_last=False).head(limit + 1)).to_arrow()
            distinct = top.num_rows
            if distinct > limit:
                distinct = _count(groups, f"count the values of {column!r}")
        return value_counts_of(top, column, rows, limit, distinct)

    def filter_value(self, view: str, column: str, value: Any, name: str) -> None:
        """Register the rows whose ``column`` equals ``value`` (null-safe) as ``name``."""
        frame = self._views.get(view)
        check_columns([column], self.schema(view), view)
        self._views.check_name(name)
        if value is None:
            condition = pl.col(column).is_null()
        else:
            dtype = frame.collect_schema()[column]
            with _polars_errors(f"match a value of {column!r}"):
                condition = pl.col(column).eq_missing(pl.lit(value, dtype=dtype))
        self._views.put(name, frame.filter(condition))
        self._ledger.scans[name] = self._ledger.scans.get(view, 1)

    # -- model-facing operations ----------------------------------------------------

    def filter(self, view: str, where: str, name: str) -> int:
        """Register the rows of ``view`` where ``where`` holds as ``name``; returns its count."""
        from rlm_pipeline.expr import compile_where, to_polars_expr

        frame = self._views.get(view)
        self._check_new(name)
        checked = compile_where(where, self.schema(view))
        result = frame.filter(to_polars_expr(checked))
        rows = self._capped_count(result, name, f"filter view {view!r}")
        self._views.put(name, result)
        self._ledger.scans[name] = self._ledger.scans.get(view, 1)
        logger.debug("filter %s -> %s: %d rows", view, name, rows)
        return rows

    def partition(
        self, view: str, by: str | None = None, n: int | None = None, *, name: str
    ) -> dict[str, int]:
        """Add a string column ``partition`` by key or into ``n`` chunks; see :class:`Engine`."""
        check_partition_args(by, n)
        frame = self._views.get(view)
        self._check_new(name)
        if by is not None:
            result, sizes = self._partition_by(view, frame, by)
        else:
            result, sizes = self._partition_chunks(view, frame, cast(int, n))
        self._ledger.add_rows(sum(sizes.values()), limits_now())
        self._views.put(name, result)
        self._ledger.scans[name] = 1 if by is None else self._ledger.scans.get(view, 1)
        logger.debug("partition %s -> %s: %d partitions", view, name, len(sizes))
        return sizes

    def _partition_by(
        self, view: str, frame: pl.LazyFrame, by: str
    ) -> tuple[pl.LazyFrame, dict[str, int]]:
        from rlm_pipeline.expr import compile_key, to_polars_expr

        checked = compile_key(by, self.schema(view))
        label = _key_label(to_polars_expr(checked), checked.dtype).alias(PARTITION_COLUMN)
        result = frame.with_columns(label)
        with _polars_errors(f"partition view {view!r}"):
            groups = collect_polars(
                frame.select(label)
                .group_by(PARTITION_COLUMN)
                .agg(pl.len().alias("rows"))
                .head(MAX_PARTITIONS + 1)
            )
        if groups.height > MAX_PARTITIONS:
            raise too_many_partitions(by)
        sizes = dict(sorted(zip(groups[PARTITION_COLUMN], groups["rows"], strict=True)))
        return result, {str(k): int(v) for k, v in sizes.items()}

    def _partition_chunks(
        self, view: str, frame: pl.LazyFrame, n: int
    ) -> tuple[pl.LazyFrame, dict[str, int]]:
        """Chunks of contiguous rows, numbered once: the view is collected here.

        A view's row order is fixed only for order-preserving plans (scans,
        filters, projections); a GROUP BY, DISTINCT or join may give another
        order every time it runs.  Numbering a lazy plan would then put a row in
        two chunks, or in none, once each chunk is filtered on its own (as
        ``recurse`` does).  So the numbered frame is collected once and the
        partition view is that frame: later filters all see one assignment.

        Cost: one pass over ``view`` (it replaces the count), and the partition
        view held in memory for as long as it is registered -- a partition view
        is what the model fans out over, meant to be of moderate size.
        """
        with _polars_errors(f"partition view {view!r}"):
            table = collect_polars(frame)
        rows = table.height
        chunks = chunk_count(n, rows)
        width = len(chunk_label(max(chunks - 1, 0), chunks))
        chunk = (pl.int_range(pl.len(), dtype=pl.Int64) * chunks) // max(rows, 1)
        with _polars_errors(f"partition view {view!r}"):
            result = table.with_columns(
                chunk.cast(pl.String).str.zfill(width).alias(PARTITION_COLUMN)
            )
        return result.lazy(), chunk_sizes(rows, chunks)

    def sql(self, query: str, name: str) -> int:
        """Run a checked SELECT over registered views and register it as ``name``."""
        from rlm_pipeline.expr import compile_select, to_polars_query
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
        frames = {view: self._views.get(view) for view in checked.views_used}
        self._check_joins(checked, schemas, frames, name)
        result = to_polars_query(checked, frames)
        rows = self._capped_count(result, name, "run the query")
        self._views.put(name, result)
        self._ledger.scans[name] = scans
        logger.debug("sql -> %s: %d rows", name, rows)
        return rows

    # -- host-side: the user's data and the frame form of the fan-out -------------------

    def read(self, data: Any, *, lazy: bool = True) -> pl.DataFrame | pl.LazyFrame:
        """A Polars ``DataFrame``/``LazyFrame`` as it is; other data scanned (``lazy``) or read.

        Examples
        --------
        >>> PolarsEngine().read(pa.table({"x": [1]}), lazy=False).shape
        (1, 1)
        """
        if isinstance(data, pl.DataFrame | pl.LazyFrame):
            return data
        frame = to_polars(data)
        return frame if lazy else frame.collect()

    def map_frame(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        spec: OpSpec,
        llm: LLM,
        *,
        fanout: Fanout,
        meter: UsageMeter | None = None,
        budget: Budget | None = None,
        progress: RowProgress | None = None,
        overwrite: bool = True,
        write_to: str | os.PathLike[str] | None = None,
    ) -> tuple[pl.DataFrame | pl.LazyFrame | None, OpStats]:
        """Run ``spec`` over ``frame`` on an asyncio loop of its own (see :meth:`Engine.map_frame`)."""
        if not overwrite:
            from rlm_pipeline.ops.spec_base import check_output_columns

            names = (
                frame.columns if isinstance(frame, pl.DataFrame) else frame.collect_schema().names()
            )
            check_output_columns(names, spec)
        if write_to is not None:
            stats = fanout.polars_parquet(
                frame.lazy(), spec, llm, write_to, meter=meter, budget=budget, progress=progress
            )
            return None, stats
        return fanout.polars_frame(frame, spec, llm, meter=meter, budget=budget, progress=progress)

    def column_texts(self, frame: pl.DataFrame | pl.LazyFrame, column: str) -> list[str | None]:
        """``column`` as text, nulls kept (only that column is read)."""
        lazy = frame.lazy()
        names = lazy.collect_schema().names()
        if column not in names:
            msg = f"column {column!r} not found; columns: {names}"
            raise InputError(msg)
        series = lazy.select(column).collect().get_column(column)
        if series.dtype != pl.String:
            series = series.cast(pl.String, strict=False)
        return series.to_list()

    def rows_where(
        self,
        frame: pl.DataFrame | pl.LazyFrame,
        holds: str,
        *,
        failed: str | None = None,
        failed_rows: FailedRows = "drop",
        blank: str = EMPTY_INPUT,
        message: str = "",
    ) -> pl.DataFrame | pl.LazyFrame:
        """Rows where ``holds`` is true, failed rows per ``failed_rows`` (see :meth:`Engine.rows_where`)."""
        keep = pl.col(holds).fill_null(False)
        drop = [holds]
        if failed is not None:
            reason = pl.col(failed)
            bad = row_failed(reason, blank)
            if failed_rows == "keep":
                keep = keep | bad
            else:
                drop.append(failed)
            if failed_rows == "raise":
                guard = pl.when(bad).then(reason).otherwise(None)
                keep = keep & guard.map_batches(
                    lambda reasons: _no_reason(reasons, message), return_dtype=pl.Boolean
                )
        return frame.filter(keep).drop(drop)

    def key_check(self, view: str, column: str) -> KeyCheck:
        """Nulls and repeats of ``column`` (one aggregation)."""
        ids = pl.col(column)
        kept = ids.drop_nulls()
        with _polars_errors(f"check column {column!r} of view {view!r}"):
            row = collect_polars(
                self._views.get(view).select(
                    ids.null_count().alias("nulls"),
                    kept.is_duplicated().sum().alias("duplicated"),
                    kept.filter(kept.is_duplicated()).first().alias("example"),
                )
            ).row(0, named=True)
        return KeyCheck(int(row["nulls"]), int(row["duplicated"]), row["example"])

    async def map_llm(
        self, view: str, spec: OpSpec, client: LLMClient, name: str, *, fanout: Fanout
    ) -> OpStats:
        """Fan model sub-calls out over ``view`` through ``client``, in the running loop."""
        frame = self._views.get(view)
        self._check_new(name)
        own = CountedClient(client)
        result, stats = await fanout.polars(frame, spec, own)
        self._views.put(name, _as_lazy(result))
        self._ledger.scans[name] = 1
        return stats.with_usage(own.tally.snapshot())

    # -- limits on model-issued work (rlm_pipeline.engines.work) ----------------------

    def _check_new(self, name: str) -> None:
        self._views.check_name(name)
        check_new_view(self._views.names(), name, limits_now())

    def _view_cap(self) -> int:
        if self._ledger.context_rows is None:
            has_context = CONTEXT_VIEW in self._views
            self._ledger.context_rows = self.count(CONTEXT_VIEW) if has_context else 0
        return limits_now().view_rows(self._ledger.context_rows)

    def _capped_count(self, frame: pl.LazyFrame, name: str, what: str) -> int:
        """Rows of ``frame``, counting no further than ``max_view_rows + 1``; refuse above."""
        cap = self._view_cap()
        if cap + 1 < _MAX_HEAD:
            frame = frame.head(cap + 1)
        rows = _count(frame, what)
        if rows > cap:
            raise view_rows_error(name, cap)
        self._ledger.add_rows(rows, limits_now())
        return rows

    def _check_joins(
        self,
        checked: Any,
        schemas: dict[str, dict[str, str]],
        frames: dict[str, pl.LazyFrame],
        name: str,
    ) -> None:
        """Refuse the query if one of its joins would pass ``max_view_rows`` (probed first)."""
        from rlm_pipeline.expr import to_polars_query

        def run_probe(probe: Any, joined: str) -> Any:
            with _polars_errors(f"estimate the size of the join with {joined!r}"):
                return collect_polars(to_polars_query(probe, frames)).item()

        check_joins(checked, schemas, self._view_cap, run_probe)


class CountedClient:
    """``client`` as one fan-out sees it, counting that fan-out's own requests in :attr:`tally`.

    Other work (another tool call, a sub-run) may share ``client`` and its
    meter at the same time, so a difference of two meter snapshots would count
    its calls too.  So every request of this fan-out goes through :meth:`json`
    and is counted here as the client's meter counts it, and what the operators
    add to :attr:`meter` themselves (the calls stored row answers saved, as
    cached calls) goes onto both the shared meter and the tally.  Everything
    else is ``client``'s (limits, budget, row store).  One exception: a request
    cancelled while in flight (the run stopped) is on the shared meter only.

    Examples
    --------
    >>> from rlm_pipeline.llm.usage import Usage
    >>> class Shared:
    ...     meter = UsageMeter()
    >>> counted = CountedClient(Shared())
    >>> counted.meter.add(Usage(cached_calls=2))  # e.g. rows served from the row store
    >>> counted.tally.snapshot().cached_calls, Shared.meter.snapshot().cached_calls
    (2, 2)
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        #: This fan-out's requests: answered calls with their tokens (a reply that failed
        #: to parse too), cache hits and calls saved by stored row answers as cached calls,
        #: requests that failed for good as failed calls.
        self.tally = UsageMeter()
        #: The meter the operators add to: ``client.meter`` and :attr:`tally` both.
        self.meter = _BothMeters(client.meter, self.tally)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def json(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
        """``client.json``, counted."""
        try:
            obj, reply = await self._client.json(*args, **kwargs)
        except LLMResponseParseError as exc:
            self._spent(exc.reply)  # a reply came back (tokens spent), or a body that was not JSON
            raise
        except BudgetExceededError as exc:
            cause = exc.__cause__  # a reply cut by the budget's allowance: its tokens were spent
            if isinstance(cause, LLMResponseParseError) and cause.reply is not None:
                self._spent(cause.reply)
            raise
        except LLMError:
            self.tally.record_failure()
            raise
        self._spent(reply)
        return obj, reply

    def _spent(self, reply: Any) -> None:
        """Count ``reply`` as the client's meter did (None: a request that failed for good)."""
        if reply is None:
            self.tally.record_failure()
            return
        if reply.cached:
            self.tally.record(input_tokens=0, output_tokens=0, cost_usd=0.0, cached=True)
            return
        tokens = reply.input_tokens, reply.output_tokens, reply.cached_tokens
        self.tally.record(
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cost_usd=self._client.config.price().cost(*tokens),
            cached_tokens=tokens[2],
        )


class _BothMeters:
    """``shared`` as the operators use it, with every addition made on ``own`` too.

    Reads (:meth:`snapshot`) are ``shared``'s: the whole run's usage.
    """

    def __init__(self, shared: UsageMeter, own: UsageMeter) -> None:
        self._shared = shared
        self._own = own

    def add(self, usage: Usage) -> None:
        """Add ``usage`` to both meters."""
        self._shared.add(usage)
        self._own.add(usage)

    def record(self, **kwargs: Any) -> None:
        """Record one request on both meters."""
        self._shared.record(**kwargs)
        self._own.record(**kwargs)

    def record_failure(self) -> None:
        """Count one failed request on both meters."""
        self._shared.record_failure()
        self._own.record_failure()

    def snapshot(self) -> Usage:
        """The shared meter's totals."""
        return self._shared.snapshot()


def row_failed(reason: pl.Expr, blank: str = EMPTY_INPUT) -> pl.Expr:
    """True where a row failed: it has a ``reason`` that does not start with ``blank``.

    The one Polars definition of a failed row (a filter's ``on_error``, the
    engine's :meth:`~PolarsEngine.rows_where`): a row without an answer for
    any reason but a blank text (``input_too_long`` is a failure).  False
    for rows without a reason.

    Examples
    --------
    >>> frame = pl.DataFrame({"why": [None, "empty_input", "api_error: 500", "input_too_long"]})
    >>> frame.select(row_failed(pl.col("why")))["why"].to_list()
    [False, False, True, True]
    """
    return reason.is_not_null() & ~reason.str.starts_with(blank)


def _no_reason(reasons: pl.Series, message: str) -> pl.Series:
    """All True, or :class:`UnansweredRowsError` naming the first reason (``rows_where(failed_rows="raise")``)."""
    first = reasons.drop_nulls()
    if first.len():
        msg = f"{message}{first[0]}"
        raise UnansweredRowsError(msg, failed=first.len(), rows=reasons.len())
    return pl.Series(reasons.name, [True] * reasons.len(), dtype=pl.Boolean)


def _as_lazy(data: Any) -> pl.LazyFrame:
    if isinstance(data, pl.LazyFrame):
        return data
    if isinstance(data, pl.DataFrame):
        return data.lazy()
    if isinstance(data, pa.Table):
        return pl.DataFrame(data).lazy()
    msg = f"PolarsEngine cannot register {type(data).__name__}; use open_engine()"
    raise InputError(msg)


def _free_name(taken: str, base: str) -> str:
    return base if base != taken else base + "_"


#: ``head(n)`` takes at most this many rows (Polars' row index is 32-bit here).
_MAX_HEAD = 2**31


def _count(frame: pl.LazyFrame, what: str) -> int:
    with _polars_errors(what):
        return int(collect_polars(frame.select(pl.len())).item())


def _key_label(key: pl.Expr, dtype: str) -> pl.Expr:
    """A partition key as text, written the same way Spark writes it."""
    if dtype == "string":
        text = key
    elif dtype == "timestamp":
        text = key.dt.strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = key.cast(pl.String)
    return text.fill_null(NULL_PARTITION)


@contextmanager
def _polars_errors(what: str) -> Iterator[None]:
    """Turn Polars (and I/O) failures into one-line :class:`EngineError`."""
    try:
        yield
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        msg = f"polars could not {what}: {first}"
        raise EngineError(msg) from exc
