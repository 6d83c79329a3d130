"""``top_k``: the k rows that fit a criterion best, with far fewer calls than a sort.

Method (``docs/operators/top_k.md``):

1. **Score** every row 0-100 in one row-wise pass
   (:class:`~rlm_pipeline.ops.multi_specs.ScoreSpec` through ``Engine.map_frame``, as ``run_op``): batched, deduplicated, row-cached,
   under the run's limits, on either engine.  ``⌈distinct texts / batch_size⌉``
   calls (plus re-asks of bad replies).
2. **Candidates**: the ``pool_factor × k`` best-scored rows (ties: text; rows
   sharing a text in no set order), so a row the scores under-rate by a little still gets in.
3. **Re-rank** the candidates' distinct texts side by side, best first, in
   calls of at most ``rank_size`` rows (scores from separate batches are not
   calibrated against each other; a ranking in one prompt is).  When the pool
   fits one call, one call orders it; otherwise a sliding window (window
   ``rank_size``, stride ``rank_size / 2``) moves from the bottom of the pool to
   the top, each call re-ordering its window, so a strong row climbs through
   every window in one pass: ``1 + ⌈(pool − rank_size) / (rank_size / 2)⌉``
   calls.  A re-rank reply must name every id once; a bad one is asked once
   more, then that window keeps its score order (logged, counted in the stats).
4. The first ``k`` rows get ``rank`` 1..k (rows sharing one text take
   consecutive ranks).

Total: about ``n / batch_size + 1`` calls for ``k ≤ rank_size / pool_factor``
(16 by default), versus ``n log2 n`` comparisons for a sort by pairwise calls.

Rows whose score failed (after re-asks) cannot be ranked: ``on_error="raise"``
(default) raises :class:`~rlm_pipeline.errors.UnansweredRowsError` naming the count;
``"drop"`` ranks the scored rows and logs the count.  Blank texts are never
candidates.

Output: the caller's kind of frame with ``k`` rows (fewer when fewer rows have
a score), every input column plus ``score`` (int64) and ``rank`` (int64, 1 =
best), ordered by rank.

Examples
--------
>>> TopKSpec("q", "most urgent", k=10).rerank_calls(20)
1
>>> TopKSpec("q", "most urgent", k=40).rerank_calls(80)
4
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMEndpointError,
    LLMError,
    LLMResponseParseError,
    UnansweredRowsError,
)
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.multi_common import (
    InputFrame,
    check_llm,
    read_input,
    run_spec,
    with_client,
)
from rlm_pipeline.ops.multi_specs import ScoreSpec
from rlm_pipeline.ops.multi_wire import (
    MULTI_PROMPT_VERSION,
    RANKING_SCHEMA,
    check_ranking,
    rank_messages,
)
from rlm_pipeline.ops.spec import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ROW_TOKENS
from rlm_pipeline.ops.stats import OpStats, failure_summary

__all__ = ["DEFAULT_RANK_SIZE", "TopKSpec", "TopKStats", "run_top_k", "top_k"]

logger = logging.getLogger(__name__)

#: Rows per re-rank call.
DEFAULT_RANK_SIZE = 32
#: Candidates per wanted row.
DEFAULT_POOL_FACTOR = 2
_SCORE = "__rp_score"
OnError = Literal["raise", "drop"]


@dataclass(frozen=True)
class TopKSpec:
    """What to rank and how.

    Parameters
    ----------
    column, criterion, k
        The text column, what "best" means, how many rows to return.
    batch_size
        Rows per scoring call.
    rank_size
        Rows per re-rank call (at least 4).
    pool_factor
        Candidates re-ranked per wanted row.
    max_row_tokens, truncate
        Per-row input limit of the scoring pass (as for classify).
    """

    column: str
    criterion: str
    k: int
    batch_size: int = DEFAULT_BATCH_SIZE
    rank_size: int = DEFAULT_RANK_SIZE
    pool_factor: int = DEFAULT_POOL_FACTOR
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.criterion, str) or not self.criterion.strip():
            msg = "criterion must be a non-empty string"
            raise InputError(msg)
        for name, low in (("k", 1), ("rank_size", 4), ("pool_factor", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                msg = f"{name} must be an integer >= {low}, got {value!r}"
                raise InputError(msg)
        self.score_spec()  # checks column, batch_size and the row limit

    def score_spec(self) -> ScoreSpec:
        """The scoring pass (:class:`~rlm_pipeline.ops.multi_specs.ScoreSpec`)."""
        return ScoreSpec(
            column=self.column,
            criterion=self.criterion,
            batch_size=self.batch_size,
            output_column=_SCORE,
            max_row_tokens=self.max_row_tokens,
            truncate=self.truncate,
        )

    def rerank_calls(self, pool: int) -> int:
        """Re-rank calls for a pool of ``pool`` distinct texts (no re-asks)."""
        if pool <= 1:
            return 0
        if pool <= self.rank_size:
            return 1
        stride = self.rank_size // 2
        return 1 + -(-(pool - self.rank_size) // stride)


@dataclass(frozen=True)
class TopKStats:
    """What one top_k run did.

    Attributes
    ----------
    rows
        Input rows.
    scoring
        The scoring pass's :class:`~rlm_pipeline.ops.stats.OpStats` (rows by reason).
    candidates
        Distinct texts re-ranked.
    rerank_calls, rerank_failed
        Re-rank calls made, and those left in score order after a bad reply.
    usage
        Model usage of the whole run.
    """

    rows: int
    scoring: OpStats
    candidates: int = 0
    rerank_calls: int = 0
    rerank_failed: int = 0
    usage: Usage = field(default_factory=Usage)


async def _rank_once(client: Any, criterion: str, texts: list[str]) -> list[int] | None:
    messages = rank_messages(criterion, texts)
    for _ in range(2):
        try:
            obj, _reply = await client.json(
                messages,
                RANKING_SCHEMA,
                name="top_k_ranking",
                prompt_version=MULTI_PROMPT_VERSION,
                accept=lambda o: check_ranking(o, len(texts)) is not None,
            )
        except LLMResponseParseError:
            continue
        except LLMEndpointError:
            raise
        except (LLMError, BudgetExceededError) as exc:
            logger.debug("re-rank call failed: %s", exc)
            return None
        ranking = check_ranking(obj, len(texts))
        if ranking is not None:
            return ranking
    return None


async def rerank(client: Any, spec: TopKSpec, texts: list[str]) -> tuple[list[str], int, int]:
    """``texts`` (candidates, best-scored first) re-ordered; (order, calls, failed calls)."""
    order = list(texts)
    if len(order) <= 1:
        return order, 0, 0
    size = spec.rank_size
    starts = [0] if len(order) <= size else _window_starts(len(order), size)
    calls = failed = 0
    for start in starts:
        window = order[start : start + size]
        ranking = await _rank_once(client, spec.criterion, window)
        calls += 1
        if ranking is None:
            failed += 1
            continue
        order[start : start + size] = [window[i] for i in ranking]
    return order, calls, failed


def _window_starts(n: int, size: int) -> list[int]:
    """Window starts from the bottom of the pool to the top (stride ``size // 2``)."""
    stride = size // 2
    starts = []
    start = n - size
    while start > 0:
        starts.append(start)
        start -= stride
    starts.append(0)
    return starts


def _candidates(frame: InputFrame, scored: Any, spec: TopKSpec, pool: int) -> pl.DataFrame:
    """The ``pool`` best-scored rows (ties: text), read through the engine's checked SQL."""
    from rlm_pipeline.expr.sqltext import ident

    view, best = frame.fresh("scored"), frame.fresh("candidates")
    frame.put(view, scored)
    frame.sql(
        f"SELECT * FROM {ident(view)} WHERE {ident(_SCORE)} IS NOT NULL "
        f"ORDER BY {ident(_SCORE)} DESC, {frame.text_sql(spec.column)} ASC LIMIT {pool}",
        best,
    )
    return frame.arrow(best)


def _ranked(cands: pl.DataFrame, spec: TopKSpec, order: list[str]) -> pl.DataFrame:
    """The first ``spec.k`` candidates in the re-ranked ``order`` with ``score`` and ``rank``."""
    position = {text: i for i, text in enumerate(order)}
    return (
        cands.with_columns(
            pl.col(spec.column).cast(pl.String).replace_strict(position, return_dtype=pl.Int64)
            .alias("__rp_pos")
        )
        .sort("__rp_pos", maintain_order=True)
        .head(spec.k)
        .with_columns(
            pl.col(_SCORE).cast(pl.Int64).alias("score"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank"),
        )
        .drop("__rp_pos", _SCORE, f"{_SCORE}_error")
    )


def run_top_k(
    data: Any,
    spec: TopKSpec,
    llm: LLM,
    *,
    engine: str | None = None,
    on_error: OnError = "raise",
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
) -> tuple[Any, TopKStats]:
    """Run ``spec`` over ``data``: the k rows (caller's kind of frame) and the stats."""
    check_llm(llm)
    if on_error not in ("raise", "drop"):
        msg = f"on_error must be 'raise' or 'drop', got {on_error!r}"
        raise InputError(msg)
    frame = read_input(data, engine)
    try:
        frame.require([spec.column])
        taken = [name for name in ("score", "rank") if name in frame.columns]
        if taken:
            msg = f"column {taken[0]!r} already exists in the input; top_k adds 'score' and 'rank'"
            raise InputError(msg)
        meter = meter if meter is not None else UsageMeter()
        before = meter.snapshot()
        scored, scoring = run_spec(frame, frame.frame, spec.score_spec(), llm, meter=meter,
                                   budget=budget)
        line = failure_summary("top_k", scoring, "score", cached=bool(llm.cache_path))
        if line is not None:
            if on_error == "raise":
                raise UnansweredRowsError(
                    line + "; or pass on_error='drop' to rank the scored rows only",
                    op="top_k",
                    failed=sum(scoring.errors.values()),
                    rows=scoring.rows,
                    errors=dict(scoring.errors),
                )
            logger.warning("%s (on_error='drop': ranked without them)", line)
        cands = _candidates(frame, scored, spec, spec.pool_factor * spec.k)
        texts = list(dict.fromkeys(cands.get_column(spec.column).cast(pl.String).to_list()))
        order, calls, failed = with_client(
            llm, meter, budget, lambda client: rerank(client, spec, texts)
        )
        if failed:
            logger.warning(
                "top_k: %d of %d re-rank calls gave no usable ranking; those windows keep the "
                "score order", failed, calls,
            )
        best = _ranked(cands, spec, order)
        stats = TopKStats(
            rows=scoring.rows,
            scoring=scoring,
            candidates=len(texts),
            rerank_calls=calls,
            rerank_failed=failed,
            usage=meter.snapshot() - before,
        )
        return frame.back(best), stats
    finally:
        frame.release()


def top_k(
    data: Any,
    column: str,
    criterion: str,
    k: int,
    llm: LLM,
    *,
    engine: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rank_size: int = DEFAULT_RANK_SIZE,
    on_error: OnError = "raise",
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
) -> Any:
    """The ``k`` rows whose ``column`` fits ``criterion`` best, with ``score`` and ``rank``.

    Scores every row in batches, then re-ranks the ``2k`` best side by side
    (see the module docstring for the method and its call count).

    Parameters
    ----------
    data
        Any table rlm_pipeline reads.
    column, criterion, k
        The text column, what "best" means (``"most urgent"``), how many rows.
    llm
        Endpoint, limits, retries, cache (a re-run with ``cache_path`` sends no call).
    engine
        ``"polars"`` or ``"spark"``; inferred from ``data`` when None.
    batch_size, rank_size
        Rows per scoring call, rows per re-rank call.
    on_error
        ``"raise"`` (default) when a row's score failed, or ``"drop"`` to rank
        the scored rows only (logged with the count).
    budget, meter
        Spending limits, and where usage is recorded.
    max_row_tokens, truncate
        Per-row input limit of the scoring pass.

    Returns
    -------
    The caller's kind of frame: ``k`` rows ordered by ``rank`` (1 = best).

    Examples
    --------
    >>> import polars as pl
    >>> blank = pl.DataFrame({"q": [None]}, schema={"q": pl.String})
    >>> top_k(blank, "q", "urgent", 3, LLM(base_url="http://127.0.0.1:9/v1")).height
    0
    """
    spec = TopKSpec(
        column=column,
        criterion=criterion,
        k=k,
        batch_size=batch_size,
        rank_size=rank_size,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, _ = run_top_k(
        data, spec, llm, engine=engine, on_error=on_error, meter=meter, budget=budget
    )
    return out
