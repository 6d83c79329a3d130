"""Cascades: a cheap proxy model answers first, only its uncertain rows go to the strong one.

:class:`Cascade` is the setting (``rp.classify(..., cascade=Cascade(proxy=small))``);
:func:`run_cascade` runs an operator with it, through the same route as every
operator (``Engine.map_frame``: Polars in this process, Spark in executor
tasks with the limits shared out) for the proxy and oracle passes; the
``"auto"`` probe (one row) and the calibration sample (``sample`` rows) are
asked from the driver, so on Spark the driver must reach both endpoints too.  The method and its statistics are in
``docs/cascades.md``; in short:

1. **proxy pass**: the proxy answers every row with a confidence — the
   token log-probabilities of its answer (``confidence="logprobs"``), or a
   ``confidence`` number it writes next to each answer (``"verbal"``);
   ``"auto"`` asks one made-up row with ``logprobs`` on and takes
   log-probabilities when that reply carries them, else verbal;
2. **calibration**: a seeded random sample of ``sample`` distinct answered
   texts is also answered by the oracle (the operator's ``llm``); the
   threshold is the lowest confidence whose kept rows' agreement with the
   oracle reaches ``target`` with probability ``≥ 1 − delta`` (one-sided
   Clopper–Pearson, fixed-sequence testing: :mod:`rlm_pipeline.ops.cascade_stats`);
3. **oracle pass**: rows below the threshold, rows without a confidence and
   rows the proxy failed on go to the oracle; the sample's rows take the
   oracle's answers already bought.  No threshold reaching the target sends
   every row to the oracle, and the report and a warning say so.

Every row comes out once, in input order, with ``<output>``, ``<output>_error``,
``<output>_source`` (``proxy`` / ``oracle``; null for rows no model was asked
about: blank or too long) and ``<output>_confidence`` (the proxy's).  An
oracle failure stays a failure with the oracle's reason; it never falls back
to the proxy's answer.  (A calibration-sample row whose oracle call failed is
left out of the calibration and treated like any other row: above the
threshold it keeps the proxy's answer, below it goes to the oracle pass; a
warning gives the count.)  The row store keys answers by endpoint, model and a
``confidence`` marker, so proxy answers are never served as oracle answers.

Examples
--------
>>> from rlm_pipeline.llm.config import LLM
>>> Cascade(proxy=LLM(model="gpt-4.1-nano"), target=0.9).sample
200
>>> Cascade(proxy=LLM(), target=1.5)
Traceback (most recent call last):
...
rlm_pipeline.errors.InputError: target must be a number between 0 and 1 (exclusive), got 1.5
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from rlm_pipeline.errors import InputError, LLMEndpointError, LLMError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.cascade_frames import CascadeColumns, CascadeFrames, frames_for
from rlm_pipeline.ops.cascade_report import CascadeReport
from rlm_pipeline.ops.cascade_spec import ConfidenceSpec
from rlm_pipeline.ops.cascade_stats import Calibration, calibrate, min_rows
from rlm_pipeline.ops.core import OpsClient, RowProgress
from rlm_pipeline.ops.spec_base import OpSpec
from rlm_pipeline.ops.stats import EMPTY_INPUT, OpStats, StatsCounter

__all__ = [
    "CONFIDENCE_SOURCES",
    "Cascade",
    "CascadeCalls",
    "EngineCalls",
    "StreamedCalls",
    "cascade_frame",
    "cascade_to_parquet",
    "proxy_config",
    "run_cascade",
]

logger = logging.getLogger(__name__)

#: Where the proxy's confidences come from (``auto``: log-probabilities when the server returns them).
CONFIDENCE_SOURCES = ("auto", "logprobs", "verbal")
#: ``top_logprobs`` asked of the proxy when its LLM does not set ``logprobs``.
DEFAULT_TOP_LOGPROBS = 1


@dataclass(frozen=True)
class Cascade:
    """A proxy model first, only uncertain rows to the operator's ``llm`` (the oracle).

    Parameters
    ----------
    proxy
        The cheap model (its own endpoint, limits and cache settings).
    target
        Agreement with the oracle that the rows kept by the proxy must reach.
    sample
        Distinct texts answered by both models to calibrate the threshold (at
        least :func:`~rlm_pipeline.ops.cascade_stats.min_rows` of them can reach
        ``target``: 59 for 0.95 at delta 0.05).
    confidence
        ``"auto"``, ``"logprobs"`` or ``"verbal"`` (see the module docstring).
    delta
        Allowed probability that the chosen threshold misses ``target``.
    seed
        Seed of the calibration sample.

    Examples
    --------
    >>> from rlm_pipeline.llm.config import LLM
    >>> Cascade(LLM(model="gpt-4.1-nano"), confidence="verbal").confidence
    'verbal'
    """

    proxy: LLM
    target: float = 0.95
    sample: int = 200
    confidence: str = "auto"
    delta: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.proxy, LLM):
            msg = f"proxy must be an rlm_pipeline.LLM, got {type(self.proxy).__name__}"
            raise InputError(msg)
        for name in ("target", "delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                msg = f"{name} must be a number between 0 and 1 (exclusive), got {value!r}"
                raise InputError(msg)
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 1:
            msg = f"sample must be an integer >= 1, got {self.sample!r}"
            raise InputError(msg)
        if self.confidence not in CONFIDENCE_SOURCES:
            msg = f"confidence must be one of {list(CONFIDENCE_SOURCES)}, got {self.confidence!r}"
            raise InputError(msg)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            msg = f"seed must be an integer, got {self.seed!r}"
            raise InputError(msg)

    @property
    def min_sample(self) -> int:
        """The fewest sample rows that can reach ``target`` at ``delta`` (all agreeing)."""
        return min_rows(self.target, self.delta)


def run_cascade(
    data: Any,
    spec: OpSpec,
    llm: LLM,
    cascade: Cascade,
    *,
    engine: str | None = None,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
    overwrite: bool = False,
) -> tuple[Any, OpStats]:
    """Run ``spec`` over ``data`` with ``cascade.proxy`` first and ``llm`` as the oracle.

    Called by :func:`~rlm_pipeline.ops.api.run_op` when it is given a cascade.
    ``meter`` gets both models' usage; ``budget`` holds for both together (each
    pass gets what the earlier ones left); ``progress`` follows the proxy's
    pass.  Returns the frame (same kind as :func:`~rlm_pipeline.ops.api.run_op`)
    and the stats, with the :class:`~rlm_pipeline.ops.cascade_report.CascadeReport`
    in ``stats.cascade``.

    Raises
    ------
    InputError
        An output column exists (without ``overwrite``), a scratch column name
        is taken, or the operator has more than one value column.
    """
    from rlm_pipeline.engines.load import engine_for

    _check_cascade(cascade)
    # A cost budget needs both prices before the proxy pass spends anything.
    cascade.proxy.require_price(budget)
    llm.require_price(budget)
    chosen = engine_for(data, engine)
    frame = chosen.read(data, lazy=False)
    lazy = _is_lazy(frame)
    if lazy:
        frame = frame.collect()
    calls = EngineCalls(chosen, meter, budget)

    async def run() -> tuple[Any, OpStats]:
        return await cascade_frame(
            frame, spec, llm, cascade, calls, engine=chosen.name, progress=progress,
            overwrite=overwrite,
        )

    out, stats = _drive(run())
    return (out.lazy() if lazy else out), stats


def cascade_to_parquet(
    source: Any,
    spec: OpSpec,
    llm: LLM,
    cascade: Cascade,
    path: str | os.PathLike[str],
    *,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
    progress: RowProgress | None = None,
) -> OpStats:
    """The cascade over a Polars ``LazyFrame`` streamed into the Parquet file ``path``.

    Every row once, without holding a pass in memory (what ``rlm-pipeline classify
    --cascade-model`` runs on Polars; the measured peak is in ``docs/cascades.md``:
    lower than in memory, not yet flat in the input's size): the proxy's pass is streamed into a scratch Parquet file
    next to ``path`` (answers also in the row store when the proxy has a
    ``cache_path``); the calibration sample is drawn from it a batch at a time
    (``sample`` texts held); the oracle's pass streams that file, with the rows
    to escalate marked, into a second scratch file; the combination is sunk
    into ``path``.  The scratch files are removed at the end.  Output columns
    already in ``source`` are replaced.  Returns the stats, with the report
    in ``stats.cascade``.
    """
    import polars as pl

    from rlm_pipeline.engines.polars import PolarsEngine

    _check_cascade(cascade)
    cascade.proxy.require_price(budget)
    llm.require_price(budget)
    target = Path(os.fspath(path))
    with tempfile.TemporaryDirectory(prefix=".rlm-cascade-", dir=target.parent) as scratch:
        calls = StreamedCalls(PolarsEngine(), meter, budget, Path(scratch))

        async def run() -> tuple[Any, OpStats]:
            return await cascade_frame(
                source.lazy(), spec, llm, cascade, calls, engine="polars", progress=progress,
                overwrite=True,
            )

        out, stats = _drive(run())
        try:
            out.sink_parquet(target)
        except (OSError, pl.exceptions.PolarsError) as exc:
            msg = f"cannot write {os.fspath(path)!r}: {str(exc).splitlines()[0]}"
            raise InputError(msg) from exc
    found: OpStats = stats
    return found


T = TypeVar("T")


def _drive(steps: Coroutine[Any, Any, T]) -> T:
    """Run :func:`cascade_frame` with :class:`EngineCalls`, whose steps never suspend.

    Each step of :class:`EngineCalls` is a blocking call (a pass on the engine, or
    a driver step on an event loop of its own), so the core completes in one
    ``send``: no loop runs around it, and the passes' own loops are top-level
    ones (Ctrl-C stops them at once, as for a plain operator).
    """
    try:
        steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    steps.close()
    msg = "a cascade step waited outside an event loop"  # pragma: no cover - a bug
    raise RuntimeError(msg)  # pragma: no cover


def _check_cascade(cascade: Any) -> None:
    if not isinstance(cascade, Cascade):
        msg = f"cascade must be an rlm_pipeline.Cascade, got {type(cascade).__name__}"
        raise InputError(msg)


Role = Literal["proxy", "oracle"]


class CascadeCalls(Protocol):
    """How a cascade's model calls are made, and whose they are.

    :class:`EngineCalls` (:func:`run_cascade`): each step its own client, each
    pass through ``Engine.map_frame`` (Spark: executor tasks), each within what
    the budget has left.  :class:`~rlm_pipeline.rlm.cascade_tool.RunCalls`
    (``rp.RLM(cascade=...)`` on Polars): every call through the run's clients,
    in the run's event loop, under its one budget guard and limits.
    ``spent`` is each model's usage in this cascade (for the report).
    """

    spent: dict[str, Usage]

    async def ask(
        self, role: Role, config: LLM, call: Callable[[OpsClient], Awaitable[T]]
    ) -> T:
        """``call(client)`` with a client for model ``role`` (the probe, the calibration sample)."""
        ...

    async def map(
        self, role: Role, frame: Any, spec: Any, config: LLM, progress: RowProgress | None
    ) -> tuple[Any, OpStats]:
        """One pass of ``spec`` over ``frame``: the frame with its output columns, the stats."""
        ...

    async def confidence(self, probe: Callable[[], Awaitable[str]]) -> str:
        """The confidence mode of ``"auto"``: ``probe()``'s (a run may keep it for later calls)."""
        ...


class EngineCalls:
    """:class:`CascadeCalls` of :func:`run_cascade`: the engine's passes, clients of their own.

    Each step gets the budget less what both models spent so far in it, and
    its usage goes onto ``meter``.  Every step blocks until it is done (the
    passes on the engine, the driver steps on a loop of their own), so no
    loop runs around the cascade (:func:`_drive`).  Under an RLM tool call
    (Spark), a cancelled work stops the cascade before its next step, and the
    passes' Spark jobs carry the work's tags (cancelled with it).
    """

    def __init__(self, engine: Any, meter: UsageMeter | None, budget: Budget | None) -> None:
        self.engine = engine
        self.meter = meter if meter is not None else UsageMeter()
        self.budget = budget
        self.spent: dict[str, Usage] = {"proxy": Usage(), "oracle": Usage()}

    def add(self, role: str, usage: Usage) -> None:
        """``usage`` of model ``role`` in this cascade, also onto the caller's meter."""
        self.spent[role] = self.spent[role] + usage
        self.meter.add(usage)

    def left(self) -> Budget | None:
        """The budget less what both models spent so far (None: no budget)."""
        if self.budget is None:
            return None
        return self.budget.less(self.spent["proxy"] + self.spent["oracle"])

    async def ask(
        self, role: Role, config: LLM, call: Callable[[OpsClient], Awaitable[T]]
    ) -> T:
        """``call`` with a client of its own, on a loop of its own (blocking: see :func:`_drive`)."""
        from rlm_pipeline.llm.client import LLMClient
        from rlm_pipeline.ops.runner import run_sync

        _check_work()
        meter = UsageMeter()
        budget = self.left()

        async def run() -> T:
            async with LLMClient(config, meter=meter, budget=budget) as client:
                return await call(client)

        try:
            return run_sync(run)
        finally:
            self.add(role, meter.snapshot())

    async def map(
        self, role: Role, frame: Any, spec: Any, config: LLM, progress: RowProgress | None
    ) -> tuple[Any, OpStats]:
        return self._pass(role, frame, spec, config, progress)

    def _pass(
        self, role: Role, frame: Any, spec: Any, config: LLM, progress: RowProgress | None,
        **options: Any,
    ) -> tuple[Any, OpStats]:
        """One ``Engine.map_frame`` pass within what is left, its usage added for ``role``."""
        from rlm_pipeline.ops.fanout import FANOUT

        _check_work()
        meter = UsageMeter()
        try:
            with _spark_job(self.engine, frame):
                out: tuple[Any, OpStats] = self.engine.map_frame(
                    frame,
                    spec,
                    config,
                    fanout=FANOUT,
                    meter=meter,
                    budget=self.left(),
                    progress=progress,
                    overwrite=True,
                    **options,
                )
            return out
        finally:
            self.add(role, meter.snapshot())

    async def confidence(self, probe: Callable[[], Awaitable[str]]) -> str:
        return await probe()


class StreamedCalls(EngineCalls):
    """:class:`EngineCalls` whose passes stream into Parquet files in ``scratch`` (Polars).

    Each pass is ``PolarsEngine.map_frame(..., write_to=...)`` (bounded memory)
    and gives back a scan of its file.
    """

    def __init__(
        self, engine: Any, meter: UsageMeter | None, budget: Budget | None, scratch: Path
    ) -> None:
        super().__init__(engine, meter, budget)
        self.scratch = scratch

    async def map(
        self, role: Role, frame: Any, spec: Any, config: LLM, progress: RowProgress | None
    ) -> tuple[Any, OpStats]:
        import polars as pl

        written = self.scratch / f"{role}.parquet"
        _, stats = self._pass(role, frame.lazy(), spec, config, progress, write_to=written)
        return pl.scan_parquet(written), stats


def _check_work() -> None:
    """Stop here when the RLM tool call this cascade runs under was cancelled."""
    from rlm_pipeline.engines.work import current_work

    work = current_work()
    if work is not None:
        work.check()


def _spark_job(engine: Any, frame: Any) -> AbstractContextManager[None]:
    """Spark: the pass's jobs tagged with the current work (cancellable); else nothing."""
    if not engine.fans_out_in_tasks:
        return nullcontext()
    from rlm_pipeline.engines.work import spark_job

    return spark_job(frame.sparkSession)


async def cascade_frame(
    frame: Any,
    spec: OpSpec,
    llm: LLM,
    cascade: Cascade,
    calls: CascadeCalls,
    *,
    engine: str,
    progress: RowProgress | None = None,
    overwrite: bool = False,
) -> tuple[Any, OpStats]:
    """The cascade over an eager ``frame`` (Polars ``DataFrame`` or Spark ``DataFrame``).

    The steps of :func:`run_cascade`, with every model call made through
    ``calls`` (:class:`CascadeCalls`): :func:`run_cascade` passes
    :class:`EngineCalls`; ``rp.RLM(cascade=...)`` on Polars passes the run's
    own (its clients, budget guard and limits).  ``llm`` is the oracle's
    config (the one ``calls`` holds for ``"oracle"``).
    """
    _check_cascade(cascade)
    frames = frames_for(engine)
    out_col = spec.output_column
    cols = CascadeColumns(
        text=spec.column,
        value=out_col,
        error=spec.error_column,
        source=f"{out_col}_source",
        confidence=f"{out_col}_confidence",
    )
    frame = _checked(frames, frame, cols, overwrite=overwrite)

    mode = cascade.confidence
    if mode == "auto":
        mode = await calls.confidence(lambda: _probe_mode(spec, cascade.proxy, calls))
    proxy_llm = proxy_config(cascade.proxy, mode)
    proxy_spec = ConfidenceSpec(spec, mode, cols.confidence)
    passed, proxy_stats = await calls.map("proxy", frame, proxy_spec, proxy_llm, progress)

    oracle_spec = _scratch_spec(spec, cols)
    sampled = frames.sample(
        passed, cols.text, cols.value, cols.confidence, n=cascade.sample, seed=cascade.seed
    )
    answered, calibration, sample_cached = await _calibrate(
        sampled, oracle_spec, llm, cascade, calls
    )
    marked = frames.mark(passed, cols, calibration.threshold, answered)
    asked, oracle_stats = await calls.map("oracle", marked, oracle_spec, llm, None)
    out = frames.combine(asked, cols, answered)

    stats, report = _report(
        frames,
        out,
        cols,
        spec,
        llm,
        cascade,
        mode,
        calibration,
        calls.spent,
        escalated=oracle_stats.rows - oracle_stats.errors.get(EMPTY_INPUT, 0),
        cached_rows=proxy_stats.cached_rows + oracle_stats.cached_rows + sample_cached,
    )
    if report.reached:
        logger.info("%s", report.summary())
    else:
        logger.warning("%s", report.summary())
    return out, stats


def proxy_config(proxy: LLM, mode: str) -> LLM:
    """The proxy's config for ``mode``: log-probabilities asked for in ``logprobs`` mode.

    Examples
    --------
    >>> proxy_config(LLM(model="small"), "logprobs").logprobs
    1
    >>> proxy_config(LLM(model="small"), "verbal").logprobs is None
    True
    """
    if mode == "logprobs" and proxy.logprobs is None:
        return dataclasses.replace(proxy, logprobs=DEFAULT_TOP_LOGPROBS)
    return proxy


def _is_lazy(frame: Any) -> bool:
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - polars is a core dependency
        return False
    return isinstance(frame, pl.LazyFrame)


def _checked(frames: CascadeFrames, frame: Any, cols: CascadeColumns, *, overwrite: bool) -> Any:
    """``frame`` with the output columns dropped (``overwrite``), after the checks."""
    names = frames.columns(frame)
    if cols.text not in names:
        msg = f"column {cols.text!r} not found; columns: {names}"
        raise InputError(msg)
    scratch = [name for name in cols.scratch if name in names]
    if scratch:
        msg = f"column(s) {scratch} are reserved for the cascade's own work; rename them"
        raise InputError(msg)
    taken = [name for name in cols.outputs if name in names]
    if taken and not overwrite:
        listed = " and ".join(repr(name) for name in taken)
        msg = (
            f"column(s) {listed} already exist in the input; choose another output_column, "
            "or pass overwrite=True (CLI: --overwrite-column) to replace them"
        )
        raise InputError(msg)
    return frames.drop(frame, taken)


def _scratch_spec(spec: OpSpec, cols: CascadeColumns) -> OpSpec:
    """The operator reading the scratch column and writing the scratch output (the oracle's)."""
    try:
        return dataclasses.replace(spec, column=cols.ask, output_column=cols.oracle)  # type: ignore[type-var]
    except TypeError as exc:
        msg = f"a cascade needs a dataclass spec with column/output_column fields: {exc}"
        raise InputError(msg) from exc


#: The one row of the ``auto`` probe (any text does: only the reply's form matters).
PROBE_TEXT = "Hello, I have a question about my account."


async def _probe_mode(spec: OpSpec, proxy: LLM, calls: CascadeCalls) -> str:
    """``"logprobs"`` when the proxy's reply to one row carries log-probabilities, else ``"verbal"``.

    The row is :data:`PROBE_TEXT`, not the data's: no engine work before the
    proxy's pass (on Spark a first row would cost a job).  The reply goes
    through the operator's own row check (:func:`~rlm_pipeline.ops.reply.check_reply`),
    so a reply that fails it is never cached (only its form is used here).
    """
    from rlm_pipeline.ops.reply import check_reply

    def accept(obj: dict[str, Any]) -> bool:
        return all(error is None for _, error in check_reply(obj, 1, spec))

    try:
        async def ask(client: OpsClient) -> Any:
            _, reply = await client.json(
                spec.messages([PROBE_TEXT]),
                spec.reply_schema(),
                name=spec.reply_name(),
                accept=accept,
            )
            return reply

        reply = await calls.ask("proxy", proxy_config(proxy, "logprobs"), ask)
        has = reply.logprobs is not None
    except LLMEndpointError:
        raise
    except LLMError as exc:  # also parse errors and budget stops: the proxy pass will say more
        logger.warning("cascade: the confidence probe failed (%s); using verbal confidences", exc)
        has = False
    mode = "logprobs" if has else "verbal"
    logger.info(
        "cascade: proxy %s %s log-probabilities: confidence=%s",
        proxy.model,
        "returns" if has else "does not return",
        mode,
    )
    return mode


async def _calibrate(
    sampled: list[tuple[str, Any, float]],
    oracle_spec: OpSpec,
    llm: LLM,
    cascade: Cascade,
    calls: CascadeCalls,
) -> tuple[dict[str, Any], Calibration, int]:
    """The oracle's answers to the sample (text -> value), the calibration, rows from the store."""
    from rlm_pipeline.ops.core import Tally, apply_texts

    texts = [text for text, _, _ in sampled]
    tally = Tally()
    results: list[tuple[Any, str | None]] = []
    if texts:
        results = await calls.ask(
            "oracle", llm, lambda client: apply_texts(texts, client, oracle_spec, tally=tally)
        )
    answered: dict[str, Any] = {}
    pairs: list[tuple[float, bool]] = []
    failed = 0
    for (text, proxy_value, conf), (value, error) in zip(sampled, results, strict=True):
        if error is not None:
            failed += 1
            continue
        answered[text] = value
        pairs.append((conf, proxy_value == value))
    if failed:
        logger.warning(
            "cascade: the oracle failed on %d of %d sample rows (left out)", failed, len(texts)
        )
    if len(pairs) < cascade.min_sample:
        logger.warning(
            "cascade: %d calibration rows, fewer than the %d needed to reach target %g at delta %g",
            len(pairs),
            cascade.min_sample,
            cascade.target,
            cascade.delta,
        )
    return answered, calibrate(pairs, cascade.target, cascade.delta), tally.cached_rows


def _report(
    frames: CascadeFrames,
    out: Any,
    cols: CascadeColumns,
    spec: OpSpec,
    llm: LLM,
    cascade: Cascade,
    mode: str,
    calibration: Calibration,
    spent: dict[str, Usage],
    *,
    escalated: int,
    cached_rows: int,
) -> tuple[OpStats, CascadeReport]:
    """The final stats (counted on the output) and the cascade's report."""
    counter = StatsCounter(spec)
    by_source: dict[str | None, int] = {"proxy": 0, "oracle": 0, None: 0}
    for value, kind, source, n in frames.counts(out, cols):
        counter.add([(value, kind)], [n])
        by_source[source if source in ("proxy", "oracle") else None] += n
    report = CascadeReport(
        proxy_model=cascade.proxy.model,
        oracle_model=llm.model,
        confidence=mode,
        target=cascade.target,
        delta=cascade.delta,
        sample=cascade.sample,
        calibration=calibration,
        rows=sum(by_source.values()),
        unsent=by_source[None],
        proxy_rows=by_source["proxy"],
        oracle_rows=by_source["oracle"],
        escalated_rows=escalated,
        proxy_usage=spent["proxy"],
        oracle_usage=spent["oracle"],
    )
    usage = spent["proxy"] + spent["oracle"]
    stats = dataclasses.replace(
        counter.stats(), usage=usage, cached_rows=cached_rows, cascade=report
    )
    return stats, report
