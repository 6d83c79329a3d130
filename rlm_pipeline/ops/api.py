"""Public semantic operators: :func:`classify`, :func:`llm_map` and :func:`estimate`.

They take a table in any form rlm_pipeline reads and return the same kind of
frame: a Polars ``DataFrame`` for a ``DataFrame``, a ``LazyFrame`` for a
``LazyFrame`` (streamed in slices, result held in memory), a Spark
``DataFrame`` for a Spark ``DataFrame`` (materialised once on the executors,
so later actions never call the model again).  Other inputs (Parquet path,
CSV, JSONL, pyarrow Table, pandas) are read with Polars and give a Polars
``DataFrame``.  For data bigger than memory use
:func:`rlm_pipeline.ops.polars_fanout.classify_to_parquet` or the CLI.

Every input row comes out exactly once, in input order, with the new value
column (null when there is no trustworthy answer) and ``<output_column>_error``
(null, or the reason: ``empty_input``, ``input_too_long``, ``parse_error``,
``invalid_label``, ``missing_in_reply``, ``api_error``, ``budget_exceeded``).
With ``llm.cache_path`` set, every checked answer is stored per row (not per
batch) and failures never are, so a re-run — with any batch size above 1, Spark
partitioning or extra rows — re-asks only the rows not answered yet (one-row
calls are worded otherwise, so ``batch_size=1`` keeps its answers apart).

Failing loudly, before any model call: an output column that already exists
in the input raises :class:`~rlm_pipeline.errors.InputError` unless
``overwrite=True``; ``labels`` given as one string raises ``TypeError``.  A
cell longer than ``max_row_tokens`` estimated tokens (default
:data:`~rlm_pipeline.ops.spec.DEFAULT_MAX_ROW_TOKENS`) is never sent: it gets
``input_too_long``, or is cut to the limit with ``truncate=True``.  After the
run, rows left without a value (blank inputs aside) are logged as one
warning on the ``rlm_pipeline.ops.api`` logger, with counts by reason.

Examples
--------
>>> import polars as pl
>>> llm = LLM(base_url="http://127.0.0.1:9/v1")
>>> classify(pl.DataFrame({"q": [None, ""]}), "q", ["a", "b"], llm)["label_error"].to_list()
['empty_input', 'empty_input']
"""

from __future__ import annotations

import logging
from typing import Any

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops.cascade import Cascade
from rlm_pipeline.ops.core import RowProgress
from rlm_pipeline.ops.estimate import Estimate, estimate_texts
from rlm_pipeline.ops.spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_ROW_TOKENS,
    ClassifySpec,
    MapSpec,
    OpSpec,
    OutputType,
    check_labels,
)
from rlm_pipeline.ops.stats import OpStats, failure_summary

__all__ = ["Estimate", "classify", "estimate", "llm_map", "run_op"]

logger = logging.getLogger(__name__)


def run_op(
    data: Any,
    spec: OpSpec,
    llm: LLM,
    *,
    engine: str | None = None,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
    overwrite: bool = False,
    warn: bool = True,
    cascade: Cascade | None = None,
) -> tuple[Any, OpStats]:
    """Run ``spec`` over ``data`` on its engine; the frame and the stats.

    The one front-end of every row-wise operator (:func:`classify`,
    :func:`llm_map`, the Polars namespace, ``rp.spark.*``, and any
    :class:`~rlm_pipeline.ops.spec_base.OpSpec`): the engine is chosen once
    (:func:`rlm_pipeline.engines.load.engine_for`: ``engine=None`` gives Spark
    for a Spark DataFrame, else Polars), reads ``data``
    (:meth:`~rlm_pipeline.engines.base.Engine.read`) and runs the fan-out
    (:meth:`~rlm_pipeline.engines.base.Engine.map_frame`).
    ``overwrite=False`` refuses an input that already has an output column
    (before any model call).  ``warn`` logs one warning when rows are left
    without a value (see :func:`~rlm_pipeline.ops.stats.failure_summary`).
    With ``cascade`` (:class:`~rlm_pipeline.ops.cascade.Cascade`), ``cascade.proxy``
    answers first and ``llm`` only the rows below the calibrated confidence
    (:func:`~rlm_pipeline.ops.cascade.run_cascade`; ``stats.cascade`` has the report).
    """
    from rlm_pipeline.engines.load import engine_for
    from rlm_pipeline.ops.fanout import FANOUT
    from rlm_pipeline.ops.spec_base import check_run_args

    check_run_args(llm, overwrite)
    if cascade is not None:
        from rlm_pipeline.ops.cascade import run_cascade

        out, stats = run_cascade(
            data, spec, llm, cascade, engine=engine, meter=meter, budget=budget,
            progress=progress, overwrite=overwrite,
        )
        _warn_failures(warn, spec, stats, llm)
        return out, stats
    chosen = engine_for(data, engine)
    frame = chosen.read(data, lazy=False)
    out, stats = chosen.map_frame(
        frame,
        spec,
        llm,
        fanout=FANOUT,
        meter=meter,
        budget=budget,
        progress=progress,
        overwrite=overwrite,
    )
    _warn_failures(warn, spec, stats, llm)
    return out, stats


def _warn_failures(warn: bool, spec: OpSpec, stats: OpStats, llm: LLM) -> None:
    """One warning when rows are left without a value (``warn``)."""
    if warn:
        line = failure_summary(spec.op_name, stats, spec.output_column, cached=bool(llm.cache_path))
        if line is not None:
            logger.warning("%s", line)


def classify(
    data: Any,
    column: str,
    labels: list[str] | tuple[str, ...],
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_column: str = "label",
    engine: str | None = None,
    *,
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
    progress: RowProgress | None = None,
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    cascade: Cascade | None = None,
) -> Any:
    """Label every row's ``column`` with one of ``labels``.

    Parameters
    ----------
    data
        Polars DataFrame/LazyFrame, Spark DataFrame, Parquet file/dir/glob,
        CSV or JSONL file, pyarrow Table or pandas DataFrame.
    column
        The text column.
    labels
        Allowed labels: a list of unique, non-empty strings (one string such
        as ``"a,b"`` raises ``TypeError``).
    llm
        Endpoint, limits (``max_concurrency``, ``rpm``, ``tpm`` hold for the
        whole call, across Spark tasks), retries and cache.
    instructions
        Extra guidance (label definitions).
    batch_size
        Rows per call.  Use ``batch_size=1`` with small local models: they
        answer multi-row batches badly (a 0.5B model returned a 4-row batch's
        labels in the order of the label list).
    output_column
        Name of the label column; reasons go to ``<output_column>_error``.
    engine
        ``"polars"`` or ``"spark"``; inferred from ``data`` when None.
    budget
        Spending limits; the run stops cleanly before passing them and the
        unanswered rows get ``budget_exceeded``.
    meter
        Usage is recorded here (read ``meter.snapshot()`` afterwards).
    progress
        Called with ``(rows_finished, rows_failed)`` increments (Polars; Spark
        reports once at the end).
    overwrite
        Replace ``output_column`` / ``<output_column>_error`` when the input
        already has them; by default that raises ``InputError`` before any call.
    max_row_tokens
        Longest cell sent, in estimated tokens (4 characters per token); a
        longer cell gets a null and ``input_too_long`` without a call.
    truncate
        Cut a longer cell to ``max_row_tokens`` (ending ``… [truncated]``)
        and send it, instead of ``input_too_long``.
    cascade
        A :class:`~rlm_pipeline.ops.cascade.Cascade`: its ``proxy`` labels every
        row first with a confidence, and only rows below the threshold
        calibrated against ``llm`` (the oracle) go to ``llm``; adds
        ``<output_column>_source`` (``proxy``/``oracle``) and
        ``<output_column>_confidence``.  See ``docs/cascades.md``.

    Returns
    -------
    The same kind of frame (see the module docstring) with the two new columns
    (four with ``cascade``).

    Raises
    ------
    TypeError
        ``labels`` is a string.
    InputError
        Bad arguments, a missing column, or an existing output column.

    Examples
    --------
    >>> import polars as pl
    >>> out = classify(pl.DataFrame({"q": [None]}), "q", ["a", "b"], LLM(base_url="http://127.0.0.1:9/v1"))
    >>> out.columns
    ['q', 'label', 'label_error']
    """
    spec = ClassifySpec(
        column=column,
        labels=check_labels(labels),
        instructions=instructions,
        batch_size=batch_size,
        output_column=output_column,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, _ = run_op(
        data,
        spec,
        llm,
        engine=engine,
        meter=meter,
        budget=budget,
        progress=progress,
        overwrite=overwrite,
        cascade=cascade,
    )
    return out


def llm_map(
    data: Any,
    column: str,
    instruction: str,
    llm: LLM,
    output_type: OutputType = "string",
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_column: str = "value",
    engine: str | None = None,
    *,
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
    progress: RowProgress | None = None,
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
) -> Any:
    """Compute one typed value per row by applying ``instruction`` to ``column``.

    Same contract and keywords as :func:`classify` (``overwrite``,
    ``max_row_tokens``, ``truncate`` included); the value column has
    ``output_type`` (``string``, ``integer``, ``number``, ``boolean``) and the
    reasons go to ``<output_column>_error``.

    Examples
    --------
    >>> import polars as pl
    >>> llm = LLM(base_url="http://127.0.0.1:9/v1")
    >>> llm_map(pl.DataFrame({"q": [""]}), "q", "Count the words", llm, "integer").dtypes[1]
    Int64
    """
    spec = MapSpec(
        column=column,
        instruction=instruction,
        output_type=output_type,
        batch_size=batch_size,
        output_column=output_column,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, _ = run_op(
        data,
        spec,
        llm,
        engine=engine,
        meter=meter,
        budget=budget,
        progress=progress,
        overwrite=overwrite,
    )
    return out


def estimate(
    data: Any,
    column: str,
    labels: list[str] | tuple[str, ...] | None = None,
    llm: LLM | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    instructions: str | None = None,
    *,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    op: str = "classify",
    **params: Any,
) -> Estimate:
    """What :func:`classify` would send and cost, without calling the model.

    Texts with a stored row answer in ``llm``'s cache file (from any earlier
    run, whatever its batch size or partitioning) count as ``cached`` and
    cost no call.  For the rest it builds the same prompts, counts tokens with
    :func:`rlm_pipeline.llm.tokens.estimate_message_tokens` (the rule the
    simulator reports usage by) and looks each call up in the response cache.
    ``too_long`` counts the rows over ``max_row_tokens``: they are not sent
    (or, with ``truncate=True``, sent cut to the limit, as :func:`classify`
    would).

    ``op`` names another operator, whose own arguments follow as keywords:
    ``op="filter"`` (``condition``), ``op="extract"`` (``fields``, and
    ``instructions``), ``op="aggregate"`` (``instruction``, ``by``, ...), ``op="top_k"``
    (``criterion``, ``k``, ...), ``op="join"`` (``right``, ``right_column``,
    ``condition``, ``block_on``, ...); see
    :data:`rlm_pipeline.ops.multi_estimate.ESTIMATES`.

    Examples
    --------
    >>> import polars as pl
    >>> est = estimate(pl.DataFrame({"q": ["a", "a", "b"]}), "q", ["x", "y"], LLM())
    >>> est.rows, est.distinct_texts, est.calls
    (3, 2, 1)
    >>> estimate(pl.DataFrame({"q": ["a", "b"]}), "q", llm=LLM(), op="top_k", criterion="x", k=1).calls
    2
    """
    if not isinstance(llm, LLM):
        msg = f"llm must be an rlm_pipeline.LLM, got {type(llm).__name__}"
        raise InputError(msg)
    if op != "classify":  # other operators: op=NAME and that operator's arguments
        from rlm_pipeline.ops.multi_estimate import ESTIMATES
        from rlm_pipeline.ops.semantic_estimate import ROW_ESTIMATES

        if op in ROW_ESTIMATES:  # filter (condition=), extract (fields=)
            if instructions is not None:
                params["instructions"] = instructions
            params.update(max_row_tokens=max_row_tokens, truncate=truncate)
        elif op not in ESTIMATES:
            msg = f"op must be one of {['classify', *ROW_ESTIMATES, *ESTIMATES]}, got {op!r}"
            raise InputError(msg)
        if batch_size != DEFAULT_BATCH_SIZE:
            params["batch_size"] = batch_size
        return {**ESTIMATES, **ROW_ESTIMATES}[op](data, column, llm, **params)
    spec = ClassifySpec(
        column=column,
        labels=check_labels(labels if labels is not None else ()),
        instructions=instructions,
        batch_size=batch_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return estimate_texts(_column_texts(data, column), spec, llm)


def _column_texts(data: Any, column: str) -> list[str | None]:
    from rlm_pipeline.engines.load import engine_for

    chosen = engine_for(data)
    return chosen.column_texts(chosen.read(data), column)
