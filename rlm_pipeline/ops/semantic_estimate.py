"""What :func:`rlm_pipeline.filter` and :func:`rlm_pipeline.extract` would send and cost.

``rp.estimate(data, column, op="filter", condition=..., llm=llm)`` and
``rp.estimate(data, column, op="extract", fields={...}, llm=llm)`` land here:
the operator's spec is built as the operator builds it, and
:func:`~rlm_pipeline.ops.estimate.estimate_texts` counts the calls, tokens,
stored answers and cost, without calling the model.

Examples
--------
>>> import polars as pl
>>> from rlm_pipeline.llm.config import LLM
>>> frame = pl.DataFrame({"q": ["refund me", "refund me", "hello"]})
>>> est = estimate_filter(frame, "q", LLM(), condition="asks for a refund")
>>> est.rows, est.distinct_texts, est.calls
(3, 2, 1)
>>> estimate_extract(frame, "q", LLM(), fields={"amount": "number"}, batch_size=1).calls
2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlm_pipeline.llm.config import LLM
from rlm_pipeline.ops.estimate import Estimate, estimate_texts
from rlm_pipeline.ops.extract_op import ExtractSpec
from rlm_pipeline.ops.filter_op import FilterSpec

__all__ = ["ROW_ESTIMATES", "estimate_extract", "estimate_filter"]


def _texts(data: Any, column: str) -> list[str | None]:
    from rlm_pipeline.engines.load import engine_for

    chosen = engine_for(data)
    return chosen.column_texts(chosen.read(data), column)


def estimate_filter(
    data: Any, column: str, llm: LLM, *, condition: str, **options: Any
) -> Estimate:
    """The :class:`~rlm_pipeline.ops.estimate.Estimate` of ``rp.filter(data, column, condition, llm, ...)``.

    ``options``: ``batch_size``, ``max_row_tokens``, ``truncate``.
    """
    spec = FilterSpec(column=column, condition=condition, **options)
    return estimate_texts(_texts(data, column), spec, llm)


def estimate_extract(
    data: Any,
    column: str,
    llm: LLM,
    *,
    fields: Any,
    instructions: str | None = None,
    **options: Any,
) -> Estimate:
    """The :class:`~rlm_pipeline.ops.estimate.Estimate` of ``rp.extract(data, column, fields, llm, ...)``.

    ``options``: ``batch_size``, ``max_row_tokens``, ``truncate``.
    """
    spec = ExtractSpec(column=column, fields=fields, instructions=instructions, **options)
    return estimate_texts(_texts(data, column), spec, llm)


#: ``op`` name -> estimate function, for :func:`rlm_pipeline.estimate`.
ROW_ESTIMATES: dict[str, Callable[..., Estimate]] = {
    "filter": estimate_filter,
    "extract": estimate_extract,
}
