"""``rp.RLM``: the Recursive Language Model operator over a table.

The root model sees the question and the table's metadata, never the data.
It explores the table with a closed set of tools (:mod:`rlm_pipeline.rlm.tools`),
fans reading out to sub-models (``classify``, ``llm_map``, ``recurse``) and
ends the run by calling ``answer``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlm_pipeline.engines.work import (
    DEFAULT_MAX_VIEWS,
    DEFAULT_TOOL_TIMEOUT_S,
    Work,
    WorkLimits,
    work_scope,
)
from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMError,
    LLMRateLimitError,
    LLMResponseParseError,
    LLMTimeoutError,
    RootModelError,
)
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.cascade import Cascade
from rlm_pipeline.rlm.cascade_tool import CascadeRun, check_engine
from rlm_pipeline.rlm.guard import cancel_run
from rlm_pipeline.rlm.loop import (
    ANSWER_RESERVE,
    DEFAULT_ROOT_MAX_TOKENS,
    LoopResult,
    run_loop,
)
from rlm_pipeline.rlm.protocol import PROMPT_VARIANTS, PROTOCOLS
from rlm_pipeline.rlm.render import cut
from rlm_pipeline.rlm.scope import RunState, Scope
from rlm_pipeline.rlm.steps import StepCallback, StepLog

__all__ = ["DEFAULT_SUB_PROMPT_TOKENS", "RLM", "RLMResult"]

logger = logging.getLogger(__name__)

#: Prompt budget (estimated tokens) of one plain sub-call with rows inlined.
DEFAULT_SUB_PROMPT_TOKENS = 6000
#: Sub-runs of one ``recurse`` call that run at once.
DEFAULT_MAX_PARALLEL = 8

T = TypeVar("T")


@dataclass(frozen=True)
class RLMResult:
    """The outcome of :meth:`RLM.run`.

    Attributes
    ----------
    answer
        The final answer as text (the ``answer`` tool's value; JSON for non-strings).
    value
        The JSON value the model gave to ``answer`` (``None`` if it never answered).
    trace
        Every step and sub-call summary, as dicts (see ``schemas/trace.schema.json``).
    usage
        Calls, tokens, cost and largest prompt of the whole run, sub-calls included.
    steps
        Root model turns used.
    errors
        Tool errors and nudges over all depths (model mistakes the run survived).
    trace_path
        Where the JSONL trace was written, if asked for.
    explanation
        The model's explanation passed to ``answer``, if any.
    stop_reason
        ``"answer"``, ``"forced_answer"`` (answered when asked after the last step) or
        ``"max_steps"`` (never answered).
    seconds
        Wall-clock time of the run.
    protocol
        The root action protocol the run ended in (``tools``, ``json`` or ``text``).
    """

    answer: str
    value: Any
    trace: list[dict[str, Any]]
    usage: Usage
    steps: int
    errors: int
    trace_path: str | None = None
    explanation: str | None = None
    stop_reason: str = "answer"
    seconds: float = 0.0
    run_id: str = field(default="", repr=False)
    protocol: str = "tools"

    @property
    def answered(self) -> bool:
        """Whether the model called ``answer``."""
        return self.stop_reason != "max_steps"


class RLM:
    """A Recursive Language Model over a table, with a closed tool set.

    Parameters
    ----------
    root
        Model that plans (the root loop).
    sub
        Model for sub-calls (classify, llm_map, sub-runs, plain calls); ``root`` if None.
    engine
        ``"polars"`` or ``"spark"``; inferred from the data when None.
    max_steps
        Model turns per loop; after the last one the model is asked once for its answer.
    max_depth
        Depth of recursion; at ``max_depth`` a partition is answered by a plain call.
    budget
        Limits on calls, tokens and cost for the whole run, sub-calls included.
    timeout_s
        Wall-clock limit of a run in seconds.  The root loop stops planning when
        less than a quarter of it is left and asks for the answer (the forced
        turn), so a slow model still ends with an answer.
    spark
        The SparkSession to use for the Spark engine.
    sub_prompt_tokens
        Prompt budget of a plain sub-call; bigger partitions are split and combined.
    max_parallel
        Sub-runs of one ``recurse`` call that run at once (on Spark also at most
        the sub model's ``max_concurrency``).
    protocol
        How the root model's actions travel (:mod:`rlm_pipeline.rlm.protocol`):
        ``"tools"`` (native function calling), ``"json"`` (one action per turn
        as a JSON object through ``response_format``, grammar-constrained where
        the server can), ``"text"`` (actions read from the reply text) or
        ``"auto"`` (the default: starts with the protocol remembered for the
        endpoint and model, else ``tools``; switches to ``text`` when the model
        writes its actions as text and to ``json`` when the server refuses
        ``tools``, and remembers it, also in the cache file when there is one).
    prompt
        The root system prompt: ``"full"``, ``"compact"`` (for small models: the
        action syntax and one worked example) or ``"auto"`` (compact for the
        ``json`` and ``text`` protocols, full for ``tools``).
    root_max_tokens
        ``max_tokens`` sent with every root-model turn (default 1024; ``None``:
        none, the server's own limit).  An action reply is a few hundred tokens
        at most; the bound keeps a rambling small model from writing for
        minutes.  Sub-calls keep their own limits.
    sub_batch_size
        Rows per sub-call of the ``classify`` and ``llm_map`` tools (default 16).
        Use 1 with a small sub-model: given a batch, a 0.5B model returned the
        labels in the order of the label list.
    max_view_rows
        Most rows one view the model makes may hold; ``None``: max(10 × rows of the
        table, 1,000,000).  A join whose output, estimated from the key counts of
        each side, passes it is refused before it runs; any other view stops
        counting at ``max_view_rows + 1`` rows and is refused (a tool error).
    max_views
        Most views the model may hold in one run (the root run and each sub-run apart).
    max_total_rows
        Most rows computed into the model's views over one run; ``None``: max(50 ×
        rows of the table, 10,000,000).
    tool_timeout_s
        Wall-clock limit of one ``peek``/``filter``/``partition``/``sql`` call; on
        expiry its Spark jobs / Polars queries are cancelled and the model gets a
        tool error.  ``timeout_s`` cancels the run's engine work the same way.
    max_memory_bytes
        Memory budget of one engine call (growth of the resident memory of the
        process and its children); ``None``: 25% of the machine's RAM.
    cascade
        A :class:`~rlm_pipeline.ops.cascade.Cascade`: the ``classify`` tool's
        sub-calls (at every depth) go through it — its ``proxy`` labels every
        row first, ``sub`` (the oracle) the calibration sample and the rows
        below the threshold; the tool's view also gets ``label_source`` and
        ``label_confidence``, and its trace record the report
        (``extra.cascade``).  The root's ``filter`` tool is SQL only (no model
        call), so it has nothing to cascade.  The run's limits hold for it:
        on Polars its calls go through the run's clients (one budget guard;
        one proxy client per run), on Spark it needs ``max_parallel=1``
        (:mod:`rlm_pipeline.rlm.cascade_tool`).

    Notes
    -----
    Limits hold for the whole run, not per sub-call.  The budget is one guard
    over one meter.  ``max_concurrency``, ``rpm`` and ``tpm`` are enforced by one
    client per model config, built once per run:

    - **Polars**: every sub-call — sub-RLM loops, plain calls, classify/llm_map
      fan-outs (run in the run's own event loop) — goes through the one ``sub``
      client; the root model through the ``root`` client (the same one when
      ``root == sub``).  The root makes one call at a time and never while its
      tools run, so at most ``sub.max_concurrency`` requests are in flight for
      the whole run, and each config's rpm/tpm limiter paces all of its calls.
    - **Spark**: classify/llm_map run as Spark tasks with limiters of their own,
      so the limits are shared out instead: ``k`` parallel sub-RLMs (``k`` at
      most ``max_parallel``, the partitions and ``sub.max_concurrency``) each get
      ``sub.share(k)`` — ``max_concurrency // k`` and exactly ``rpm / k``,
      ``tpm / k`` — for their driver calls and their Spark jobs, which split it
      again over their tasks.  The sum never passes ``sub``'s limits.  The
      trade-off: a share left idle by one sub-run is not lent to another, and
      when a Spark job takes over from the driver client of the same sub-run
      its fresh limiter may start one request early at the hand-over.  Under a
      budget the run's Spark fan-outs run one at a time, each given what is
      left when it starts (two at once would each be given all of it).  The
      calls other sub-runs make on the driver meanwhile (their root turns) are
      checked against the spend from before the fan-out, so together with it
      they can pass the budget by what those calls spend.

    Examples
    --------
    >>> import polars as pl
    >>> rlm = RLM(LLM(model="sim", base_url="http://127.0.0.1:8000/v1"), max_steps=10)
    >>> rlm.max_steps
    10

    With a simulator running (``rlm-pipeline sim-server``)::

        res = rlm.run("How many questions are about billing?", df, text_column="question")
        res.value, res.usage.max_prompt_tokens
    """

    def __init__(
        self,
        root: LLM,
        sub: LLM | None = None,
        engine: str | None = None,
        max_steps: int = 30,
        max_depth: int = 2,
        budget: Budget | None = None,
        timeout_s: float | None = None,
        spark: Any = None,
        *,
        sub_prompt_tokens: int = DEFAULT_SUB_PROMPT_TOKENS,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        protocol: str = "auto",
        prompt: str = "auto",
        root_max_tokens: int | None = DEFAULT_ROOT_MAX_TOKENS,
        sub_batch_size: int = 16,
        max_view_rows: int | None = None,
        max_views: int = DEFAULT_MAX_VIEWS,
        max_total_rows: int | None = None,
        tool_timeout_s: float | None = DEFAULT_TOOL_TIMEOUT_S,
        max_memory_bytes: int | None = None,
        cascade: Cascade | None = None,
    ) -> None:
        if not isinstance(root, LLM):
            raise InputError("root must be an rp.LLM")
        if sub is not None and not isinstance(sub, LLM):
            raise InputError("sub must be an rp.LLM or None")
        if engine not in (None, "polars", "spark"):
            raise InputError(f"engine must be 'polars', 'spark' or None, got {engine!r}")
        if max_steps < 1:
            raise InputError(f"max_steps must be >= 1, got {max_steps}")
        if max_depth < 0:
            raise InputError(f"max_depth must be >= 0, got {max_depth}")
        if timeout_s is not None and timeout_s <= 0:
            raise InputError(f"timeout_s must be > 0 or None, got {timeout_s}")
        if sub_prompt_tokens < 256:
            raise InputError(f"sub_prompt_tokens must be >= 256, got {sub_prompt_tokens}")
        if max_parallel < 1:
            raise InputError(f"max_parallel must be >= 1, got {max_parallel}")
        if protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if prompt not in PROMPT_VARIANTS:
            known = ", ".join(PROMPT_VARIANTS)
            raise InputError(f"prompt must be one of {known}, got {prompt!r}")
        if root_max_tokens is not None and root_max_tokens < 16:
            raise InputError(f"root_max_tokens must be >= 16 or None, got {root_max_tokens}")
        if sub_batch_size < 1:
            raise InputError(f"sub_batch_size must be >= 1, got {sub_batch_size}")
        if cascade is not None and not isinstance(cascade, Cascade):
            raise InputError(f"cascade must be an rp.Cascade or None, got {type(cascade).__name__}")
        if cascade is not None:
            cascade.proxy.require_price(budget)  # before any call, as for root and sub
        self.root = root
        self.sub = sub or root
        self.engine = engine
        self.max_steps = max_steps
        self.max_depth = max_depth
        self.budget = budget or Budget()
        self.timeout_s = timeout_s
        self.spark = spark
        self.sub_prompt_tokens = sub_prompt_tokens
        self.max_parallel = max_parallel
        self.protocol = protocol
        self.prompt = prompt
        self.root_max_tokens = root_max_tokens
        self.sub_batch_size = sub_batch_size
        self.cascade = cascade
        #: Limits on the engine work the model issues (README, "Security model").
        self.limits = WorkLimits(
            max_view_rows=max_view_rows,
            max_views=max_views,
            max_total_rows=max_total_rows,
            tool_timeout_s=tool_timeout_s,
            max_memory_bytes=max_memory_bytes,
        )

    def run(
        self,
        question: str,
        data: Any,
        text_column: str | None = None,
        trace_path: str | None = None,
        on_step: StepCallback | None = None,
    ) -> RLMResult:
        """Answer ``question`` over ``data``.

        Parameters
        ----------
        question
            The question, in natural language.
        data
            A Polars DataFrame/LazyFrame, Parquet path/dir/glob, CSV/JSONL path,
            pyarrow Table, pandas DataFrame or Spark DataFrame.
        text_column
            The column holding the texts to read, if there is one (a hint for the model).
        trace_path
            Write the trace as JSONL here.
        on_step
            Called with each trace record (a dict) as it happens.

        Returns
        -------
        RLMResult

        Raises
        ------
        InputError
            Bad question, data or text column.
        BudgetExceededError
            A call/token/cost budget or the timeout was hit; ``.partial`` holds the
            best partial result (the last successful tool result of the root).
        RootModelError
            The root model's server failed for good on some turn (after retries),
            the forced final turn included; ``.partial`` holds the best partial
            result and the message says at which step and why.  It is an
            :class:`~rlm_pipeline.errors.LLMError`.
        """
        from rlm_pipeline.engines.load import open_engine

        if not isinstance(question, str) or not question.strip():
            raise InputError("question must be a non-empty string")
        engine = open_engine(data, engine=self.engine, spark=self.spark)
        try:
            check_engine(self.cascade, in_tasks=engine.fans_out_in_tasks,
                         max_parallel=self.max_parallel)
            if text_column is not None and text_column not in engine.schema("context"):
                known = ", ".join(engine.schema("context"))
                raise InputError(f"text column {text_column!r} not in the data; columns: {known}")
            return _run_sync(self._arun(question, engine, text_column, trace_path, on_step))
        finally:
            engine.close()  # the run's views (Spark: its temp views leave the session)

    async def _arun(
        self,
        question: str,
        engine: Any,
        text_column: str | None,
        trace_path: str | None,
        on_step: StepCallback | None,
    ) -> RLMResult:
        from rlm_pipeline.llm.client import LLMClient

        run_id = uuid.uuid4().hex[:12]
        started = time.monotonic()
        meter = UsageMeter()
        steps = StepLog(run_id, trace_path, on_step)
        root_client = LLMClient(self.root, meter=meter, budget=self.budget)
        sub_client = (
            root_client
            if self.sub == self.root
            else LLMClient(self.sub, meter=meter, budget=self.budget)
        )
        state = RunState(
            run_id=run_id,
            root_client=root_client,
            sub_client=sub_client,
            sub_llm=self.sub,
            meter=meter,
            budget=self.budget,
            max_steps=self.max_steps,
            max_depth=self.max_depth,
            sub_prompt_tokens=self.sub_prompt_tokens,
            max_parallel=self.max_parallel,
            steps=steps,
            run_loop=run_loop,
            protocol=self.protocol,
            prompt=self.prompt,
            root_max_tokens=self.root_max_tokens,
            sub_batch_size=self.sub_batch_size,
            deadline=None if self.timeout_s is None else started + self.timeout_s,
            answer_reserve_s=0.0 if self.timeout_s is None else ANSWER_RESERVE * self.timeout_s,
            cascade=None if self.cascade is None else CascadeRun(
                self.cascade, meter=meter, budget=self.budget
            ),
        )
        scope = Scope(state, engine, 0, "root", text_column, client=sub_client, llm=self.sub)
        work = Work("run", limits=self.limits)  # every engine call of the run, cancellable
        # Every way out writes the `run_end` record first; the step log is closed last.
        try:
            try:
                with work_scope(work):
                    async with asyncio.timeout(self.timeout_s):
                        result = await run_loop(scope, question)
            except TimeoutError:
                # Cancel the run's Spark jobs / Polars queries, not just stop waiting for them.
                await cancel_run(work, f"timeout_s = {self.timeout_s:g} s")
                spent = time.monotonic() - started
                limit = float(self.timeout_s or 0.0)
                exc = BudgetExceededError("time_s", spent, limit, partial=state.partial)
                self._record_end(state, None, str(exc))
                raise exc from None
            except BudgetExceededError as exc:
                err = BudgetExceededError(exc.what, exc.spent, exc.budget, partial=state.partial)
                self._record_end(state, None, str(err))
                raise err from exc
            except LLMError as exc:  # the root model's server failed for good
                failed = _root_failure(exc, state)
                self._record_end(state, None, cut(str(failed), 1000))
                if failed is exc:
                    raise
                raise failed from exc
            except BaseException as exc:  # the root model failed, or the run was cancelled
                work.cancel("the run was cancelled")
                self._record_end(state, None, cut(f"{type(exc).__name__}: {exc}", 1000))
                raise
            return self._result(state, result, trace_path, time.monotonic() - started)
        finally:
            try:
                await root_client.aclose()
                if sub_client is not root_client:
                    await sub_client.aclose()
                if state.cascade is not None:
                    await state.cascade.aclose()
            finally:
                steps.close()

    def _record_end(
        self, state: RunState, answer: str | None, error: str | None, value: Any = None
    ) -> None:
        usage = state.meter.snapshot()
        state.steps.record(
            depth=0,
            path="root",
            kind="run_end",
            result_summary=None if answer is None else cut(answer, 2000),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            sub_calls=usage.calls,
            error=error,
            extra={
                "answer": answer,
                "value": value,
                "usage": usage.to_dict(),
                "errors": state.errors,
                "steps": state.root_steps,
                # the best partial result, for runs that end without an answer
                "partial": None
                if answer is not None or state.partial is None
                else cut(str(state.partial), 2000),
            },
        )

    def _result(
        self, state: RunState, result: LoopResult, trace_path: str | None, seconds: float
    ) -> RLMResult:
        if result.answered:
            value = result.value
            answer = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        else:
            answer = f"(no answer: the model did not call `answer` within {self.max_steps} steps)"
        self._record_end(
            state, answer, None if result.answered else "max_steps", value=result.value
        )
        return RLMResult(
            answer=answer,
            value=result.value,
            trace=list(state.steps.dicts),
            usage=state.meter.snapshot(),
            steps=state.root_steps,
            errors=state.errors,
            trace_path=trace_path,
            explanation=result.explanation,
            stop_reason=result.stop_reason,
            seconds=round(seconds, 3),
            run_id=state.run_id,
            protocol=result.protocol,
        )


_WRAPPED = (LLMError, LLMRateLimitError, LLMTimeoutError, LLMResponseParseError)


def _root_failure(exc: LLMError, state: RunState) -> LLMError:
    """The error a run ends with when its root model fails: one line, with the partial.

    Plain model failures become a :class:`RootModelError`; a more specific
    error (e.g. an endpoint found dead) keeps its type and gets ``partial``.
    """
    if type(exc) not in _WRAPPED:
        if not hasattr(exc, "partial"):
            setattr(exc, "partial", state.partial)  # noqa: B010 - not declared on LLMError
        return exc
    reason = " ".join(str(exc).split())
    partial = state.partial
    shown = " ".join(str(partial).split()) if partial is not None else "none"
    message = (
        f"root model failed at step {state.root_steps}: {cut(reason, 300)}; "
        f"best partial result: {cut(shown, 300)}"
    )
    return RootModelError(
        message,
        partial=partial,
        steps=state.root_steps,
        status=exc.status,
        attempts=exc.attempts,
    )


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
