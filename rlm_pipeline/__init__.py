"""rlm_pipeline: Recursive Language Models over dataframes and Spark.

The root model sees the question and the table's metadata, explores the table
with checked SQL tools, and fans semantic sub-calls out as map tasks.  Nothing
the model writes is executed.

Names are imported lazily, so ``import rlm_pipeline`` is cheap and never
starts a JVM.

Examples
--------
>>> import rlm_pipeline as rp
>>> rp.Budget(max_calls=10).max_calls
10
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_pipeline._lazy import lazy_attributes

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "BudgetExceededError",
    "Cascade",
    "EngineError",
    "Estimate",
    "ExpressionError",
    "InputError",
    "LLM",
    "LLMEndpointError",
    "LLMError",
    "LLMResponseParseError",
    "Price",
    "RLM",
    "RLMPipelineError",
    "RLMResult",
    "RootModelError",
    "UnsupportedExpressionError",
    "Usage",
    "aggregate",
    "classify",
    "estimate",
    "extract",
    "filter",
    "join",
    "llm_map",
    "top_k",
]

_LAZY = {
    "LLM": "rlm_pipeline.llm.config",
    "Budget": "rlm_pipeline.llm.config",
    "Price": "rlm_pipeline.llm.config",
    "Usage": "rlm_pipeline.llm.usage",
    "Cascade": "rlm_pipeline.ops.cascade",
    "RLM": "rlm_pipeline.rlm.api",
    "RLMResult": "rlm_pipeline.rlm.api",
    "classify": "rlm_pipeline.ops.api",
    "llm_map": "rlm_pipeline.ops.api",
    "estimate": "rlm_pipeline.ops.api",
    "Estimate": "rlm_pipeline.ops.api",
    "aggregate": "rlm_pipeline.ops.aggregate_op",
    "top_k": "rlm_pipeline.ops.topk_op",
    "join": "rlm_pipeline.ops.join_op",
    "filter": "rlm_pipeline.ops.semantic",
    "extract": "rlm_pipeline.ops.semantic",
    "RLMPipelineError": "rlm_pipeline.errors",
    "InputError": "rlm_pipeline.errors",
    "ExpressionError": "rlm_pipeline.errors",
    "UnsupportedExpressionError": "rlm_pipeline.errors",
    "EngineError": "rlm_pipeline.errors",
    "LLMError": "rlm_pipeline.errors",
    "LLMEndpointError": "rlm_pipeline.errors",
    "LLMResponseParseError": "rlm_pipeline.errors",
    "BudgetExceededError": "rlm_pipeline.errors",
    "RootModelError": "rlm_pipeline.errors",
}

# Registers ``pl.col(...).rlm``, ``df.rlm`` and ``lf.rlm`` (imports polars, not pyspark).
from rlm_pipeline import polars_ns as _polars_ns  # noqa: E402,F401

_SUBMODULES = ("spark",)

if TYPE_CHECKING:
    from rlm_pipeline.errors import (
        BudgetExceededError,
        EngineError,
        ExpressionError,
        InputError,
        LLMEndpointError,
        LLMError,
        LLMResponseParseError,
        RLMPipelineError,
        RootModelError,
        UnsupportedExpressionError,
    )
    from rlm_pipeline.llm.config import LLM, Budget, Price
    from rlm_pipeline.llm.usage import Usage
    from rlm_pipeline.ops.aggregate_op import aggregate
    from rlm_pipeline.ops.api import Estimate, classify, estimate, llm_map
    from rlm_pipeline.ops.cascade import Cascade
    from rlm_pipeline.ops.join_op import join
    from rlm_pipeline.ops.semantic import extract, filter  # noqa: A004
    from rlm_pipeline.ops.topk_op import top_k
    from rlm_pipeline.rlm.api import RLM, RLMResult


__getattr__, __dir__ = lazy_attributes(
    "rlm_pipeline", _LAZY, globals(), __all__, _SUBMODULES
)
