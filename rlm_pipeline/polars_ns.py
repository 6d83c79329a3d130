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

``cascade=rp.Cascade(proxy=small_llm)`` on ``classify`` and ``filter`` (every
form) lets the cheap proxy answer first and sends only its uncertain rows to
``llm`` (see ``docs/cascades.md``).  The frame methods add
``<output_column>_source`` and ``<output_column>_confidence``; the expression
forms give the answer only (one column), as without a cascade.  A cascade
needs the whole column at once (its calibration sample is drawn from every
answered row), so the expression forms hand Polars' whole column over, as
they always do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from rlm_pipeline.llm.config import LLM
    from rlm_pipeline.ops.cascade import Cascade
    from rlm_pipeline.ops.spec import OutputType
    from rlm_pipeline.rlm.api import RLMResult

__all__ = ["RLMExprNamespace", "RLMFrameNamespace", "RLMLazyFrameNamespace"]

_TEXT = "__rlm_text"


def _expr(
    expr: pl.Expr,
    spec: Any,
    llm: LLM,
    dtype: Any,
    pick: Any,
    *,
    warn: bool = True,
    cascade: Cascade | None = None,
) -> pl.Expr:
    """``expr``'s column answered by ``spec`` in one ``map_batches``.

    The column goes through :func:`rlm_pipeline.ops.api.run_op` (the one
    front-end) once per batch Polars hands over, with ``cascade`` when given;
    ``pick(stats)`` is the expression selecting the answer from its output.
    """
    from rlm_pipeline.ops.api import run_op

    def run(series: pl.Series) -> pl.Series:
        frame = pl.DataFrame({_TEXT: series})
        out, stats = run_op(frame, spec, llm, warn=warn, cascade=cascade)
        answered: pl.Series = out.select(pick(stats).alias(series.name)).to_series()
        return answered

    return expr.map_batches(run, return_dtype=dtype)


def _value_expr(expr: pl.Expr, spec: Any, llm: LLM, cascade: Cascade | None = None) -> pl.Expr:
    """The spec's first value column (classify, llm_map)."""
    from rlm_pipeline.ops.polars_fanout import output_schema

    name, dtype = next(iter(output_schema(spec).items()))
    return _expr(expr, spec, llm, dtype, lambda _: pl.col(name), cascade=cascade)


@pl.api.register_expr_namespace("rlm")
class RLMExprNamespace:
    """``pl.col(...).rlm``: semantic operators on a text column.

    ``options`` of every method: ``batch_size``, ``max_row_tokens``,
    ``truncate``, as for :func:`rlm_pipeline.classify`.
    """

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def classify(
        self,
        labels: Sequence[str],
        *,
        llm: LLM,
        instructions: str | None = None,
        cascade: Cascade | None = None,
        **options: Any,
    ) -> pl.Expr:
        """One label per row (null where the model gave none; see ``df.rlm.classify``).

        ``cascade``: a :class:`~rlm_pipeline.ops.cascade.Cascade` (its proxy first,
        ``llm`` for the uncertain rows); the label only, as without one.

        Examples
        --------
        >>> pl.col("question").rlm.classify(["a", "b"], llm=rp.LLM())  # doctest: +SKIP
        """
        from rlm_pipeline.ops.spec import ClassifySpec, check_labels

        spec = ClassifySpec(_TEXT, check_labels(labels), instructions, **options)
        return _value_expr(self._expr, spec, llm, cascade)

    def llm_map(
        self, instruction: str, *, llm: LLM, output_type: OutputType = "string", **options: Any
    ) -> pl.Expr:
        """One model answer per row for ``instruction`` (null where none)."""
        from rlm_pipeline.ops.spec import MapSpec

        spec = MapSpec(_TEXT, instruction, output_type, **options)
        return _value_expr(self._expr, spec, llm)

    def filter(
        self,
        condition: str,
        *,
        llm: LLM,
        on_error: str = "raise",
        cascade: Cascade | None = None,
        **options: Any,
    ) -> pl.Expr:
        """True where the text meets ``condition``, for ``df.filter(...)``.

        Rows without an answer follow ``on_error``: ``"raise"`` (default)
        raises :class:`~rlm_pipeline.errors.UnansweredRowsError`, ``"keep"``
        makes them True, ``"drop"`` False; blank texts are False.  ``cascade``:
        a :class:`~rlm_pipeline.ops.cascade.Cascade` (its proxy first).
        """
        from rlm_pipeline.engines.polars import row_failed
        from rlm_pipeline.ops.filter_op import FilterSpec, check_on_error
        from rlm_pipeline.ops.semantic import judge

        on_error = check_on_error(on_error)
        spec = FilterSpec(_TEXT, condition, **options)

        def keep(op_stats: Any) -> pl.Expr:
            judge(op_stats, on_error, llm)  # raises for failed rows with on_error="raise"
            held = pl.col(spec.output_column).fill_null(False)
            return (held | row_failed(pl.col(spec.error_column))) if on_error == "keep" else held

        return _expr(self._expr, spec, llm, pl.Boolean, keep, warn=False, cascade=cascade)

    def extract(
        self, fields: dict[str, Any], *, llm: LLM, instructions: str | None = None, **options: Any
    ) -> pl.Expr:
        """One struct of typed ``fields`` per row (``.struct.unnest()`` for columns).

        Fields are null where the text does not say, and for rows without an
        answer (use ``df.rlm.extract`` for the ``extract_error`` reasons).
        """
        from rlm_pipeline.ops.extract_op import ExtractSpec
        from rlm_pipeline.ops.polars_fanout import output_schema

        spec = ExtractSpec(_TEXT, fields, instructions, **options)  # type: ignore[arg-type]
        schema = output_schema(spec)
        dtype = pl.Struct({name: schema[name] for name in spec.names})
        return _expr(self._expr, spec, llm, dtype, lambda _: pl.struct(list(spec.names)))


class _FrameMethods:
    """The frame methods: each is the public function on this frame (same keywords)."""

    _frame: pl.DataFrame | pl.LazyFrame

    def classify(self, column: str, labels: Sequence[str], *, llm: LLM, **options: Any) -> Any:
        """:func:`rlm_pipeline.classify` on this frame (label and error columns).

        An ``output_column`` (or its ``_error`` column) the frame already has
        raises ``InputError`` before any model call, unless ``overwrite=True``.
        With ``cascade=rp.Cascade(...)``, also ``<output_column>_source`` and
        ``<output_column>_confidence``.
        """
        from rlm_pipeline.ops.api import classify

        return classify(self._frame, column, labels, llm, **options)  # type: ignore[arg-type]

    def llm_map(self, column: str, instruction: str, *, llm: LLM, **options: Any) -> Any:
        """:func:`rlm_pipeline.llm_map` on this frame (value and error columns)."""
        from rlm_pipeline.ops.api import llm_map

        return llm_map(self._frame, column, instruction, llm, **options)

    def filter(self, column: str, condition: str, *, llm: LLM, **options: Any) -> Any:
        """:func:`rlm_pipeline.filter` on this frame: the rows where ``condition`` holds.

        With ``cascade=rp.Cascade(...)`` the kept rows also carry ``filter_source``
        and ``filter_confidence``.
        """
        from rlm_pipeline.ops.semantic import filter as semantic_filter

        return semantic_filter(self._frame, column, condition, llm, **options)

    def extract(self, column: str, fields: dict[str, Any], *, llm: LLM, **options: Any) -> Any:
        """:func:`rlm_pipeline.extract` on this frame: one column per field and ``extract_error``."""
        from rlm_pipeline.ops.semantic import extract

        return extract(self._frame, column, fields, llm, **options)

    def aggregate(
        self,
        column: str,
        instruction: str,
        *,
        llm: LLM,
        by: str | Sequence[str] | None = None,
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
        self,
        right: Any,
        left_column: str,
        right_column: str,
        condition: str,
        *,
        llm: LLM,
        block_on: str | None = None,
        **options: Any,
    ) -> Any:
        """:func:`rlm_pipeline.join` of this frame (left) with ``right``: the matching pairs."""
        from rlm_pipeline.ops.join_op import join

        return join(
            self._frame, right, left_column, right_column, condition, llm, block_on, **options
        )

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
