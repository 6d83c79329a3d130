"""State shared by one run (:class:`RunState`) and by one loop in it (:class:`Scope`).

A run has one root loop at depth 0 and, through ``recurse``, sub-loops at
deeper levels.  All of them share one usage meter, one budget and one step
log; each loop has its own engine (its own views).

Model limits: each :class:`Scope` names the client its sub-calls go through
(``client``) and the config they obey (``llm``).  On Polars every scope of a run
holds the run's one ``sub`` client, so one semaphore and one rpm/tpm limiter
bound the whole run.  On Spark, parallel sub-runs each hold a client built from
an exact share of their parent's config (see :mod:`rlm_pipeline.rlm.recurse`),
because their fan-outs run on executors with limiters of their own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import UsageMeter

if TYPE_CHECKING:
    from rlm_pipeline.engines.base import Engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.rlm.steps import StepLog

__all__ = ["RunLoop", "RunState", "Scope"]

#: ``run_loop(scope, question) -> LoopResult``.
RunLoop = Callable[["Scope", str], Awaitable[Any]]


@dataclass
class RunState:
    """Everything one :meth:`RLM.run` shares across depths (mutable, one event loop).

    ``root_client`` serves the root model (depth 0); ``sub_client`` is the run's
    one client for ``sub_llm``, held by the root scope (and, on Polars, by every
    scope of the run).
    """

    run_id: str
    root_client: LLMClient
    sub_client: LLMClient
    sub_llm: LLM
    meter: UsageMeter
    budget: Budget
    max_steps: int
    max_depth: int
    sub_prompt_tokens: int
    #: Sub-runs of one `recurse` call that run at once.
    max_parallel: int
    steps: StepLog
    #: The loop a sub-run of `recurse` runs (:func:`rlm_pipeline.rlm.loop.run_loop`),
    #: passed in so that `recurse` does not import the loop that calls it.
    run_loop: RunLoop
    started: float = field(default_factory=time.monotonic)
    errors: int = 0
    root_steps: int = 0
    #: Best partial answer so far: the last successful result at depth 0.
    partial: Any = None
    #: The root action protocol asked for (``auto``, ``tools``, ``json``, ``text``) and
    #: the system-prompt variant (``auto``, ``full``, ``compact``); see rlm/protocol.py.
    protocol: str = "auto"
    prompt: str = "auto"
    #: ``max_tokens`` of every root-model turn (``RLM(root_max_tokens=...)``).
    root_max_tokens: int | None = None
    #: Rows per sub-call of `classify` / `llm_map` (``RLM(sub_batch_size=...)``; 1 for
    #: small sub-models, which answer a batch with the labels in the list's order).
    sub_batch_size: int = 16
    #: ``time.monotonic()`` by which the run must end (its ``timeout_s``), and the time kept
    #: back before it for the forced answer turn (the root loop stops planning then).
    deadline: float | None = None
    answer_reserve_s: float = 0.0
    #: ``RLM(cascade=...)``: the run's :class:`~rlm_pipeline.rlm.cascade_tool.CascadeRun` (the
    #: cascade the `classify` tool's sub-calls go through, its proxy client), or None.
    cascade: Any = None


@dataclass
class Scope:
    """One loop: its engine, depth, place in the recursion tree and sub-call limits.

    Attributes
    ----------
    client
        The client every sub-call made at this level goes through: the loop's
        own model calls at depth >= 1, plain calls, and (Polars) classify /
        llm_map fan-outs, which run in the run's event loop.
    llm
        The config ``client`` was built from: what a Spark fan-out started at
        this level may use (shared out again over its tasks).
    """

    state: RunState
    engine: Engine
    depth: int
    path: str
    text_column: str | None = None
    client: LLMClient = field(kw_only=True)
    llm: LLM = field(kw_only=True)
