"""``join``: the pairs of a left and a right row for which a condition in words holds.

Method (``docs/operators/join.md``):

1. **Candidate pairs.**  Without ``block_on`` every pair of the two inputs is a
   candidate (a nested loop), allowed up to ``max_pairs`` (default
   :data:`DEFAULT_MAX_PAIRS`); above that the call is refused before any model
   call, with one line asking for ``block_on``.  With ``block_on`` — an SQL
   boolean expression over both sides, columns qualified ``l.`` (left) and
   ``r.`` (right), e.g. ``"l.product = r.product AND l.year >= r.year"`` —
   the candidates are the rows of ``SELECT … FROM l JOIN r ON <equalities>
   WHERE <the rest>``, parsed, checked against the expression allow list and
   compiled to Polars or Spark by :mod:`rlm_pipeline.expr` (never evaluated
   as code).  It needs at least one equality between the two sides (that is
   what makes blocking cheap); the candidate count is checked against
   ``max_pairs`` too, before any model call.
2. **Ask** one boolean per distinct pair text
   (:class:`~rlm_pipeline.ops.multi_specs.PairSpec` through ``Engine.map_frame``, as ``run_op``: batched, deduplicated, row-cached,
   limits, both engines).  The row text is ``<length of the left text>:<left><right>``
   (:func:`~rlm_pipeline.ops.multi_wire.pair_text`, built in SQL), and the
   pairs are ordered by it, so the pairs of one left text are consecutive:
   a call of ``batch_size`` pairs writes each left text once, above its
   numbered right texts (:func:`~rlm_pipeline.ops.multi_wire.pair_lines`);
   a left row with fewer candidates shares its call with the next ones.
   Answers are stored per pair (condition, left text, right text).
3. **Keep** the pairs answered true.  Every candidate pair is accounted for:
   matched + not matched + failed + blank (a null/blank side, never sent) =
   candidates (:class:`JoinStats`).  A pair whose answer failed is never
   silently kept or dropped: ``on_error="raise"`` (default) raises
   :class:`~rlm_pipeline.errors.UnansweredRowsError` naming the count; ``"keep"`` keeps
   it with the reason in ``join_error``; ``"drop"`` leaves it out and logs the
   count.

Output: the caller's kind of frame, one row per kept pair (in no set order):
the left columns, the right columns (a name the left side
has too gets ``_right``), and ``join_error`` (null for a match).

Examples
--------
>>> split_block("l.topic = r.topic AND length(l.q) > 3")
(['"l"."topic" = "r"."topic"'], ['LENGTH("l"."q") > 3'])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlglot import exp

from rlm_pipeline.errors import ExpressionError, InputError, UnansweredRowsError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.tokens import CHARS_PER_TOKEN
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.multi_common import InputFrame, check_llm, read_input, run_spec
from rlm_pipeline.ops.multi_specs import PAIR_COLUMN, PairSpec
from rlm_pipeline.ops.spec import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ROW_TOKENS, TRUNCATED_MARKER
from rlm_pipeline.ops.stats import EMPTY_INPUT, OpStats, failure_summary

__all__ = ["DEFAULT_MAX_PAIRS", "JoinSpec", "JoinStats", "join", "run_join", "split_block"]

logger = logging.getLogger(__name__)

#: Most candidate pairs a join sends (with or without ``block_on``) unless raised.
DEFAULT_MAX_PAIRS = 100_000
_LID = "__rp_lid"
_RID = "__rp_rid"
_PAIR = PAIR_COLUMN
#: A side holding only these (real characters, not escapes: SQL and regex dialects differ).
_BLANK_PATTERN = "^[ \t\n\r\f\v]*$"
_MATCH = "__rp_match"
OnError = Literal["raise", "keep", "drop"]


@dataclass(frozen=True)
class JoinSpec:
    """What to join on.

    Parameters
    ----------
    left_column, right_column
        The text columns compared.
    condition
        When a pair matches, in words (``"the FAQ answers the question"``).
    block_on
        SQL boolean expression over ``l.`` and ``r.`` columns narrowing the candidates.
    batch_size
        Pairs per call.
    max_pairs
        Most candidate pairs allowed (checked before any call).
    max_row_tokens, truncate
        Per-pair input limit (both texts); with ``truncate`` each side is cut to half of it.
    """

    left_column: str
    right_column: str
    condition: str
    block_on: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_pairs: int = DEFAULT_MAX_PAIRS
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        for name in ("left_column", "right_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                msg = f"{name} must be a non-empty string, got {value!r}"
                raise InputError(msg)
        if not isinstance(self.condition, str) or not self.condition.strip():
            msg = "condition must be a non-empty string"
            raise InputError(msg)
        if self.block_on is not None and (
            not isinstance(self.block_on, str) or not self.block_on.strip()
        ):
            msg = f"block_on must be an SQL condition string or None, got {self.block_on!r}"
            raise InputError(msg)
        if isinstance(self.max_pairs, bool) or not isinstance(self.max_pairs, int) or (
            self.max_pairs < 1
        ):
            msg = f"max_pairs must be an integer >= 1, got {self.max_pairs!r}"
            raise InputError(msg)
        self.pair_spec()

    def pair_spec(self) -> PairSpec:
        """The per-pair question (:class:`~rlm_pipeline.ops.multi_specs.PairSpec`)."""
        return PairSpec(
            condition=self.condition,
            batch_size=self.batch_size,
            output_column=_MATCH,
            max_row_tokens=self.max_row_tokens,
            truncate=self.truncate,
        )


@dataclass(frozen=True)
class JoinStats:
    """What one join did; ``matched + not_matched + sum(failed) + blank == pairs``.

    Attributes
    ----------
    left_rows, right_rows
        Input sizes; ``cross_pairs`` is their product.
    pairs
        Candidate pairs considered (after blocking).
    matched, not_matched
        Pairs answered true / false.
    failed
        Pairs without an answer, by reason kind.
    blank
        Pairs with a null or blank side (never sent).
    usage
        Model usage.
    """

    left_rows: int
    right_rows: int
    pairs: int
    matched: int = 0
    not_matched: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    blank: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def cross_pairs(self) -> int:
        """``left_rows × right_rows``."""
        return self.left_rows * self.right_rows

    @property
    def share(self) -> float:
        """Candidate pairs as a share of the cross product (0 for empty inputs)."""
        return self.pairs / self.cross_pairs if self.cross_pairs else 0.0


def _sides(node: exp.Expr) -> set[str]:
    return {col.table for col in node.find_all(exp.Column)}


def split_block(block_on: str) -> tuple[list[str], list[str]]:
    """``block_on`` split into equalities between the sides (``ON``) and the rest (``WHERE``).

    Raises
    ------
    ExpressionError
        Syntax errors, columns not qualified with ``l.`` / ``r.``, or no
        equality between the two sides.
    """
    from rlm_pipeline.expr.parse import parse_sql

    tree = parse_sql(block_on, "where")
    conjuncts = list(tree.flatten()) if isinstance(tree, exp.And) else [tree]
    on: list[str] = []
    rest: list[str] = []
    for part in conjuncts:
        plain = part.unnest() if isinstance(part, exp.Paren) else part
        for col in plain.find_all(exp.Column):
            if col.table not in ("l", "r"):
                raise ExpressionError(
                    f"column {col.sql()!r} in block_on must be qualified with l. (left) or r. (right)",
                    fragment=col.sql(),
                    hint="write e.g. l.product = r.product",
                )
            col.set("table", exp.to_identifier(col.table, quoted=True))
            col.set("this", exp.to_identifier(col.name, quoted=True))
        if isinstance(plain, exp.EQ) and {
            frozenset(_sides(plain.this)), frozenset(_sides(plain.expression))
        } == {frozenset({"l"}), frozenset({"r"})}:
            on.append(plain.sql())
        else:
            rest.append(plain.sql())
    if not on:
        raise ExpressionError(
            "block_on needs an equality between the two sides (l.x = r.y) to narrow the pairs",
            fragment=block_on[:200],
            hint="add e.g. l.product = r.product [AND other conditions]",
        )
    return on, rest


def _select_list(
    left_cols: list[str], names: dict[str, str], spec: JoinSpec, texts: tuple[str, str]
) -> str:
    """The pairs' columns: left ones, right ones (renamed on a clash), the pair text.

    The pair text is :func:`~rlm_pipeline.ops.multi_wire.pair_text` in SQL
    (``LENGTH`` counts characters on both engines); null when a side is null or
    blank (spaces, tabs, line breaks only: the same characters on both engines),
    so such a pair is never sent (``empty_input``).  With ``truncate`` each side
    is cut to half the row limit (:func:`_cut_side`), so the model always sees
    both sides (two texts that differ only past the cut become one text).
    """
    from rlm_pipeline.expr.sqltext import ident, sql_literal

    items = [f"l.{ident(c)} AS {ident(c)}" for c in left_cols]
    items += [f"r.{ident(old)} AS {ident(new)}" for old, new in names.items()]
    blank = sql_literal(_BLANK_PATTERN)
    empty = " OR ".join(f"regexp_like({t}, {blank})" for t in texts)
    left, right = (_cut_side(t, spec) for t in texts) if spec.truncate else texts
    text = f"CAST(LENGTH({left}) AS VARCHAR) || ':' || {left} || {right}"
    return ", ".join([*items, f"CASE WHEN {empty} THEN NULL ELSE {text} END AS {ident(_PAIR)}"])


def _cut_side(text_sql: str, spec: JoinSpec) -> str:
    """SQL cutting one side to half of ``max_row_tokens`` (ending with the truncation marker).

    Both halves and the length prefix fit the row limit, so the fan-out never
    cuts a pair text (a cut at the end could hide the right text and make
    pairs of one long left text the same text, asked once).
    """
    from rlm_pipeline.expr.sqltext import sql_literal

    limit = spec.max_row_tokens * CHARS_PER_TOKEN
    half = (limit - len(str(limit)) - 1) // 2
    keep = max(0, half - len(TRUNCATED_MARKER))
    return (
        f"CASE WHEN LENGTH({text_sql}) > {half} "
        f"THEN SUBSTRING({text_sql}, 1, {keep}) || {sql_literal(TRUNCATED_MARKER)} "
        f"ELSE {text_sql} END"
    )


def _right_names(left_cols: list[str], right_cols: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name in right_cols:
        new = f"{name}_right" if name in left_cols else name
        if new in left_cols or new == "join_error" or new.startswith("__rp_"):
            msg = f"right column {name!r} would be named {new!r}, which the output already has"
            raise InputError(msg)
        names[name] = new
    return names


def _too_many(spec: JoinSpec, n_left: int, n_right: int, pairs: int) -> InputError:
    if spec.block_on is None:
        return InputError(
            f"join of {n_left:,} x {n_right:,} rows is {pairs:,} candidate pairs, above "
            f"max_pairs={spec.max_pairs:,}: pass block_on (an SQL condition over l. and r. "
            "columns, e.g. \"l.product = r.product\") to narrow them, or raise max_pairs"
        )
    return InputError(
        f"block_on leaves {pairs:,} candidate pairs of {n_left * n_right:,}, above "
        f"max_pairs={spec.max_pairs:,}: narrow block_on or raise max_pairs"
    )


@dataclass(frozen=True)
class _Pairs:
    """The candidate pairs, as a view of the left input's engine."""

    view: str
    left_columns: list[str]
    names: dict[str, str]
    n_left: int
    n_right: int


def candidate_pairs(spec: JoinSpec, lhs: InputFrame, right: Any) -> _Pairs:
    """Register ``right`` next to the left input and build the candidate pairs (checked SQL).

    Without ``block_on`` a constant key on both sides makes the cross product an
    equi-join the checker takes; with it, its equalities are the ``ON`` and the
    rest the ``WHERE`` (:func:`split_block`).  Refused above ``max_pairs``.
    """
    from rlm_pipeline.expr.sqltext import ident

    right_view = lhs.fresh("right")
    lhs.put(right_view, lhs.eng.read(right))
    right_frame = InputFrame(lhs.eng, right_view)
    right_frame.require([spec.right_column], "right column")
    left_cols, right_cols = lhs.columns, right_frame.columns
    names = _right_names(left_cols, right_cols)
    n_left, n_right = int(lhs.eng.count(lhs.view)), int(lhs.eng.count(right_view))
    texts = (lhs.text_sql(spec.left_column, "l"), right_frame.text_sql(spec.right_column, "r"))
    select = _select_list(left_cols, names, spec, texts)
    pairs = lhs.fresh("pairs")
    if spec.block_on is None:
        if n_left * n_right > spec.max_pairs:
            raise _too_many(spec, n_left, n_right, n_left * n_right)
        one = ident("__rp_one")
        sides = {}
        for side, view in (("l", lhs.view), ("r", right_view)):
            sides[side] = lhs.fresh(side)
            lhs.sql(f"SELECT *, 1 AS {one} FROM {ident(view)}", sides[side])
        query = (f"SELECT {select} FROM {ident(sides['l'])} AS l JOIN {ident(sides['r'])} AS r "
                 f"ON l.{one} = r.{one}")
    else:
        on, rest = split_block(spec.block_on)
        query = (f"SELECT {select} FROM {ident(lhs.view)} AS l JOIN {ident(right_view)} AS r "
                 f"ON {' AND '.join(on)}")
        if rest:
            query += " WHERE " + " AND ".join(f"({part})" for part in rest)
    # the pairs of one left text consecutive: its text is written once per call (pair_lines)
    query += f" ORDER BY {ident(_PAIR)}"
    count = lhs.sql(query, pairs)
    if count > spec.max_pairs:
        raise _too_many(spec, n_left, n_right, count)
    return _Pairs(pairs, left_cols, names, n_left, n_right)


def _kept(lhs: InputFrame, answered: str, pairs: _Pairs, keep_failed: bool) -> str:
    """The view of the pairs kept: matches (and failed pairs when ``keep_failed``)."""
    from rlm_pipeline.expr.sqltext import ident

    error = ident(f"{_MATCH}_error")
    keep = f"{ident(_MATCH)} = TRUE"
    if keep_failed:
        keep = f"({keep} OR ({error} IS NOT NULL AND NOT {error} LIKE '{EMPTY_INPUT}%'))"
    columns = [*pairs.left_columns, *pairs.names.values()]
    select = ", ".join([*(ident(c) for c in columns), f"{error} AS {ident('join_error')}"])
    kept = lhs.fresh("kept")
    lhs.sql(f"SELECT {select} FROM {ident(answered)} WHERE {keep}", kept)
    return kept


def _stats(n_left: int, n_right: int, scoring: OpStats, usage: Usage) -> JoinStats:
    failed = {k: n for k, n in scoring.errors.items() if k != EMPTY_INPUT and n}
    return JoinStats(
        left_rows=n_left,
        right_rows=n_right,
        pairs=scoring.rows,
        matched=scoring.values.get("true", 0),
        not_matched=scoring.values.get("false", 0),
        failed=failed,
        blank=scoring.errors.get(EMPTY_INPUT, 0),
        usage=usage,
    )


def run_join(
    left: Any,
    right: Any,
    spec: JoinSpec,
    llm: LLM,
    *,
    engine: str | None = None,
    on_error: OnError = "raise",
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
) -> tuple[Any, JoinStats]:
    """Run ``spec`` over ``left`` and ``right``: the kept pairs and the stats."""
    check_llm(llm)
    if on_error not in ("raise", "keep", "drop"):
        msg = f"on_error must be 'raise', 'keep' or 'drop', got {on_error!r}"
        raise InputError(msg)
    lhs = read_input(left, engine)
    try:
        lhs.require([spec.left_column], "left column")
        if "join_error" in lhs.columns:
            msg = "column 'join_error' already exists in the left input; join adds it"
            raise InputError(msg)
        pairs = candidate_pairs(spec, lhs, right)
        n_left, n_right = pairs.n_left, pairs.n_right
        meter = meter if meter is not None else UsageMeter()
        before = meter.snapshot()
        answered, scoring = run_spec(
            lhs, lhs.eng.frame(pairs.view), spec.pair_spec(), llm, meter=meter, budget=budget
        )
        stats = _stats(n_left, n_right, scoring, meter.snapshot() - before)
        line = failure_summary("join", scoring, "answer", cached=bool(llm.cache_path))
        if line is not None:
            line = line.replace(" rows have no answer", " candidate pairs have no answer")
            if on_error == "raise":
                raise UnansweredRowsError(
                    line + "; or pass on_error='keep' / 'drop'",
                    op="join",
                    failed=sum(scoring.errors.values()),
                    rows=scoring.rows,
                    errors=dict(scoring.errors),
                )
            logger.warning("%s (on_error=%r)", line, on_error)
        logger.info(
            "join: %s candidate pairs of %s (%.2f%%), %s matched",
            f"{stats.pairs:,}", f"{stats.cross_pairs:,}", 100 * stats.share, f"{stats.matched:,}",
        )
        answered_view = lhs.fresh("answered")
        lhs.put(answered_view, answered)
        return lhs.back(_kept(lhs, answered_view, pairs, on_error == "keep")), stats
    finally:
        lhs.release()


def join(
    left: Any,
    right: Any,
    left_column: str,
    right_column: str,
    condition: str,
    llm: LLM,
    block_on: str | None = None,
    *,
    engine: str | None = None,
    on_error: OnError = "raise",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
    max_row_tokens: int = DEFAULT_MAX_ROW_TOKENS,
    truncate: bool = False,
) -> Any:
    """Pairs of a left and a right row for which ``condition`` holds (asked of the model).

    Parameters
    ----------
    left, right
        Any tables rlm_pipeline reads (both on one engine).
    left_column, right_column
        The text columns compared.
    condition
        When a pair matches, in words.
    llm
        Endpoint, limits, retries, cache (a re-run with ``cache_path`` sends no call).
    block_on
        SQL boolean expression over ``l.`` / ``r.`` columns with at least one
        equality between the sides (``"l.product = r.product"``): only those
        pairs are asked.  Without it the cross product is asked, up to ``max_pairs``.
    engine
        ``"polars"`` or ``"spark"``; inferred from ``left`` when None.
    on_error
        A pair whose answer failed: ``"raise"`` (default), ``"keep"`` (with
        ``join_error``) or ``"drop"`` (logged).
    batch_size, max_pairs
        Pairs per call; most candidate pairs allowed.
    budget, meter
        Spending limits, and where usage is recorded.
    max_row_tokens, truncate
        Per-pair input limit (both texts): a longer pair fails with ``input_too_long``,
        or with ``truncate=True`` each side is cut to half of it.

    Returns
    -------
    The caller's kind of frame: left columns, right columns (``_right`` on a
    clash), ``join_error``; one row per kept pair.

    Examples
    --------
    >>> import polars as pl
    >>> llm = LLM(base_url="http://127.0.0.1:9/v1")
    >>> blank = pl.DataFrame({"q": [None]}, schema={"q": pl.String})
    >>> join(blank, blank, "q", "q", "same topic", llm).columns
    ['q', 'q_right', 'join_error']
    """
    spec = JoinSpec(
        left_column=left_column,
        right_column=right_column,
        condition=condition,
        block_on=block_on,
        batch_size=batch_size,
        max_pairs=max_pairs,
        max_row_tokens=max_row_tokens,
        truncate=truncate,
    )
    out, _ = run_join(
        left, right, spec, llm, engine=engine, on_error=on_error, meter=meter, budget=budget
    )
    return out
