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

Checked before any model call: ``labels`` given as one string raises
``TypeError`` when the step is built; an ``output_column`` the input already
has raises ``InputError`` when it is applied, unless ``overwrite=True``.
Cells longer than ``max_row_tokens`` get ``input_too_long`` (or are cut, with
``truncate=True``), and rows left without a value are logged as one warning
with counts by reason, as for :func:`rlm_pipeline.classify`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.spec import DEFAULT_MAX_ROW_TOKENS, OutputType, check_labels

__all__ = ["classify", "llm_map"]


def classify(
    column: str,
    labels: Sequence[str],
    *,
    llm: LLM,
    instructions: str | None = None,
    batch_size: int = 16,
    output_column: str = "label",
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
) -> Callable[[Any], Any]:
    """A ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column."""
    labels = list(check_labels(labels))

    def step(df: Any) -> Any:
        from rlm_pipeline.ops.api import classify as classify_frame

        return classify_frame(
            df,
            column=column,
            labels=labels,
            llm=llm,
            instructions=instructions,
            batch_size=batch_size,
            output_column=output_column,
            engine="spark",
            overwrite=overwrite,
            max_row_tokens=max_row_tokens,
            truncate=truncate,
        )

    return step


def llm_map(
    column: str,
    instruction: str,
    *,
    llm: LLM,
    output_type: OutputType = "string",
    batch_size: int = 16,
    output_column: str = "value",
    overwrite: bool = False,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
) -> Callable[[Any], Any]:
    """A ``DataFrame -> DataFrame`` step that adds ``output_column`` and its error column."""

    def step(df: Any) -> Any:
        from rlm_pipeline.ops.api import llm_map as map_frame

        return map_frame(
            df,
            column=column,
            instruction=instruction,
            llm=llm,
            output_type=output_type,
            batch_size=batch_size,
            output_column=output_column,
            engine="spark",
            overwrite=overwrite,
            max_row_tokens=max_row_tokens,
            truncate=truncate,
        )

    return step
