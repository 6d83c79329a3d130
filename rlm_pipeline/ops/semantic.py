"""Public row-wise semantic operators beyond classify: :func:`filter` and :func:`extract`.

Both take a table in any form rlm_pipeline reads and return the same kind of
frame (Polars ``DataFrame`` / ``LazyFrame``, Spark ``DataFrame``; other inputs
give a Polars ``DataFrame``), through the same fan-out as
:func:`~rlm_pipeline.ops.api.classify`: blank rows are never sent, identical
texts are asked once, ``batch_size`` rows per call, every reply checked row by
row and bad rows re-asked, checked answers stored per row when
``llm.cache_path`` is set (a re-run asks only what is not answered yet), and
the limits of ``llm`` and ``budget`` hold for the whole call.

- :func:`filter` keeps the rows where a condition holds.  Rows whose answer
  failed are never kept or dropped silently: ``on_error="raise"`` (default)
  raises :class:`~rlm_pipeline.errors.UnansweredRowsError` naming the count
  and how to re-run; ``"keep"`` / ``"drop"`` keep or drop them and log the
  counts.  Rows with a blank text are dropped (nothing to judge) and counted.
- :func:`extract` adds one typed column per field, null when the text does
  not state it, and ``extract_error`` (null, or why the row has no values).

Examples
--------
>>> import polars as pl
>>> llm = LLM(base_url="http://127.0.0.1:9/v1")
>>> frame = pl.DataFrame({"q": [None, ""]})
>>> filter(frame, "q", "asks for a refund", llm).height  # blank rows: dropped, no call
0
>>> extract(frame, "q", {"amount": "number"}, llm).columns
['q', 'amount', 'extract_error']
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlm_pipeline.errors import RLMPipelineError, UnansweredRowsError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.cascade import Cascade
from rlm_pipeline.ops.core import RowProgress
from rlm_pipeline.ops.extract_op import ExtractSpec, FieldType
from rlm_pipeline.ops.filter_op import FilterSpec, OnError, check_on_error
from rlm_pipeline.ops.spark_step import SparkStep
from rlm_pipeline.ops.stats import EMPTY_INPUT, OpStats, failure_summary

if TYPE_CHECKING:
    from rlm_pipeline.engines.base import Engine

__all__ = [
    "FilterStats",
    "FilterStep",
    "extract",
    "filter",
    "judge",
    "raise_unanswered",
    "rerun_hint",
    "run_extract",
    "run_filter",
]

logger = logging.getLogger(__name__)

#: Start of the error a lazy Spark filter's action fails with (then the first failed row's reason).
UNANSWERED_AT_ACTION = "filter: rows have no answer; nothing returned. First failed row: "
_AT_ACTION = re.compile(re.escape(UNANSWERED_AT_ACTION) + r"([^\n]*?)(?:\s+SQLSTATE: \w+)?(?:\n|$)")


@dataclass(frozen=True)
class FilterStats:
    """Where every input row of one :func:`filter` call went.

    ``kept + dropped + failed == rows`` always; the output holds ``kept`` rows,
    plus the ``failed`` ones when ``on_error="keep"``.

    Attributes
    ----------
    rows
        Input rows.
    kept
        Rows where the condition holds.
    dropped
        Rows where it does not, and rows with a blank text (``blank``).
    failed
        Rows without a trustworthy answer (reasons in ``errors``).
    blank
        Rows with a null or blank text (never sent; part of ``dropped``).
    errors
        Failed rows by reason kind (``api_error``, ``parse_error``, ...).
    on_error
        What was done with the failed rows.
    returned
        Rows in the output.
    usage, cached_rows
        What the run spent, and rows answered from stored answers.
    """

    rows: int
    kept: int
    dropped: int
    failed: int
    blank: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    on_error: str = "raise"
    returned: int = 0
    usage: Usage = field(default_factory=Usage)
    cached_rows: int = 0

    @classmethod
    def of(cls, stats: OpStats, on_error: str) -> FilterStats:
        """From the fan-out's counts (``true`` / ``false`` values, errors by kind)."""
        errors = {k: n for k, n in stats.errors.items() if k != EMPTY_INPUT}
        blank = stats.errors.get(EMPTY_INPUT, 0)
        kept = stats.values.get("true", 0)
        failed = sum(errors.values())
        returned = kept + (failed if on_error == "keep" else 0)
        return cls(
            rows=stats.rows,
            kept=kept,
            dropped=stats.values.get("false", 0) + blank,
            failed=failed,
            blank=blank,
            errors=errors,
            on_error=on_error,
            returned=returned,
            usage=stats.usage,
            cached_rows=stats.cached_rows,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for JSON output."""
        return {
            "rows": self.rows,
            "kept": self.kept,
            "dropped": self.dropped,
            "failed": self.failed,
            "blank": self.blank,
            "errors": dict(self.errors),
            "on_error": self.on_error,
            "returned": self.returned,
            "cached_rows": self.cached_rows,
            "usage": self.usage.to_dict(),
        }

    def line(self) -> str:
        """One line for logs and the CLI."""
        reasons = ", ".join(f"{k} {n:,}" for k, n in sorted(self.errors.items()))
        failed = f"{self.failed:,} failed ({reasons}; on_error={self.on_error})"
        blank = f" (of which {self.blank:,} blank)" if self.blank else ""
        return (
            f"filter: {self.rows:,} rows: {self.kept:,} kept, {self.dropped:,} dropped{blank}, "
            f"{failed if self.failed else '0 failed'}; {self.returned:,} returned"
        )


def _run(
    data: Any, spec: FilterSpec | ExtractSpec, llm: LLM, engine: str | None, **options: Any
) -> tuple[Engine, Any, OpStats]:
    """The engine (chosen once, from ``data`` or ``engine``), and what ``run_op`` returns."""
    from rlm_pipeline.engines.load import engine_for
    from rlm_pipeline.ops.api import run_op

    chosen = engine_for(data, engine)
    out, stats = run_op(data, spec, llm, engine=chosen.name, warn=False, **options)
    return chosen, out, stats


def raise_unanswered(stats: FilterStats, llm: LLM) -> None:
    """Raise :class:`~rlm_pipeline.errors.UnansweredRowsError` for ``stats``' failed rows."""
    reasons = ", ".join(f"{k} {n:,}" for k, n in sorted(stats.errors.items()))
    msg = (
        f"filter: {stats.failed:,} of {stats.rows:,} rows have no answer ({reasons}); "
        f"nothing returned. {rerun_hint(llm)}"
    )
    raise UnansweredRowsError(
        msg, op="filter", failed=stats.failed, rows=stats.rows, errors=stats.errors
    )


def rerun_hint(llm: LLM) -> str:
    """How to get the failed rows answered: re-run (with a cache file), or say what to do with them."""
    hint = (
        "the answered rows are stored in the cache file, so a re-run asks only the failed ones"
        if llm.cache_path
        else "set LLM(cache_path=...) so a re-run asks only the failed ones"
    )
    return f"Re-run the same call ({hint}), or pass on_error='keep' or 'drop' to keep or drop them"


def judge(op_stats: OpStats, on_error: str, llm: LLM) -> FilterStats:
    """Where a filter's rows went (:class:`FilterStats`); raises for failed rows with ``on_error="raise"``.

    Logs the counts (a warning when rows failed).  Shared by :func:`run_filter`,
    the Polars expression and the CLI.
    """
    stats = FilterStats.of(op_stats, on_error)
    if stats.failed and on_error == "raise":
        raise_unanswered(stats, llm)
    level = logging.WARNING if stats.failed else logging.INFO
    logger.log(level, "%s", stats.line())
    return stats


def run_filter(
    data: Any,
    spec: FilterSpec,
    llm: LLM,
    on_error: OnError = "raise",
    *,
    engine: str | None = None,
    **options: Any,
) -> tuple[Any, FilterStats]:
    """:func:`filter` of a built :class:`~rlm_pipeline.ops.filter_op.FilterSpec`: the frame and :class:`FilterStats`.

    ``options``: ``budget``, ``meter``, ``progress``, ``cascade`` (as for :func:`filter`).
    The keep/drop is the engine's (:meth:`~rlm_pipeline.engines.base.Engine.rows_where`).
    """
    on_error = check_on_error(on_error)
    chosen, out, op_stats = _run(data, spec, llm, engine, **options)
    stats = judge(op_stats, on_error, llm)
    kept = chosen.rows_where(
        out,
        spec.output_column,
        failed=spec.error_column,
        failed_rows="keep" if on_error == "keep" else "drop",
        blank=EMPTY_INPUT,
    )
    return kept, stats


class FilterStep(SparkStep):
    """``rp.spark.filter``'s lazy step: the answered plan, then the engine's keep/drop.

    ``df.transform(step)`` makes no model call; the action that runs the plan
    answers the rows.  ``on_error="raise"`` puts a check in the plan: the
    action fails on the first row without an answer (inside
    :meth:`~rlm_pipeline.ops.spark_step.SparkStep.typed_errors`, as
    :class:`~rlm_pipeline.errors.UnansweredRowsError`); ``"keep"`` keeps those
    rows with their reason in ``filter_error``, ``"drop"`` drops them.  After
    an action, :attr:`filter_stats` says where every row went.

    Examples
    --------
    >>> step = FilterStep(FilterSpec("q", "is urgent"), LLM(), "drop")
    >>> step.on_error, step.filter_stats is None
    ('drop', True)
    """

    def __init__(
        self, spec: FilterSpec, llm: LLM, on_error: OnError = "raise", *, budget: Budget | None = None
    ) -> None:
        super().__init__(spec, llm, budget=budget)
        self.on_error = check_on_error(on_error)

    def finish(self, engine: Engine, planned: Any) -> Any:
        """``planned``'s rows where the condition holds (:meth:`Engine.rows_where`), lazily."""
        return engine.rows_where(
            planned,
            self.spec.output_column,
            failed=self.spec.error_column,
            failed_rows=self.on_error,
            blank=EMPTY_INPUT,
            message=UNANSWERED_AT_ACTION,
        )

    @property
    def filter_stats(self) -> FilterStats | None:
        """Kept / dropped / failed rows of the last action (None before one)."""
        stats = self.stats
        return None if stats is None else FilterStats.of(stats, self.on_error)

    def typed_error(self, exc: BaseException) -> RLMPipelineError | None:
        """The typed error of a failed action: the endpoint's or the reply breaker's, or a
        row without an answer (:class:`~rlm_pipeline.errors.UnansweredRowsError`)."""
        typed = super().typed_error(exc)
        found = _AT_ACTION.search(str(exc)) if typed is None else None
        if found is None:
            return typed
        msg = f"{UNANSWERED_AT_ACTION}{found.group(1)}. {rerun_hint(self.llm)}"
        return UnansweredRowsError(msg, op="filter")


def filter(  # noqa: A001 - rp.filter, as in DESIGN.md
    data: Any,
    column: str,
    condition: str,
    llm: LLM,
    on_error: OnError = "raise",
    batch_size: int = 16,
    engine: str | None = None,
    *,
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
    progress: RowProgress | None = None,
    max_row_tokens: int = 8_000,
    truncate: bool = False,
    cascade: Cascade | None = None,
) -> Any:
    """The rows of ``data`` whose ``column`` meets ``condition``, as judged by the model.

    Parameters
    ----------
    data
        Polars DataFrame/LazyFrame, Spark DataFrame, Parquet file/dir/glob,
        CSV or JSONL file, pyarrow Table or pandas DataFrame.
    column
        The text column.
    condition
        The condition in plain words, e.g. ``"asks for a refund"``.
    llm
        Endpoint, limits, retries and cache (see :func:`~rlm_pipeline.ops.api.classify`).
    on_error
        What to do with rows whose answer failed (after re-asks):
        ``"raise"`` (default) raises :class:`~rlm_pipeline.errors.UnansweredRowsError`
        naming the count, and returns nothing; ``"keep"`` keeps them, with the
        reason in a ``filter_error`` column (null on the rows that met the
        condition); ``"drop"`` drops them.  Either way the counts are logged.
    batch_size
        Rows per call (1 for small local models).
    engine
        ``"polars"`` or ``"spark"``; inferred from ``data`` when None.
    budget, meter, progress, max_row_tokens, truncate
        As for :func:`~rlm_pipeline.ops.api.classify`.  Rows left unanswered by
        a budget stop are failed rows (``budget_exceeded``).
    cascade
        A :class:`~rlm_pipeline.ops.cascade.Cascade`: its ``proxy`` judges every
        row first, and only rows below the confidence calibrated against
        ``llm`` go to ``llm`` (see ``docs/cascades.md``); the output then also
        has ``filter_source`` (``proxy``/``oracle``) and ``filter_confidence``.

    Returns
    -------
    The same kind of frame with the rows kept, in input order, and the input's
    columns (plus ``filter_error`` with ``on_error="keep"``).  Spark: lazy
    over the answers, which are computed once.

    Raises
    ------
    UnansweredRowsError
        ``on_error="raise"`` and some rows have no answer.
    InputError
        Bad arguments or a missing column.

    Examples
    --------
    >>> import polars as pl
    >>> filter(pl.DataFrame({"q": [None]}), "q", "is urgent", LLM(base_url="http://127.0.0.1:9/v1")).height
    0
    """
    spec = FilterSpec(
        column=column,
        condition=condition,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    options: dict[str, Any] = {"cascade": cascade} if cascade is not None else {}
    out, _ = run_filter(
        data, spec, llm, on_error, engine=engine, budget=budget, meter=meter, progress=progress,
        **options,
    )
    return out


def run_extract(
    data: Any,
    spec: ExtractSpec,
    llm: LLM,
    *,
    engine: str | None = None,
    warn: bool = True,
    **options: Any,
) -> tuple[Any, OpStats]:
    """:func:`extract` of a built :class:`~rlm_pipeline.ops.extract_op.ExtractSpec`: the frame and its :class:`~rlm_pipeline.ops.stats.OpStats`.

    ``options``: ``budget``, ``meter``, ``progress``, ``overwrite`` (as for
    :func:`extract`); ``warn`` logs one line when rows are left without values.
    """
    _, out, stats = _run(data, spec, llm, engine, **options)
    if warn:
        line = failure_summary("extract", stats, "values", cached=bool(llm.cache_path))
        if line is not None:
            logger.warning("%s", line)
    return out, stats


def extract(
    data: Any,
    column: str,
    fields: dict[str, FieldType] | dict[str, Any],
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = 16,
    engine: str | None = None,
    *,
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
    progress: RowProgress | None = None,
    overwrite: bool = False,
    max_row_tokens: int = 8_000,
    truncate: bool = False,
) -> Any:
    """Read typed ``fields`` off every row's ``column``: one column per field, plus ``extract_error``.

    Parameters
    ----------
    data
        Any input :func:`~rlm_pipeline.ops.api.classify` takes.
    column
        The text column.
    fields
        ``{name: type}``: ``"string"``, ``"integer"``, ``"number"``,
        ``"boolean"``, ``"date"``, or a list of allowed strings (an enum).
        Names are identifiers; at most 32 fields.
    llm
        Endpoint, limits, retries and cache.
    instructions
        Extra guidance (what a field means, units, edge cases).
    batch_size, engine, budget, meter, progress, overwrite, max_row_tokens, truncate
        As for :func:`~rlm_pipeline.ops.api.classify` (``overwrite`` lets the
        field columns or ``extract_error`` replace input columns of that name).

    Returns
    -------
    Every input row once, in input order, with one column per field (Polars
    ``String`` / ``Int64`` / ``Float64`` / ``Boolean`` / ``Date``; Spark
    ``string`` / ``bigint`` / ``double`` / ``boolean`` / ``date``) and
    ``extract_error``.  A null field with a null ``extract_error``: the text
    does not state it.  A row with a reason in ``extract_error`` has every
    field null; the reason starts with ``empty_input``, ``input_too_long``,
    ``parse_error`` (a field of the wrong type or missing — never cast),
    ``missing_in_reply``, ``api_error`` or ``budget_exceeded``.

    Examples
    --------
    >>> import polars as pl
    >>> llm = LLM(base_url="http://127.0.0.1:9/v1")
    >>> extract(pl.DataFrame({"q": [""]}), "q", {"day": "date"}, llm).schema["day"]
    Date
    """
    spec = ExtractSpec(
        column=column,
        fields=fields,  # type: ignore[arg-type]  # checked and frozen by the spec
        instructions=instructions,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, _ = run_extract(
        data,
        spec,
        llm,
        engine=engine,
        budget=budget,
        meter=meter,
        progress=progress,
        overwrite=overwrite,
    )
    return out
