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
from dataclasses import dataclass
from typing import Any

from rlm_pipeline.errors import InputError, LLMEndpointError, LLMError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.cascade_frames import CascadeColumns, CascadeFrames, frames_for
from rlm_pipeline.ops.cascade_report import CascadeReport
from rlm_pipeline.ops.cascade_spec import ConfidenceSpec
from rlm_pipeline.ops.cascade_stats import Calibration, calibrate, min_rows
from rlm_pipeline.ops.core import RowProgress
from rlm_pipeline.ops.spec_base import OpSpec
from rlm_pipeline.ops.stats import OpStats, StatsCounter

__all__ = ["CONFIDENCE_SOURCES", "Cascade", "run_cascade"]

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
    from rlm_pipeline.ops.fanout import FANOUT

    if not isinstance(cascade, Cascade):
        msg = f"cascade must be an rlm_pipeline.Cascade, got {type(cascade).__name__}"
        raise InputError(msg)
    # A cost budget needs both prices before the proxy pass spends anything.
    cascade.proxy.require_price(budget)
    llm.require_price(budget)
    chosen = engine_for(data, engine)
    frame = chosen.read(data, lazy=False)
    lazy = _is_lazy(frame)
    if lazy:
        frame = frame.collect()
    frames = frames_for(chosen.name)
    out_col = spec.output_column
    cols = CascadeColumns(
        text=spec.column,
        value=out_col,
        error=spec.error_column,
        source=f"{out_col}_source",
        confidence=f"{out_col}_confidence",
    )
    frame = _checked(frames, frame, cols, overwrite=overwrite)
    job = _Job(meter if meter is not None else UsageMeter(), budget)

    mode = cascade.confidence
    if mode == "auto":
        mode = _probe_mode(spec, cascade.proxy, job)
    proxy_llm = cascade.proxy
    if mode == "logprobs" and proxy_llm.logprobs is None:
        proxy_llm = dataclasses.replace(proxy_llm, logprobs=DEFAULT_TOP_LOGPROBS)
    proxy_spec = ConfidenceSpec(spec, mode, cols.confidence)

    pass_meter = UsageMeter()
    passed, proxy_stats = chosen.map_frame(
        frame,
        proxy_spec,
        proxy_llm,
        fanout=FANOUT,
        meter=pass_meter,
        budget=job.left(),
        progress=progress,
        overwrite=True,
    )
    job.add("proxy", pass_meter.snapshot())

    oracle_spec = _scratch_spec(spec, cols)
    sampled = frames.sample(
        passed, cols.text, cols.value, cols.confidence, n=cascade.sample, seed=cascade.seed
    )
    answered, calibration, sample_cached = _calibrate(sampled, oracle_spec, llm, cascade, job)
    marked = frames.mark(passed, cols, calibration.threshold, answered)
    pass_meter = UsageMeter()
    asked, oracle_stats = chosen.map_frame(
        marked,
        oracle_spec,
        llm,
        fanout=FANOUT,
        meter=pass_meter,
        budget=job.left(),
        overwrite=True,
    )
    job.add("oracle", pass_meter.snapshot())
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
        job,
        escalated=oracle_stats.rows - oracle_stats.errors.get("empty_input", 0),
        cached_rows=proxy_stats.cached_rows + oracle_stats.cached_rows + sample_cached,
    )
    if report.reached:
        logger.info("%s", report.summary())
    else:
        logger.warning("%s", report.summary())
    return (out.lazy() if lazy else out), stats


class _Job:
    """The usage of a cascade's passes, per model, onto the caller's meter; the budget left."""

    def __init__(self, meter: UsageMeter, budget: Budget | None) -> None:
        self.meter = meter
        self.budget = budget
        self.spent = {"proxy": Usage(), "oracle": Usage()}

    def add(self, role: str, usage: Usage) -> None:
        self.spent[role] = self.spent[role] + usage
        self.meter.add(usage)

    def left(self) -> Budget | None:
        """The budget less what both models spent so far (None: no budget)."""
        if self.budget is None:
            return None
        return self.budget.less(self.spent["proxy"] + self.spent["oracle"])


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


def _probe_mode(spec: OpSpec, proxy: LLM, job: _Job) -> str:
    """``"logprobs"`` when the proxy's reply to one row carries log-probabilities, else ``"verbal"``.

    The row is :data:`PROBE_TEXT`, not the data's: no engine work before the
    proxy's pass (on Spark a first row would cost a job).
    """
    text = PROBE_TEXT
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.ops.runner import run_sync

    config = dataclasses.replace(
        proxy, logprobs=proxy.logprobs if proxy.logprobs is not None else DEFAULT_TOP_LOGPROBS
    )
    meter = UsageMeter()

    async def ask() -> bool:
        async with LLMClient(config, meter=meter, budget=job.left()) as client:
            _, reply = await client.json(
                spec.messages([text]),
                spec.reply_schema(),
                name=spec.reply_name(),
                accept=lambda _obj: True,
            )
            return reply.logprobs is not None

    try:
        has = run_sync(ask)
    except LLMEndpointError:
        raise
    except LLMError as exc:  # also parse errors and budget stops: the proxy pass will say more
        logger.warning("cascade: the confidence probe failed (%s); using verbal confidences", exc)
        has = False
    finally:
        job.add("proxy", meter.snapshot())
    mode = "logprobs" if has else "verbal"
    logger.info(
        "cascade: proxy %s %s log-probabilities: confidence=%s",
        proxy.model,
        "returns" if has else "does not return",
        mode,
    )
    return mode


def _calibrate(
    sampled: list[tuple[str, Any, float]],
    oracle_spec: OpSpec,
    llm: LLM,
    cascade: Cascade,
    job: _Job,
) -> tuple[dict[str, Any], Calibration, int]:
    """The oracle's answers to the sample (text -> value), the calibration, rows from the store."""
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.ops.core import Tally, apply_texts
    from rlm_pipeline.ops.runner import run_sync

    texts = [text for text, _, _ in sampled]
    meter = UsageMeter()
    tally = Tally()

    async def ask() -> list[tuple[Any, str | None]]:
        async with LLMClient(llm, meter=meter, budget=job.left()) as client:
            return await apply_texts(texts, client, oracle_spec, tally=tally)

    try:
        results = run_sync(ask) if texts else []
    finally:
        job.add("oracle", meter.snapshot())
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
    job: _Job,
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
        proxy_usage=job.spent["proxy"],
        oracle_usage=job.spent["oracle"],
    )
    usage = job.spent["proxy"] + job.spent["oracle"]
    stats = dataclasses.replace(
        counter.stats(), usage=usage, cached_rows=cached_rows, cascade=report
    )
    return stats, report
