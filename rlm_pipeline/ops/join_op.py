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
   limits, both engines).  The row text is ``LEFT: …`` / ``RIGHT: …``
   (:func:`~rlm_pipeline.ops.multi_wire.pair_text`).
3. **Keep** the pairs answered true.  Every candidate pair is accounted for:
   matched + not matched + failed + blank (a null/blank side, never sent) =
   candidates (:class:`JoinStats`).  A pair whose answer failed is never
   silently kept or dropped: ``on_error="raise"`` (default) raises
   :class:`~rlm_pipeline.errors.LLMError` naming the count; ``"keep"`` keeps
   it with the reason in ``join_error``; ``"drop"`` leaves it out and logs the
   count.

Output: the caller's kind of frame, one row per kept pair ordered by left then
right input order: the left columns, the right columns (a name the left side
has too gets ``_right``), and ``join_error`` (null for a match).

Examples
--------
>>> split_block("l.topic = r.topic AND length(l.q) > 3")
(['"l"."topic" = "r"."topic"'], ['LENGTH("l"."q") > 3'])
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from sqlglot import exp

from rlm_pipeline.errors import ExpressionError, InputError, LLMError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.multi_common import InputFrame, check_llm, read_input, run_spec
from rlm_pipeline.ops.multi_specs import PAIR_COLUMN, PairSpec
from rlm_pipeline.ops.multi_wire import PAIR_LEFT, PAIR_RIGHT
from rlm_pipeline.ops.spec import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ROW_TOKENS
from rlm_pipeline.ops.stats import OpStats, failure_summary

__all__ = ["DEFAULT_MAX_PAIRS", "JoinSpec", "JoinStats", "join", "run_join", "split_block"]

logger = logging.getLogger(__name__)

#: Most candidate pairs a join sends (with or without ``block_on``) unless raised.
DEFAULT_MAX_PAIRS = 100_000
_LID = "__rp_lid"
_RID = "__rp_rid"
_PAIR = PAIR_COLUMN
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
        Per-pair input limit (as for classify).
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


def _neutral_schema(frame: InputFrame) -> dict[str, str]:
    from rlm_pipeline.engines.types import neutral_polars_type, neutral_spark_type

    if frame.engine == "spark":
        return {f.name: neutral_spark_type(f.dataType) for f in frame.frame.schema.fields}
    return {name: neutral_polars_type(t) for name, t in frame.frame.collect_schema().items()}


def _block_query(spec: JoinSpec, left: InputFrame, right: InputFrame) -> Any:
    from rlm_pipeline import expr

    assert spec.block_on is not None
    on, rest = split_block(spec.block_on)
    sql = f'SELECT "l"."{_LID}" AS "{_LID}", "r"."{_RID}" AS "{_RID}" FROM l JOIN r ON '
    sql += " AND ".join(on)
    if rest:
        sql += " WHERE " + " AND ".join(f"({part})" for part in rest)
    views = {
        "l": {**_neutral_schema(left), _LID: "int64"},
        "r": {**_neutral_schema(right), _RID: "int64"},
    }
    return expr.compile_select(sql, views)


def _right_names(left_cols: list[str], right_cols: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name in right_cols:
        new = f"{name}_right" if name in left_cols else name
        if new in left_cols or new == "join_error":
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


def _polars_pairs(spec: JoinSpec, left: InputFrame, right: InputFrame) -> tuple[
    pl.DataFrame, pl.LazyFrame, pl.LazyFrame, int, int
]:
    lf = left.frame.with_row_index(_LID).with_columns(pl.col(_LID).cast(pl.Int64))
    rf = right.frame.with_row_index(_RID).with_columns(pl.col(_RID).cast(pl.Int64))
    n_left = int(lf.select(pl.len()).collect().item())
    n_right = int(rf.select(pl.len()).collect().item())
    if spec.block_on is None:
        if n_left * n_right > spec.max_pairs:
            raise _too_many(spec, n_left, n_right, n_left * n_right)
        ids = lf.select(_LID).join(rf.select(_RID), how="cross")
    else:
        from rlm_pipeline import expr

        ids = expr.to_polars_query(_block_query(spec, left, right), {"l": lf, "r": rf})
        pairs = int(ids.select(pl.len()).collect().item())
        if pairs > spec.max_pairs:
            raise _too_many(spec, n_left, n_right, pairs)
    text = pl.concat_str(
        [
            pl.lit(PAIR_LEFT),
            pl.col("__rp_l").cast(pl.String),
            pl.lit(PAIR_RIGHT),
            pl.col("__rp_r").cast(pl.String),
        ]
    )
    built: pl.DataFrame = (
        ids.join(lf.select(_LID, pl.col(spec.left_column).alias("__rp_l")), on=_LID)
        .join(rf.select(_RID, pl.col(spec.right_column).alias("__rp_r")), on=_RID)
        .select(_LID, _RID, text.alias(_PAIR))
        .sort(_LID, _RID)
        .collect()
    )
    return built, lf, rf, n_left, n_right


def _spark_pairs(spec: JoinSpec, left: InputFrame, right: InputFrame) -> tuple[
    Any, Any, Any, int, int
]:
    from pyspark.sql import functions as F  # noqa: N812

    lf = left.frame.withColumn(_LID, F.monotonically_increasing_id()).localCheckpoint()
    rf = right.frame.withColumn(_RID, F.monotonically_increasing_id()).localCheckpoint()
    n_left, n_right = lf.count(), rf.count()
    if spec.block_on is None:
        if n_left * n_right > spec.max_pairs:
            raise _too_many(spec, n_left, n_right, n_left * n_right)
        ids = lf.select(_LID).crossJoin(rf.select(_RID))
    else:
        from rlm_pipeline import expr

        query = _block_query(spec, left, right)
        session = lf.sparkSession
        tag = uuid.uuid4().hex[:12]
        names = {"l": f"rp_join_l_{tag}", "r": f"rp_join_r_{tag}"}
        lf.createOrReplaceTempView(names["l"])
        rf.createOrReplaceTempView(names["r"])
        try:
            ids = session.sql(expr.to_spark_sql(query, names)).localCheckpoint()
        finally:
            for name in names.values():
                session.catalog.dropTempView(name)
        pairs = ids.count()
        if pairs > spec.max_pairs:
            raise _too_many(spec, n_left, n_right, pairs)
    text = F.concat(
        F.lit(PAIR_LEFT),
        F.col("__rp_l").cast("string"),
        F.lit(PAIR_RIGHT),
        F.col("__rp_r").cast("string"),
    )
    built = (
        ids.join(lf.select(_LID, F.col(f"`{spec.left_column}`").alias("__rp_l")), on=_LID)
        .join(rf.select(_RID, F.col(f"`{spec.right_column}`").alias("__rp_r")), on=_RID)
        .select(_LID, _RID, text.alias(_PAIR))
    )
    return built, lf, rf, n_left, n_right


def _kept_polars(answered: Any, lf: pl.LazyFrame, rf: pl.LazyFrame, keep_failed: bool,
                 names: dict[str, str]) -> pl.DataFrame:
    frame = answered.lazy() if isinstance(answered, pl.DataFrame) else answered
    keep = pl.col(_MATCH).fill_null(False)
    if keep_failed:
        keep = keep | _failed_expr(pl.col(f"{_MATCH}_error"))
    out: pl.DataFrame = (
        frame.filter(keep)
        .select(_LID, _RID, pl.col(f"{_MATCH}_error").alias("join_error"))
        .join(lf, on=_LID)
        .join(rf.rename(names), on=_RID)
        .sort(_LID, _RID)
        .drop(_LID, _RID)
        .collect()
    )
    order = [c for c in out.columns if c != "join_error"] + ["join_error"]
    return out.select(order)


def _failed_expr(error: pl.Expr) -> pl.Expr:
    return error.is_not_null() & ~error.str.starts_with("empty_input")


def _kept_spark(answered: Any, lf: Any, rf: Any, keep_failed: bool,
                names: dict[str, str]) -> Any:
    from pyspark.sql import functions as F  # noqa: N812

    error = F.col(f"{_MATCH}_error")
    keep = F.coalesce(F.col(_MATCH), F.lit(False))
    if keep_failed:
        keep = keep | (error.isNotNull() & ~error.startswith("empty_input"))
    right = rf.select(*[F.col(f"`{old}`").alias(new) for old, new in names.items()], _RID)
    out = (
        answered.filter(keep)
        .select(_LID, _RID, error.alias("join_error"))
        .join(lf, on=_LID)
        .join(right, on=_RID)
        .orderBy(_LID, _RID)
        .drop(_LID, _RID)
    )
    order = [c for c in out.columns if c != "join_error"] + ["join_error"]
    return out.select(*[F.col(f"`{c}`") for c in order])


def _stats(n_left: int, n_right: int, scoring: OpStats, usage: Usage) -> JoinStats:
    failed = {k: n for k, n in scoring.errors.items() if k != "empty_input" and n}
    return JoinStats(
        left_rows=n_left,
        right_rows=n_right,
        pairs=scoring.rows,
        matched=scoring.values.get("true", 0),
        not_matched=scoring.values.get("false", 0),
        failed=failed,
        blank=scoring.errors.get("empty_input", 0),
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
    rhs = read_input(right, engine or lhs.engine)
    if lhs.engine != rhs.engine:
        msg = f"left is a {lhs.engine} frame and right a {rhs.engine} frame; give both on one engine"
        raise InputError(msg)
    lhs.require([spec.left_column], "left column")
    rhs.require([spec.right_column], "right column")
    if "join_error" in lhs.columns:
        msg = "column 'join_error' already exists in the left input; join adds it"
        raise InputError(msg)
    names = _right_names(lhs.columns, rhs.columns)
    build = _spark_pairs if lhs.engine == "spark" else _polars_pairs
    pairs, lf, rf, n_left, n_right = build(spec, lhs, rhs)
    meter = meter if meter is not None else UsageMeter()
    before = meter.snapshot()
    answered, scoring = run_spec(lhs, pairs, spec.pair_spec(), llm, meter=meter, budget=budget)
    stats = _stats(n_left, n_right, scoring, meter.snapshot() - before)
    line = failure_summary("join", scoring, "answer", cached=bool(llm.cache_path))
    if line is not None:
        line = line.replace(" rows have no answer", " candidate pairs have no answer")
        if on_error == "raise":
            raise LLMError(line + "; or pass on_error='keep' / 'drop'")
        logger.warning("%s (on_error=%r)", line, on_error)
    logger.info(
        "join: %s candidate pairs of %s (%.2f%%), %s matched",
        f"{stats.pairs:,}", f"{stats.cross_pairs:,}", 100 * stats.share, f"{stats.matched:,}",
    )
    if lhs.engine == "spark":
        return _kept_spark(answered, lf, rf, on_error == "keep", names), stats
    out = _kept_polars(answered, lf, rf, on_error == "keep", names)
    return lhs.back(out), stats


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
        Per-pair input limit.

    Returns
    -------
    The caller's kind of frame: left columns, right columns (``_right`` on a
    clash), ``join_error``; one row per kept pair.

    Examples
    --------
    >>> import polars as pl
    >>> llm = LLM(base_url="http://127.0.0.1:9/v1")
    >>> join(pl.DataFrame({"q": [None]}), pl.DataFrame({"q": [None]}), "q", "q", "same topic", llm).columns
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
