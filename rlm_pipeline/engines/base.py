"""The one narrow protocol every engine implements.

An engine holds a registry of *views*: names chosen by the host (``context``)
or by the model (``billing``, ``by_user``...) mapped to lazily evaluated plans
(a Polars ``LazyFrame`` or a Spark ``DataFrame``).  Model-facing operations
take SQL text, which the engine hands to :mod:`rlm_pipeline.expr` to check and
compile; nothing the model writes reaches anything but registered views.

Everything crosses this boundary as plain Python values or Arrow tables.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from rlm_pipeline.ops.stats import EMPTY_INPUT

if TYPE_CHECKING:
    import pyarrow as pa

    from rlm_pipeline.engines.reads import ValueCounts
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.spec_base import OpSpec
    from rlm_pipeline.ops.stats import OpStats

__all__ = ["Engine", "FailedRows", "Fanout", "KeyCheck", "RowProgress"]

#: Called with (rows finished, of which failed) as rows finish.
RowProgress = Callable[[int, int], None]
#: What :meth:`Engine.rows_where` does with failed rows.
FailedRows = Literal["drop", "keep", "raise"]


class Fanout(Protocol):
    """The operators' fan-outs, as the engines call them (supplied by :mod:`rlm_pipeline.ops`).

    The engines never import the operators: the caller passes this in, and each
    engine calls the methods of its own kind.
    """

    async def polars(self, frame: Any, spec: OpSpec, client: Any) -> tuple[Any, OpStats]:
        """Answer a Polars frame through ``client`` in the running loop; a DataFrame back."""
        ...

    def polars_frame(
        self,
        frame: Any,
        spec: OpSpec,
        llm: LLM,
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
        progress: RowProgress | None,
    ) -> tuple[Any, OpStats]:
        """Answer a Polars DataFrame (in one go) or LazyFrame (streamed in slices); same kind back."""
        ...

    def polars_parquet(
        self,
        frame: Any,
        spec: OpSpec,
        llm: LLM,
        path: str | os.PathLike[str],
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
        progress: RowProgress | None,
    ) -> OpStats:
        """Stream a Polars LazyFrame's answered slices into the Parquet file ``path``."""
        ...

    def spark(
        self,
        frame: Any,
        spec: OpSpec,
        llm: LLM,
        *,
        meter: UsageMeter | None,
        budget: Budget | None,
        progress: RowProgress | None = None,
    ) -> tuple[Any, OpStats]:
        """Answer a Spark DataFrame as executor tasks; the materialised result back."""
        ...


@dataclass(frozen=True)
class KeyCheck:
    """Whether a column can serve as a row key (:meth:`Engine.key_check`).

    Attributes
    ----------
    nulls
        Rows where the column is null.
    duplicated
        Non-null rows whose value another row has too (0: unique).
    example
        One repeated value, when there is one (which one is up to the engine).
    """

    nulls: int
    duplicated: int
    example: Any = None


@runtime_checkable
class Engine(Protocol):
    """A registry of named, lazily evaluated views over one engine.

    Implementations: :class:`~rlm_pipeline.engines.polars.PolarsEngine` and
    :class:`~rlm_pipeline.engines.spark.SparkEngine`; build one with
    :func:`~rlm_pipeline.engines.load.open_engine`.

    Examples
    --------
    >>> import polars as pl
    >>> from rlm_pipeline.engines import open_engine
    >>> eng = open_engine(pl.DataFrame({"x": [1, 2, 3]}))
    >>> eng.name, eng.views(), eng.count("context")
    ('polars', ['context'], 3)
    """

    #: ``"polars"`` or ``"spark"``.
    name: str
    #: True when :meth:`map_llm` runs as tasks with clients of their own built from
    #: ``client.config`` (Spark), False when every call goes through ``client`` (Polars).
    fans_out_in_tasks: bool

    def register(self, name: str, data: Any, *, replace: bool = False) -> None:
        """Register ``data`` (a native frame of this engine, or an Arrow table) as view ``name``.

        Host-side call: unlike the model-facing operations it may create ``context``.

        Parameters
        ----------
        name
            View name: letters, digits and ``_``, not starting with a digit.
        data
            A ``LazyFrame``/``DataFrame`` (Polars), a Spark ``DataFrame``, or a ``pa.Table``.
        replace
            Allow replacing an existing view of that name.
        """
        ...

    def views(self) -> list[str]:
        """Names of the registered views, in registration order."""
        ...

    def schema(self, view: str) -> dict[str, str]:
        """Column name -> neutral type name (``string``, ``int64``, ``float64``, ``bool``,
        ``date``, ``timestamp``, or ``other:<engine type>``)."""
        ...

    def count(self, view: str) -> int:
        """Number of rows of ``view``, computed without collecting the rows."""
        ...

    def head(self, view: str, n: int = 5, columns: list[str] | None = None) -> pa.Table:
        """First ``n`` rows (at most 20) of ``view``, each text cell cut to ~200 characters."""
        ...

    def value_counts(self, view: str, column: str, *, max_values: int) -> ValueCounts:
        """Every distinct value of ``column`` with its row count: the library's own read.

        Not the model's preview (:meth:`head`): no 20-row cap, no cut cells.  An
        aggregation in the engine (one row per distinct value comes back, never the
        rows); values keep their type, nulls form one group and sort first, then the
        values ascending.  At most ``max_values`` (1 ..
        :data:`~rlm_pipeline.engines.reads.MAX_VALUE_COUNTS`) values are returned;
        ``distinct`` is exact either way, so a caller can refuse "300 values, at most
        64" before doing anything.  See :mod:`rlm_pipeline.engines.reads`.
        """
        ...

    def filter_value(self, view: str, column: str, value: Any, name: str) -> None:
        """Register the rows of ``view`` whose ``column`` equals ``value`` as ``name``.

        The library's exact key match (``recurse``), with no SQL text in between:
        ``value`` is one of the values :meth:`value_counts` returned (any length, any
        type); ``None`` selects the rows where ``column`` is null, and NaN matches NaN.
        Lazy: nothing is computed (the caller has the count from :meth:`value_counts`).
        """
        ...

    def filter(self, view: str, where: str, name: str) -> int:
        """Register the rows of ``view`` where the SQL condition ``where`` holds as ``name``.

        Returns the new view's row count.
        """
        ...

    def partition(
        self, view: str, by: str | None = None, n: int | None = None, *, name: str
    ) -> dict[str, int]:
        """Register ``view`` plus a string column ``partition`` as view ``name``.

        Give exactly one of ``by`` (a column or SQL expression; each distinct value is a
        partition, nulls go to ``"(null)"``) or ``n`` (that many balanced chunks of
        contiguous rows, labelled ``"0"``.. zero-padded).  Returns partition -> rows,
        sorted by partition.
        """
        ...

    def sql(self, query: str, name: str) -> int:
        """Run a checked read-only SELECT over registered views; register it as ``name``.

        Returns the new view's row count.
        """
        ...

    def to_arrow(self, view: str, columns: list[str] | None = None) -> pa.Table:
        """All rows of ``view`` (only ``columns`` when given) as an Arrow table (collects: mind the size)."""
        ...

    def frame(self, view: str) -> Any:
        """The native plan of ``view``: a Polars ``LazyFrame`` or a Spark ``DataFrame``."""
        ...

    def frame_like(self, view: str, given: Any) -> Any:
        """``view`` as the kind of frame the caller gave (``given``: the caller's data).

        Polars: a ``LazyFrame`` for a ``LazyFrame``, else a collected
        ``DataFrame``; Spark: a Spark ``DataFrame``.
        """
        ...

    def read(self, data: Any, *, lazy: bool = True) -> Any:
        """``data`` as this engine's native frame (host-side: the user's data, not a view).

        Polars keeps a ``DataFrame`` or ``LazyFrame`` as it is and scans files
        lazily (``lazy=False``: other data is read into a ``DataFrame``); Spark
        reads anything into a Spark ``DataFrame`` of its session.

        Raises
        ------
        InputError
            Unsupported data, missing or unreadable files.
        """
        ...

    def map_frame(
        self,
        frame: Any,
        spec: OpSpec,
        llm: LLM,
        *,
        fanout: Fanout,
        meter: UsageMeter | None = None,
        budget: Budget | None = None,
        progress: RowProgress | None = None,
        overwrite: bool = True,
        write_to: str | os.PathLike[str] | None = None,
    ) -> tuple[Any, OpStats]:
        """Run ``spec`` over a native ``frame`` (from :meth:`read`) with one client of its own.

        The frame form of :meth:`map_llm`, for the host (``rp.classify``, the CLI,
        the jobs): the same fan-out, outside any event loop.  Every input row comes
        back once, in order, with the spec's output columns and its error column.
        Polars returns the kind of frame it got (a ``LazyFrame`` is streamed in
        slices); Spark returns the materialised result.  With ``write_to`` the
        result goes to that Parquet file instead (Polars streams it slice by slice
        with bounded memory) and the frame returned is None on Polars.

        Parameters
        ----------
        frame
            A native frame of this engine.
        spec
            The operator (:class:`~rlm_pipeline.ops.spec_base.OpSpec`).
        llm
            Endpoint and limits for the whole call (Spark shares them out over tasks).
        fanout
            The operators' fan-outs (:data:`rlm_pipeline.ops.fanout.FANOUT`).
        meter, budget, progress
            Usage recorded here; limits checked against it; row progress.
        overwrite
            False refuses a frame that already has an output column, before any call.
        write_to
            A Parquet file to write the result to.

        Raises
        ------
        InputError
            The text column is missing, or an output column exists and not ``overwrite``.
        """
        ...

    def column_texts(self, frame: Any, column: str) -> list[str | None]:
        """The values of ``column`` of a native frame as text (nulls kept), in row order.

        Raises
        ------
        InputError
            ``column`` is not in the frame.
        """
        ...

    def rows_where(
        self,
        frame: Any,
        holds: str,
        *,
        failed: str | None = None,
        failed_rows: FailedRows = "drop",
        blank: str = EMPTY_INPUT,
        message: str = "",
    ) -> Any:
        """The rows of a native ``frame`` where the boolean column ``holds`` is true (the filter's keep/drop).

        Lazy as the frame is (a Polars ``LazyFrame`` or a Spark ``DataFrame``
        stays a plan, a Polars ``DataFrame`` is filtered at once); rows keep
        their order and ``holds`` is removed.  A null in ``holds`` counts as
        false.

        Parameters
        ----------
        frame
            A native frame of this engine holding ``holds`` (and ``failed``).
        holds
            The boolean answer column.
        failed
            The reason column (null, or why the row has no answer); a row whose
            reason is set and does not start with ``blank`` is a *failed* row.
        failed_rows
            ``"drop"``: failed rows go, and so does ``failed``; ``"keep"``: they
            stay, with their reason in ``failed``; ``"raise"``: evaluating the
            result fails on the first failed row, with ``message`` followed by
            its reason (Polars: :class:`~rlm_pipeline.errors.UnansweredRowsError`;
            Spark: the action fails with that text, which
            :meth:`~rlm_pipeline.ops.spark_step.SparkStep.typed_errors` turns
            back into the typed error), and ``failed`` goes.
        blank
            The reason prefix of rows that were not asked (blank texts): never failed rows.
        message
            The start of the error text for ``failed_rows="raise"``.

        Examples
        --------
        >>> import polars as pl
        >>> from rlm_pipeline.engines.polars import PolarsEngine
        >>> frame = pl.DataFrame({"q": ["a", "b", "c"], "ok": [True, None, False],
        ...                       "why": [None, "api_error: 500", None]})
        >>> PolarsEngine().rows_where(frame, "ok", failed="why", failed_rows="keep")["q"].to_list()
        ['a', 'b']
        """
        ...

    def key_check(self, view: str, column: str) -> KeyCheck:
        """Nulls and repeats of ``column`` in ``view`` (one aggregation; no rows collected)."""
        ...

    async def map_llm(
        self, view: str, spec: OpSpec, client: LLMClient, name: str, *, fanout: Fanout
    ) -> OpStats:
        """Fan one model sub-call per row batch of ``view`` out and register the result as
        ``name``; returns the operator's stats, whose ``usage`` is this fan-out's own
        (``client`` may serve other work at the same time: no meter difference).

        The one entry of a fan-out on any engine.  Polars runs it in the caller's
        event loop through ``client`` (every call under its semaphore and limiters);
        Spark runs it as executor tasks that share ``client.config`` out (usage onto
        ``client.meter``, within its budget).

        Parameters
        ----------
        view
            The input view.
        spec
            The operator (:class:`~rlm_pipeline.ops.spec_base.OpSpec`).
        client
            The model client (and, on Spark, the config, meter and budget it holds).
        name
            The new view (output and error columns added, every input row once).
        fanout
            The operators' fan-outs (:data:`rlm_pipeline.ops.fanout.FANOUT`).
        """
        ...

    def open_child(self, data: Any) -> Engine:
        """A new, empty engine of the same kind (and session) with ``data`` as view ``context``.

        ``recurse`` opens one per partition: the child never decides Polars vs
        Spark again, it is whatever its parent is.

        Parameters
        ----------
        data
            A native frame of this engine (from :meth:`frame`) or a ``pa.Table``.
        """
        ...

    def close(self) -> None:
        """Drop every view (Spark: the session's temp views this engine made)."""
        ...

    def drop(self, name: str) -> None:
        """Forget view ``name`` (Spark: drop its temp view); no view of that name: nothing to do.

        Host-side: operators drop their scratch views with it when they end.
        """
        ...
