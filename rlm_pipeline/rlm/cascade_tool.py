"""``rp.RLM(cascade=...)``: the ``classify`` tool's cascade under the run's own limits.

One :class:`CascadeRun` per run (built with the run's meter and budget, closed
with the run) holds the proxy's client — one for the whole run, so
``cascade.proxy``'s ``max_concurrency`` / ``rpm`` / ``tpm`` hold across every
cascade of the run, parallel ``recurse`` sub-runs included — and the
confidence mode of ``"auto"``, probed once per run.

On Polars a cascade runs in the run's event loop (:func:`run_in_loop`), every
call through a run client: the oracle's through the scope's ``sub`` client,
the proxy's through the run's proxy client.  Both hold the run's one budget
guard, so each call is checked against what the whole run has spent and
booked at that moment (not what was left when the cascade started), and a
cancelled tool call (the run's ``timeout_s``) cancels the cascade's calls with
it.

On Spark the passes are executor tasks with limiters and budget shares of
their own (:func:`~rlm_pipeline.ops.cascade.run_cascade` in a worker thread,
each pass within what the run's budget has left when it starts).  So that no
two of them run at once, a cascade on Spark is refused with ``max_parallel >
1`` (:func:`check_engine`); when the tool call is cancelled, its Spark jobs
are cancelled by the work's tags and the cascade stops before its next step.

Examples
--------
>>> from rlm_pipeline.llm.config import LLM
>>> from rlm_pipeline.ops.cascade import Cascade
>>> check_engine(Cascade(LLM(model="small")), in_tasks=True, max_parallel=2)
Traceback (most recent call last):
...
rlm_pipeline.errors.InputError: RLM(cascade=...) on Spark needs max_parallel=1 (got 2): parallel sub-runs' cascades would each be given the whole budget left
>>> check_engine(Cascade(LLM(model="small")), in_tasks=False, max_parallel=8)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rlm_pipeline.errors import InputError
from rlm_pipeline.llm.usage import Usage

if TYPE_CHECKING:
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.cascade import Cascade, Role
    from rlm_pipeline.ops.core import OpsClient, RowProgress
    from rlm_pipeline.ops.stats import OpStats

__all__ = ["CascadeRun", "RunCalls", "check_engine", "run_in_loop"]

T = TypeVar("T")


def check_engine(cascade: Cascade | None, *, in_tasks: bool, max_parallel: int) -> None:
    """Refuse a cascade with ``max_parallel > 1`` on an engine whose fan-outs run as tasks
    (``Engine.fans_out_in_tasks``: Spark; see the module docstring)."""
    if cascade is not None and in_tasks and max_parallel > 1:
        msg = (
            f"RLM(cascade=...) on Spark needs max_parallel=1 (got {max_parallel}): parallel "
            "sub-runs' cascades would each be given the whole budget left"
        )
        raise InputError(msg)


class CascadeRun:
    """A run's cascade: its config, the proxy's client for the run, the ``auto`` mode found.

    Built in the run's event loop with the run's meter and budget; :meth:`aclose`
    at the end of the run.
    """

    def __init__(self, cascade: Cascade, *, meter: UsageMeter, budget: Budget) -> None:
        self.cascade = cascade
        self._meter = meter
        self._budget = budget
        self._clients: list[tuple[LLM, LLMClient]] = []
        #: The confidence mode ``"auto"`` resolved to (probed once per run).
        self.mode: str | None = None
        self._lock = asyncio.Lock()

    def proxy_client(self, config: LLM) -> LLMClient:
        """The run's client for the proxy config ``config`` (built on first use, then shared)."""
        from rlm_pipeline.llm.client import LLMClient

        for known, client in self._clients:
            if known == config:
                return client
        client = LLMClient(config, meter=self._meter, budget=self._budget)
        self._clients.append((config, client))
        return client

    async def confidence(self, probe: Callable[[], Awaitable[str]]) -> str:
        """``probe()``'s mode the first time (one probe even for parallel callers), then kept."""
        async with self._lock:
            if self.mode is None:
                self.mode = await probe()
            return self.mode

    async def aclose(self) -> None:
        """Close the proxy's clients."""
        clients, self._clients = self._clients, []
        for _, client in clients:
            await client.aclose()


class RunCalls:
    """:class:`~rlm_pipeline.ops.cascade.CascadeCalls` of one tool call: the run's clients.

    The oracle's calls go through ``oracle`` (the scope's ``sub`` client), the
    proxy's through ``run``'s proxy client; each step and pass counts its own
    requests (a counting view of the shared client) into :attr:`spent`, while
    the shared clients put them on the run's meter as they happen.
    """

    def __init__(self, run: CascadeRun, oracle: LLMClient) -> None:
        self.run = run
        self.oracle = oracle
        self.spent: dict[str, Usage] = {"proxy": Usage(), "oracle": Usage()}

    def _counted(self, role: Role, config: LLM) -> Any:
        from rlm_pipeline.engines.polars import CountedClient

        shared = self.run.proxy_client(config) if role == "proxy" else self.oracle
        return CountedClient(shared)

    def _add(self, role: Role, counted: Any) -> None:
        self.spent[role] = self.spent[role] + counted.tally.snapshot()

    async def ask(
        self, role: Role, config: LLM, call: Callable[[OpsClient], Awaitable[T]]
    ) -> T:
        """``call`` with a counting view of the run's client for ``role``, in the running loop."""
        counted = self._counted(role, config)
        try:
            return await call(counted)
        finally:
            self._add(role, counted)

    async def map(
        self, role: Role, frame: Any, spec: Any, config: LLM, progress: RowProgress | None
    ) -> tuple[Any, OpStats]:
        """``spec`` over the Polars ``frame`` in the running loop, through the run's client."""
        from rlm_pipeline.ops.polars_fanout import apply_with_client

        counted = self._counted(role, config)
        try:
            return await apply_with_client(frame, spec, counted, progress=progress)
        finally:
            self._add(role, counted)

    async def confidence(self, probe: Callable[[], Awaitable[str]]) -> str:
        """The run's mode (probed by the first cascade of the run)."""
        return await self.run.confidence(probe)


async def run_in_loop(
    run: CascadeRun, frame: Any, spec: Any, oracle: LLMClient, llm: LLM
) -> tuple[Any, OpStats]:
    """The cascade over a Polars ``frame`` in the running loop, through the run's clients."""
    import polars as pl

    from rlm_pipeline.ops.cascade import cascade_frame

    if isinstance(frame, pl.LazyFrame):  # read it off the loop
        frame = await asyncio.to_thread(frame.collect)
    return await cascade_frame(
        frame, spec, llm, run.cascade, RunCalls(run, oracle), engine="polars"
    )
