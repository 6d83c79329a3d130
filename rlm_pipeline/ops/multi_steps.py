"""``DataFrame.transform`` steps of aggregate, top_k and join (re-exported by :mod:`rlm_pipeline.spark`).

Unlike the row-wise steps (``rp.spark.classify``), these need the whole table
(a reduce, a ranking, a pairing), so a step runs when it is applied and
returns a small materialised Spark DataFrame (one row per group, ``k`` rows,
the kept pairs), built on the driver.  The same functions work for Polars
frames (``df.pipe(step)``).

Examples
--------
>>> import rlm_pipeline as rp
>>> step = aggregate("question", "main complaints", llm=rp.LLM(), by="user_id")
>>> callable(step)
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rlm_pipeline.llm.config import LLM

__all__ = ["aggregate", "join", "top_k"]

Step = Callable[[Any], Any]


def aggregate(
    column: str, instruction: str, *, llm: LLM, by: str | Sequence[str] | None = None,
    **options: Any,
) -> Step:
    """A step ``df -> one summary per group`` (:func:`rlm_pipeline.aggregate`'s keywords)."""
    from rlm_pipeline.ops.aggregate_op import aggregate as run

    run_options = {"by": by, **options}
    return lambda df: run(df, column, instruction, llm, **run_options)


def top_k(column: str, criterion: str, k: int, *, llm: LLM, **options: Any) -> Step:
    """A step ``df -> its k best rows with score and rank`` (:func:`rlm_pipeline.top_k`)."""
    from rlm_pipeline.ops.topk_op import top_k as run

    return lambda df: run(df, column, criterion, k, llm, **options)


def join(
    right: Any, left_column: str, right_column: str, condition: str, *, llm: LLM,
    block_on: str | None = None, **options: Any,
) -> Step:
    """A step ``left -> the pairs of left and right rows where condition holds`` (:func:`rlm_pipeline.join`)."""
    from rlm_pipeline.ops.join_op import join as run

    return lambda df: run(df, right, left_column, right_column, condition, llm, block_on,
                          **options)
