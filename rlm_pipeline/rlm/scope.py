"""State shared by one run (:class:`RunState`) and by one loop in it (:class:`Scope`).

A run has one root loop at depth 0 and, through ``recurse``, sub-loops at
deeper levels.  All of them share one usage meter, one budget, one pair of
clients and one step log; each loop has its own engine (its own views).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter

if TYPE_CHECKING:
    from rlm_pipeline.engines.base import Engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.rlm.steps import StepLog

__all__ = ["RunState", "Scope"]


@dataclass
class RunState:
    """Everything one :meth:`RLM.run` shares across depths (mutable, one event loop)."""

    run_id: str
    root_client: LLMClient
    sub_client: LLMClient
    sub_llm: LLM
    meter: UsageMeter
    budget: Budget
    max_steps: int
    max_depth: int
    sub_prompt_tokens: int
    engine_kind: str
    spark: Any
    #: Sub-runs of one `recurse` call that run at once.
    max_parallel: int
    steps: StepLog
    started: float = field(default_factory=time.monotonic)
    errors: int = 0
    root_steps: int = 0
    #: Best partial answer so far: the last successful result at depth 0.
    partial: Any = None


@dataclass
class Scope:
    """One loop: its engine, depth and place in the recursion tree."""

    state: RunState
    engine: Engine
    depth: int
    path: str
    text_column: str | None = None
