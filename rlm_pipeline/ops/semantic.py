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
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from rlm_pipeline.engines.kinds import is_spark_frame
from rlm_pipeline.errors import UnansweredRowsError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.core import RowProgress
from rlm_pipeline.ops.extract_op import ExtractSpec, FieldType
from rlm_pipeline.ops.filter_op import FilterSpec, OnError, check_on_error
from rlm_pipeline.ops.stats import OpStats, failure_summary

__all__ = [
    "FilterStats",
    "extract",
    "filter",
    "raise_unanswered",
    "run_extract",
    "run_filter",
]

logger = logging.getLogger(__name__)

_EMPTY = "empty_input"


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
        errors = {k: n for k, n in stats.errors.items() if k != _EMPTY}
        blank = stats.errors.get(_EMPTY, 0)
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


def _run(data: Any, spec: Any, llm: LLM, **kwargs: Any) -> tuple[Any, OpStats]:
    from rlm_pipeline.ops.api import run_op

    return run_op(data, spec, llm, warn=False, **kwargs)  # type: ignore[no-any-return]


def _rows_where(out: Any, keep: Any, drop: list[str]) -> Any:
    """``out``'s rows where the Polars / Spark condition ``keep`` holds, columns ``drop`` removed."""
    if is_spark_frame(out):
        return out.filter(keep).drop(*drop)
    return out.filter(keep).drop(drop)


def _filter_rows(out: Any, spec: FilterSpec, on_error: str) -> Any:
    value, error = spec.output_column, spec.error_column
    failed: Any
    keep: Any
    if is_spark_frame(out):
        from pyspark.sql import functions as F  # noqa: N812

        failed = F.col(error).isNotNull() & ~F.col(error).startswith(_EMPTY)
        keep = F.coalesce(F.col(value), F.lit(False))
    else:
        failed = pl.col(error).is_not_null() & ~pl.col(error).str.starts_with(_EMPTY)
        keep = pl.col(value).fill_null(False)
    if on_error == "keep":
        return _rows_where(out, keep | failed, [value])
    return _rows_where(out, keep, [value, error])


def raise_unanswered(stats: FilterStats, llm: LLM) -> None:
    """Raise :class:`~rlm_pipeline.errors.UnansweredRowsError` for ``stats``' failed rows."""
    hint = (
        "the answered rows are stored in the cache file, so a re-run asks only the failed ones"
        if llm.cache_path
        else "set LLM(cache_path=...) so a re-run asks only the failed ones"
    )
    reasons = ", ".join(f"{k} {n:,}" for k, n in sorted(stats.errors.items()))
    msg = (
        f"filter: {stats.failed:,} of {stats.rows:,} rows have no answer ({reasons}); "
        f"nothing returned. Re-run the same call ({hint}), or pass on_error='keep' or "
        "'drop' to keep or drop them"
    )
    raise UnansweredRowsError(
        msg, op="filter", failed=stats.failed, rows=stats.rows, errors=stats.errors
    )


def run_filter(
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
) -> tuple[Any, FilterStats]:
    """:func:`filter`, returning the frame and :class:`FilterStats` (where every row went)."""
    on_error = check_on_error(on_error)
    spec = FilterSpec(
        column=column,
        condition=condition,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, op_stats = _run(
        data, spec, llm, engine=engine, meter=meter, budget=budget, progress=progress
    )
    stats = FilterStats.of(op_stats, on_error)
    if stats.failed and on_error == "raise":
        raise_unanswered(stats, llm)
    level = logging.WARNING if stats.failed else logging.INFO
    logger.log(level, "%s", stats.line())
    return _filter_rows(out, spec, on_error), stats


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
    out, _ = run_filter(
        data,
        column,
        condition,
        llm,
        on_error,
        batch_size,
        engine,
        budget=budget,
        meter=meter,
        progress=progress,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return out


def run_extract(
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
    warn: bool = True,
) -> tuple[Any, OpStats]:
    """:func:`extract`, returning the frame and the fan-out's :class:`~rlm_pipeline.ops.stats.OpStats`."""
    spec = ExtractSpec(
        column=column,
        fields=fields,  # type: ignore[arg-type]  # checked and frozen by the spec
        instructions=instructions,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, stats = _run(
        data,
        spec,
        llm,
        engine=engine,
        meter=meter,
        budget=budget,
        progress=progress,
        overwrite=overwrite,
    )
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
    out, _ = run_extract(
        data,
        column,
        fields,
        llm,
        instructions,
        batch_size,
        engine,
        budget=budget,
        meter=meter,
        progress=progress,
        overwrite=overwrite,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return out
