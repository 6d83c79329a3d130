"""The ``rlm`` namespace on Polars expressions, DataFrames and LazyFrames.

Registered when ``rlm_pipeline`` is imported, so a transform reads naturally::

    import polars as pl
    import rlm_pipeline as rp

    llm = rp.LLM(base_url="http://127.0.0.1:8000/v1")
    df = df.with_columns(label=pl.col("question").rlm.classify(["billing", "other"], llm=llm))
    res = df.lazy().rlm.ask("How many questions are about billing?", llm=llm)

Where the fan-out happens: ``pl.col(...).rlm.classify`` is a ``map_batches``
over the *whole column*, not a per-row Python UDF.  Polars hands the column to
:func:`rlm_pipeline.classify` once; it deduplicates the texts, batches them
and sends the batches concurrently on an asyncio loop (bounded by
``llm.max_concurrency``), then joins the answers back in row order.  Use
``df.rlm.classify(...)`` when you also want the ``<output_column>_error``
column that says why a label is null.

Rows left without a value (blank inputs aside) are logged as one warning per
call with counts by reason.  ``max_row_tokens`` / ``truncate`` limit the cells
sent, and ``budget=`` caps the frame methods' spend, as for
:func:`rlm_pipeline.classify`.  Every form builds the operator's spec and
calls :func:`rlm_pipeline.ops.api.run_op`, the one front-end of
``rp.classify``, ``rp.llm_map`` and ``rp.spark.*`` too.  ``df.rlm.classify`` refuses an
output column the frame already has unless ``overwrite=True``; with the
expression form the name is yours (``with_columns(label=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.ops.spec import OutputType
    from rlm_pipeline.rlm.api import RLMResult

__all__ = ["RLMExprNamespace", "RLMFrameNamespace", "RLMLazyFrameNamespace"]

_TEXT = "__rlm_text"
_BATCH_SIZE = 16  # rlm_pipeline.ops.spec.DEFAULT_BATCH_SIZE (not imported: kept light)
_MAX_ROW_TOKENS = 8_000  # rlm_pipeline.ops.spec.DEFAULT_MAX_ROW_TOKENS


def _classify_spec(column: str, labels: Sequence[str], **options: Any) -> Any:
    from rlm_pipeline.ops.spec import ClassifySpec, check_labels

    return ClassifySpec(column=column, labels=check_labels(labels), **options)


def _map_spec(column: str, instruction: str, **options: Any) -> Any:
    from rlm_pipeline.ops.spec import MapSpec

    return MapSpec(column=column, instruction=instruction, **options)


def _run(data: Any, spec: Any, llm: LLM, **options: Any) -> Any:
    """:func:`rlm_pipeline.ops.api.run_op`, the one front-end (engine chosen from ``data``)."""
    from rlm_pipeline.ops.api import run_op

    out, _ = run_op(data, spec, llm, **options)
    return out


def _column_expr(expr: pl.Expr, spec: Any, llm: LLM) -> pl.Expr:
    """``expr``'s column answered by ``spec`` in one ``map_batches`` (its first value column)."""
    from rlm_pipeline.ops.polars_fanout import output_schema

    name, dtype = next(iter(output_schema(spec).items()))

    def run(series: pl.Series) -> pl.Series:
        out = _run(pl.DataFrame({_TEXT: series}), spec, llm)
        answered: pl.Series = out.get_column(name).alias(series.name)
        return answered

    return expr.map_batches(run, return_dtype=dtype)


def _filter_expr(expr: pl.Expr, spec: Any, llm: LLM, on_error: str) -> pl.Expr:
    """``expr``'s column judged by a filter spec: a boolean per row, failures per ``on_error``."""
    from rlm_pipeline.ops.filter_op import check_on_error
    from rlm_pipeline.ops.semantic import FilterStats, raise_unanswered

    on_error = check_on_error(on_error)

    def run(series: pl.Series) -> pl.Series:
        from rlm_pipeline.ops.api import run_op

        out, op_stats = run_op(pl.DataFrame({_TEXT: series}), spec, llm, warn=False)
        stats = FilterStats.of(op_stats, on_error)
        if stats.failed and on_error == "raise":
            raise_unanswered(stats, llm)
        error = pl.col(spec.error_column)
        failed = error.is_not_null() & ~error.str.starts_with("empty_input")
        held = pl.col(spec.output_column).fill_null(False)
        keep = held | failed if on_error == "keep" else held
        answered: pl.Series = out.select(keep.alias(series.name)).to_series()
        return answered

    return expr.map_batches(run, return_dtype=pl.Boolean)


def _extract_expr(expr: pl.Expr, spec: Any, llm: LLM) -> pl.Expr:
    """``expr``'s column read by an extract spec: one struct of the fields per row."""
    from rlm_pipeline.ops.polars_fanout import output_schema

    schema = output_schema(spec)
    names = [name for name, _ in spec.output_fields()]
    dtype = pl.Struct({name: schema[name] for name in names})

    def run(series: pl.Series) -> pl.Series:
        out = _run(pl.DataFrame({_TEXT: series}), spec, llm)
        answered: pl.Series = out.select(pl.struct(names).alias(series.name)).to_series()
        return answered

    return expr.map_batches(run, return_dtype=dtype)


@pl.api.register_expr_namespace("rlm")
class RLMExprNamespace:
    """``pl.col(...).rlm``: semantic operators on a text column."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def classify(
        self,
        labels: Sequence[str],
        *,
        llm: LLM,
        instructions: str | None = None,
        batch_size: int = _BATCH_SIZE,
        max_row_tokens: int = _MAX_ROW_TOKENS,
        truncate: bool = False,
    ) -> pl.Expr:
        """One label per row (null where the model gave none; see ``df.rlm.classify``).

        Examples
        --------
        >>> pl.col("question").rlm.classify(["a", "b"], llm=rp.LLM())  # doctest: +SKIP
        """
        spec = _classify_spec(
            _TEXT,
            labels,
            instructions=instructions,
            batch_size=batch_size,
            max_row_tokens=max_row_tokens,
            truncate=truncate,
        )
        return _column_expr(self._expr, spec, llm)

    def llm_map(
        self,
        instruction: str,
        *,
        llm: LLM,
        output_type: OutputType = "string",
        batch_size: int = _BATCH_SIZE,
        max_row_tokens: int = _MAX_ROW_TOKENS,
        truncate: bool = False,
    ) -> pl.Expr:
        """One model answer per row for ``instruction`` (null where none)."""
        spec = _map_spec(
            _TEXT,
            instruction,
            output_type=output_type,
            batch_size=batch_size,
            max_row_tokens=max_row_tokens,
            truncate=truncate,
        )
        return _column_expr(self._expr, spec, llm)

    def filter(
        self,
        condition: str,
        *,
        llm: LLM,
        on_error: str = "raise",
        batch_size: int = _BATCH_SIZE,
        max_row_tokens: int = _MAX_ROW_TOKENS,
        truncate: bool = False,
    ) -> pl.Expr:
        """True where the text meets ``condition``, for ``df.filter(...)``.

        Rows without an answer follow ``on_error``: ``"raise"`` (default)
        raises :class:`~rlm_pipeline.errors.UnansweredRowsError`, ``"keep"``
        makes them True, ``"drop"`` False; blank texts are False.
        """
        from rlm_pipeline.ops.filter_op import FilterSpec

        spec = FilterSpec(_TEXT, condition, batch_size=batch_size,
                          max_row_tokens=max_row_tokens, truncate=truncate)
        return _filter_expr(self._expr, spec, llm, on_error)

    def extract(
        self,
        fields: dict[str, Any],
        *,
        llm: LLM,
        instructions: str | None = None,
        batch_size: int = _BATCH_SIZE,
        max_row_tokens: int = _MAX_ROW_TOKENS,
        truncate: bool = False,
    ) -> pl.Expr:
        """One struct of typed ``fields`` per row (``.struct.unnest()`` for columns).

        Fields are null where the text does not say, and for rows without an
        answer (use ``df.rlm.extract`` for the ``extract_error`` reasons).
        """
        from rlm_pipeline.ops.extract_op import ExtractSpec

        spec = ExtractSpec(_TEXT, fields, instructions=instructions,  # type: ignore[arg-type]
                           batch_size=batch_size, max_row_tokens=max_row_tokens,
                           truncate=truncate)
        return _extract_expr(self._expr, spec, llm)


class _FrameMethods:
    _frame: pl.DataFrame | pl.LazyFrame

    def classify(
        self,
        column: str,
        labels: Sequence[str],
        *,
        llm: LLM,
        instructions: str | None = None,
        batch_size: int = _BATCH_SIZE,
        output_column: str = "label",
        overwrite: bool = False,
        max_row_tokens: int = _MAX_ROW_TOKENS,
        truncate: bool = False,
        budget: Budget | None = None,
    ) -> Any:
        """:func:`rlm_pipeline.classify` on this frame (label and error columns).

        An ``output_column`` (or its ``_error`` column) the frame already has
        raises ``InputError`` before any model call, unless ``overwrite=True``.
        """
        spec = _classify_spec(
            column,
            labels,
            instructions=instructions,
            batch_size=batch_size,
            output_column=output_column,
            max_row_tokens=max_row_tokens,
            truncate=truncate,
        )
        return _run(self._frame, spec, llm, overwrite=overwrite, budget=budget)

    def llm_map(
        self,
        column: str,
        instruction: str,
        *,
        llm: LLM,
        output_type: OutputType = "string",
        batch_size: int = _BATCH_SIZE,
        output_column: str = "value",
        overwrite: bool = False,
        max_row_tokens: int = _MAX_ROW_TOKENS,
        truncate: bool = False,
        budget: Budget | None = None,
    ) -> Any:
        """:func:`rlm_pipeline.llm_map` on this frame (value and error columns)."""
        spec = _map_spec(
            column,
            instruction,
            output_type=output_type,
            batch_size=batch_size,
            output_column=output_column,
            max_row_tokens=max_row_tokens,
            truncate=truncate,
        )
        return _run(self._frame, spec, llm, overwrite=overwrite, budget=budget)

    def filter(
        self,
        column: str,
        condition: str,
        *,
        llm: LLM,
        on_error: str = "raise",
        batch_size: int = _BATCH_SIZE,
        budget: Budget | None = None,
        **options: Any,
    ) -> Any:
        """:func:`rlm_pipeline.filter` on this frame: the rows where ``condition`` holds."""
        from rlm_pipeline.ops.semantic import filter as semantic_filter

        return semantic_filter(self._frame, column, condition, llm, on_error,  # type: ignore[arg-type]
                               batch_size, budget=budget, **options)

    def extract(
        self,
        column: str,
        fields: dict[str, Any],
        *,
        llm: LLM,
        instructions: str | None = None,
        batch_size: int = _BATCH_SIZE,
        overwrite: bool = False,
        budget: Budget | None = None,
        **options: Any,
    ) -> Any:
        """:func:`rlm_pipeline.extract` on this frame: one column per field and ``extract_error``."""
        from rlm_pipeline.ops.semantic import extract

        return extract(self._frame, column, fields, llm, instructions, batch_size,
                       budget=budget, overwrite=overwrite, **options)

    def aggregate(
        self, column: str, instruction: str, *, llm: LLM, by: str | Sequence[str] | None = None,
        **options: Any,
    ) -> Any:
        """:func:`rlm_pipeline.aggregate` on this frame: one summary per group."""
        from rlm_pipeline.ops.aggregate_op import aggregate

        return aggregate(self._frame, column, instruction, llm, by=by, **options)

    def top_k(self, column: str, criterion: str, k: int, *, llm: LLM, **options: Any) -> Any:
        """:func:`rlm_pipeline.top_k` on this frame: the ``k`` best rows with score and rank."""
        from rlm_pipeline.ops.topk_op import top_k

        return top_k(self._frame, column, criterion, k, llm, **options)

    def join(
        self, right: Any, left_column: str, right_column: str, condition: str, *, llm: LLM,
        block_on: str | None = None, **options: Any,
    ) -> Any:
        """:func:`rlm_pipeline.join` of this frame (left) with ``right``: the matching pairs."""
        from rlm_pipeline.ops.join_op import join

        return join(self._frame, right, left_column, right_column, condition, llm, block_on,
                    **options)

    def ask(
        self,
        question: str,
        *,
        llm: LLM,
        sub: LLM | None = None,
        text_column: str | None = None,
        max_steps: int = 30,
        max_depth: int = 2,
    ) -> RLMResult:
        """Answer ``question`` over this frame with :class:`rlm_pipeline.RLM`."""
        from rlm_pipeline.rlm.api import RLM

        rlm = RLM(root=llm, sub=sub, max_steps=max_steps, max_depth=max_depth)
        return rlm.run(question, self._frame, text_column=text_column)


@pl.api.register_dataframe_namespace("rlm")
class RLMFrameNamespace(_FrameMethods):
    """``df.rlm``: :func:`classify` and :meth:`RLM.run` on a DataFrame."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame


@pl.api.register_lazyframe_namespace("rlm")
class RLMLazyFrameNamespace(_FrameMethods):
    """``lf.rlm``: :func:`classify` and :meth:`RLM.run` on a LazyFrame."""

    def __init__(self, frame: pl.LazyFrame) -> None:
        self._frame = frame
