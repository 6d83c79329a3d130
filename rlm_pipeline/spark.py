"""Spark-native entry points, shaped for ``DataFrame.transform``.

Examples
--------
>>> import rlm_pipeline as rp
>>> step = rp.spark.classify("question", ["billing", "other"], llm=rp.LLM())
>>> callable(step)
True

``df.transform(step)`` returns a new Spark DataFrame with ``label`` and
``label_error``.  The model calls run right away, in ``mapInArrow`` tasks on
the executors, and the result is materialised once (``localCheckpoint``), so
later actions never call the model again.  Checkpointed blocks live on the
executors: with dynamic allocation, write the result out (or ``persist`` it
to disk) before executors can be removed.  pyspark is imported only when the
step is applied.

Checked before any model call: the arguments when the step is built
(``labels`` given as one string raises ``TypeError``, a bad ``batch_size``
``InputError``); an ``output_column`` the input already has raises
``InputError`` when it is applied, unless ``overwrite=True``.  A step runs
through :func:`rlm_pipeline.ops.api.run_op` like ``rp.classify``; ``budget=``
caps each application's spend.
Cells longer than ``max_row_tokens`` get ``input_too_long`` (or are cut, with
``truncate=True``), and rows left without a value are logged as one warning
with counts by reason, as for :func:`rlm_pipeline.classify`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.ops.multi_steps import aggregate, join, top_k
from rlm_pipeline.ops.spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_ROW_TOKENS,
    ClassifySpec,
    MapSpec,
    OpSpec,
    OutputType,
    check_labels,
)

__all__ = ["aggregate", "classify", "join", "llm_map", "top_k"]


def _step(spec: OpSpec, llm: LLM, overwrite: bool, budget: Budget | None) -> Callable[[Any], Any]:
    """The ``DataFrame -> DataFrame`` step running ``spec`` through the one front-end."""

    def step(df: Any) -> Any:
        from rlm_pipeline.ops.api import run_op

        out, _ = run_op(df, spec, llm, engine="spark", overwrite=overwrite, budget=budget)
        return out

    return step


def classify(
    column: str,
    labels: Sequence[str],
    *,
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_column: str = "label",
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
) -> Callable[[Any], Any]:
    """A ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column.

    ``budget`` caps what one application of the step spends (rows left when
    it is reached get ``budget_exceeded``), as for :func:`rlm_pipeline.classify`.
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
    return _step(spec, llm, overwrite, budget)


def llm_map(
    column: str,
    instruction: str,
    *,
    llm: LLM,
    output_type: OutputType = "string",
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_column: str = "value",
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
) -> Callable[[Any], Any]:
    """A ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column."""
    spec = MapSpec(
        column=column,
        instruction=instruction,
        output_type=output_type,
        batch_size=batch_size,
        output_column=output_column,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    return _step(spec, llm, overwrite, budget)
