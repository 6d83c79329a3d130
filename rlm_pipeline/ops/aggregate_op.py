"""``aggregate``: one summary per group, as a hierarchical fold under a prompt budget.

The recursive decomposition of the RLM paper applied to a reduce: no prompt
ever holds more than ``max_prompt_tokens`` estimated tokens, however big the
group.

1. **Group and dedup in the engine.**  Polars ``group_by`` / Spark ``groupBy``
   over ``by`` and the text give one row per distinct text of a group with its
   count ``n``; only that table reaches the driver.  Texts are sorted inside a
   group, so both engines and every re-run build the same prompts.
2. **Leaves.**  A group's texts are packed greedily into leaf calls
   (``"text" ×n`` lines) while the whole prompt — system message,
   instruction, rows and the reply schema a server may get in the prompt —
   stays within the budget.  Every non-blank row is in exactly one leaf (its
   text's ``n`` counts it); a leaf's ``rows`` is the sum of its ``n``.
3. **Folds.**  The leaves' summaries (each at most ``summary_tokens``, the
   reply allowance sent with the call) are packed the same way into fold
   calls (``[rows] "summary"`` lines), level by level, until one
   summary is left.  The budget must hold at least two summaries, so every
   level shrinks: ``levels ≈ 1 + log_f(leaves)`` with fan-in ``f``.
4. **Calls** go through :meth:`LLMClient.json <rlm_pipeline.llm.client.LLMClient.json>`:
   retries, circuit breaker, rate limits, budget and the response cache are
   the client's (a re-run with ``cache_path`` sends no call).  A reply without
   a usable summary is asked once more.

**Failures are never a silent partial.**  A leaf or fold call that still
fails leaves its rows out of the summary; the group's ``summary_error`` says
so (``"api_error: 1,600 of 100,000 rows not in the summary (2 of 700 calls
failed: ...)"``), ``rows_summarised`` counts the rows that did reach it, and
the summary of the rest is kept.  When nothing reaches the top, ``summary``
is null.  Blank texts are counted in ``rows`` but have nothing to summarise
(a group of only blanks: ``empty_input``).  Texts longer than the budget
allows for one row get ``input_too_long`` (counted the same way), or are cut
to fit with ``truncate=True``.

Output: one row per group, ordered by the ``by`` columns (nulls first):
``by...``, ``summary`` (string), ``rows`` (int64: input rows of the group),
``rows_summarised`` (int64), ``summary_error`` (string or null).

Examples
--------
>>> spec = AggregateSpec("question", "main complaints", by=("user_id",))
>>> spec.by, spec.max_prompt_tokens, spec.summary_tokens
(('user_id',), 4000, 256)
>>> pack_lines(["a" * 40] * 5, overhead_chars=0, budget_chars=100)
[[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMEndpointError,
    LLMError,
    LLMResponseParseError,
)
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.llm.structured import STRUCTURED_PROMPT_PREFIX
from rlm_pipeline.llm.tokens import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    estimate_message_tokens,
    estimate_tokens,
)
from rlm_pipeline.llm.usage import Usage, UsageMeter
from rlm_pipeline.ops.multi_common import InputFrame, check_llm, read_input, with_client
from rlm_pipeline.ops.multi_wire import (
    MULTI_PROMPT_VERSION,
    SUMMARY_SCHEMA,
    check_summary,
    fold_messages,
    fold_row,
    leaf_messages,
    leaf_row,
)
from rlm_pipeline.ops.spec import TRUNCATED_MARKER
from rlm_pipeline.ops.stats import EMPTY_INPUT

__all__ = [
    "AGGREGATE_COLUMNS",
    "DEFAULT_MAX_PROMPT_TOKENS",
    "DEFAULT_SUMMARY_TOKENS",
    "AggregateSpec",
    "AggregateStats",
    "FoldNode",
    "GroupFold",
    "aggregate",
    "fold_texts",
    "pack_lines",
    "run_aggregate",
]

logger = logging.getLogger(__name__)

#: Largest prompt of any aggregate call, in estimated tokens (4 characters each).
DEFAULT_MAX_PROMPT_TOKENS = 4_000
#: Reply allowance of each summary (sent as ``max_tokens``).
DEFAULT_SUMMARY_TOKENS = 256
#: Output columns besides the ``by`` columns.
AGGREGATE_COLUMNS = ("summary", "rows", "rows_summarised", "summary_error")
#: Calls that must all come back unusable, none usable, to stop a run (as classify's breaker).
REPLY_BREAKER_CALLS = 8
_COUNT = "__rp_n"
_TEXT = "__rp_text"


@dataclass(frozen=True)
class AggregateSpec:
    """What to summarise and how big a prompt may get.

    Parameters
    ----------
    column
        The text column.
    instruction
        What the summary should say (``"main complaints"``).
    by
        Group columns (none: one summary of the whole table).
    max_prompt_tokens
        Largest prompt of any call, estimated tokens.
    summary_tokens
        Reply allowance of each summary; the budget must hold two of them.
    truncate
        Cut a text too long for one prompt instead of leaving it out
        (``input_too_long``).
    """

    column: str
    instruction: str
    by: tuple[str, ...] = ()
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS
    summary_tokens: int = DEFAULT_SUMMARY_TOKENS
    truncate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            msg = f"column must be a non-empty string, got {self.column!r}"
            raise InputError(msg)
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            msg = "instruction must be a non-empty string"
            raise InputError(msg)
        by = (self.by,) if isinstance(self.by, str) else tuple(self.by or ())
        if any(not isinstance(name, str) or not name for name in by) or len(set(by)) != len(by):
            msg = f"by must be a list of distinct column names, got {self.by!r}"
            raise InputError(msg)
        if self.column in by:
            msg = f"column {self.column!r} cannot also be a group column"
            raise InputError(msg)
        clash = [name for name in by if name in AGGREGATE_COLUMNS]
        if clash:
            msg = f"group column {clash[0]!r} clashes with an output column {list(AGGREGATE_COLUMNS)}"
            raise InputError(msg)
        object.__setattr__(self, "by", by)
        for name in ("max_prompt_tokens", "summary_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be an integer >= 1, got {value!r}"
                raise InputError(msg)
        if not isinstance(self.truncate, bool):
            msg = f"truncate must be True or False, got {self.truncate!r}"
            raise InputError(msg)
        need = _fold_overhead_tokens(self) + 2 * _summary_line_tokens(self)
        if self.max_prompt_tokens < need:
            msg = (
                f"max_prompt_tokens={self.max_prompt_tokens:,} cannot hold two summaries of "
                f"{self.summary_tokens} tokens (needs >= {need:,}); raise it or lower summary_tokens"
            )
            raise InputError(msg)


def _schema_tokens() -> int:
    """Tokens a server may add when the schema goes in the prompt (json_object / text modes)."""
    return estimate_tokens(STRUCTURED_PROMPT_PREFIX + json.dumps(SUMMARY_SCHEMA)) + 1


def _fold_overhead_tokens(spec: AggregateSpec) -> int:
    return estimate_message_tokens(fold_messages(spec.instruction, [], spec.summary_tokens)) + (
        _schema_tokens()
    )


def _summary_line_tokens(spec: AggregateSpec) -> int:
    """Largest fold line: a summary at its longest accepted length, plus the JSON around it."""
    return 2 * spec.summary_tokens + 16


@dataclass(frozen=True)
class FoldNode:
    """One call of a group's fold tree.

    Attributes
    ----------
    level
        0 for a leaf (rows), 1.. for folds (summaries).
    rows
        Input rows this call covers (a leaf: the sum of its texts' ``n``).
    items
        Lines in the prompt (a leaf's distinct texts, a fold's summaries).
    prompt_tokens
        The prompt's estimated tokens (the budget's measure).
    children
        Indices (in :attr:`GroupFold.nodes`) of the calls a fold merges.
    error
        None, or why this call gave no summary.
    """

    level: int
    rows: int
    items: int
    prompt_tokens: int
    children: tuple[int, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class GroupFold:
    """The fold of one group: its summary, row counts and the tree of calls."""

    summary: str | None
    error: str | None
    rows: int
    rows_summarised: int
    nodes: tuple[FoldNode, ...] = ()

    @property
    def leaves(self) -> list[FoldNode]:
        """The leaf calls (level 0)."""
        return [node for node in self.nodes if node.level == 0]


@dataclass(frozen=True)
class AggregateStats:
    """What one aggregate run did.

    Attributes
    ----------
    rows
        Input rows.
    groups
        One :class:`GroupFold` per output row, in output order.
    usage
        Model usage of the run.
    """

    rows: int
    groups: tuple[GroupFold, ...] = field(default_factory=tuple)
    usage: Usage = field(default_factory=Usage)

    @property
    def calls(self) -> int:
        """Leaf and fold calls planned (sent or served from the cache)."""
        return sum(len(group.nodes) for group in self.groups)

    @property
    def max_prompt_tokens(self) -> int:
        """Largest estimated prompt of any call."""
        return max((n.prompt_tokens for g in self.groups for n in g.nodes), default=0)


def pack_lines(lines: Sequence[str], *, overhead_chars: int, budget_chars: int) -> list[list[int]]:
    """Greedy packing of ``lines`` (joined by newlines) under ``budget_chars`` characters.

    Returns the indices of each pack, in order; a line that does not fit even
    alone gets a pack of its own (the caller checks sizes beforehand).
    """
    packs: list[list[int]] = []
    current: list[int] = []
    used = overhead_chars
    for i, line in enumerate(lines):
        size = len(line) + 1
        if current and used + size > budget_chars:
            packs.append(current)
            current, used = [], overhead_chars
        current.append(i)
        used += size
    if current:
        packs.append(current)
    return packs


class _Breaker:
    """Stops a run whose first calls all came back without a usable summary."""

    def __init__(self) -> None:
        self.ok = False
        self.bad = 0

    def record(self, error: str | None, config: LLM) -> None:
        if self.ok:
            return
        if error is None:
            self.ok = True
            return
        if not error.startswith("parse_error"):
            return
        self.bad += 1
        if self.bad >= REPLY_BREAKER_CALLS:
            endpoint = config.resolved_base_url() or "the default endpoint"
            msg = (
                f"no usable reply in the first {self.bad} calls to {endpoint} "
                f"(model {config.model}): replies have no summary — does the server "
                "support response_format / can the model follow the format?"
            )
            raise LLMResponseParseError(msg, raw="")


class _Folder:
    """Runs the fold of each group through one client."""

    def __init__(self, client: Any, spec: AggregateSpec, tally: UsageMeter | None = None) -> None:
        self.client = client
        self.spec = spec
        self.breaker = _Breaker()
        self.budget_chars = spec.max_prompt_tokens * CHARS_PER_TOKEN
        #: This fold's own calls (the client's meter may be shared with other work).
        self.tally = tally if tally is not None else UsageMeter()

    def _sizes(self, messages: list[dict[str, Any]]) -> tuple[int, int]:
        """(overhead characters of the user message's fixed part, other fixed tokens)."""
        system, user = messages[0]["content"], messages[1]["content"]
        fixed = 2 * MESSAGE_OVERHEAD_TOKENS + estimate_tokens(system) + _schema_tokens() + 1
        return len(user), fixed

    async def summarise(self, messages: list[dict[str, Any]]) -> tuple[str | None, str | None]:
        """One summary call, asked once more when the reply has no usable summary."""
        reason = "parse_error: no usable summary in the reply"
        limit = self.spec.summary_tokens
        for _ in range(2):
            try:
                obj, reply = await self.client.json(
                    messages,
                    SUMMARY_SCHEMA,
                    name="aggregate_summary",
                    max_tokens=2 * limit,
                    prompt_version=MULTI_PROMPT_VERSION,
                    accept=lambda o: check_summary(o, limit) is not None,
                )
            except BudgetExceededError as exc:
                return None, f"budget_exceeded: {exc}"
            except LLMResponseParseError as exc:
                sent = exc.reply  # it was sent and paid for: its tokens count
                self.tally.record(input_tokens=sent.input_tokens if sent else 0,
                                  output_tokens=sent.output_tokens if sent else 0, cost_usd=0.0)
                self.breaker.record(reason, self.client.config)
                continue
            except LLMEndpointError:
                self.tally.record_failure()
                raise
            except LLMError as exc:
                self.tally.record_failure()
                return None, f"api_error: {exc}"
            self.tally.record(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                              cost_usd=0.0, cached=reply.cached)
            summary = check_summary(obj, limit)
            if summary is not None:
                self.breaker.record(None, self.client.config)
                return summary, None
            self.breaker.record(reason, self.client.config)
        return None, reason

    def _budget_line_chars(self, head_chars: int, fixed_tokens: int) -> int:
        return (self.spec.max_prompt_tokens - fixed_tokens) * CHARS_PER_TOKEN - head_chars

    def leaf_lines(self, texts: Sequence[str], counts: Sequence[int]) -> tuple[
        list[str], list[int], dict[str, int]
    ]:
        """Row lines that fit a prompt, their counts, and rows left out by reason."""
        empty = leaf_messages(self.spec.instruction, [], self.spec.summary_tokens)
        head, fixed = self._sizes(empty)
        room = self._budget_line_chars(head, fixed) - 1
        lines: list[str] = []
        kept: list[int] = []
        left_out: dict[str, int] = {}
        for text, n in zip(texts, counts, strict=True):
            line = leaf_row(text, n)
            if len(line) > room:
                if not self.spec.truncate:
                    left_out["input_too_long"] = left_out.get("input_too_long", 0) + n
                    continue
                line = _cut_line(text, n, room)
            lines.append(line)
            kept.append(n)
        return lines, kept, left_out

    async def fold_group(self, texts: Sequence[str], counts: Sequence[int], blank: int) -> GroupFold:
        """Fold one group's distinct ``texts`` (with row ``counts``); ``blank`` rows aside."""
        total = sum(counts) + blank
        if not texts:
            return GroupFold(None, EMPTY_INPUT, total, 0)
        lines, kept, left_out = self.leaf_lines(texts, counts)
        nodes: list[FoldNode] = []
        failed: dict[str, int] = dict(left_out)
        reasons: list[str] = []
        # level 0: leaves
        parts = await self._level(
            level=0,
            items=[(line, n, -1) for line, n in zip(lines, kept, strict=True)],
            nodes=nodes,
            failed=failed,
            reasons=reasons,
        )
        level = 1
        while len(parts) > 1:
            items = [(summary, rows, index) for summary, rows, index in parts]
            parts = await self._level(level, items, nodes, failed, reasons)
            level += 1
        summary, summarised = (parts[0][0], parts[0][1]) if parts else (None, 0)
        error = _group_error(failed, reasons, total, summarised, blank, len(nodes))
        return GroupFold(summary, error, total, summarised, tuple(nodes))

    def plan(self, level: int, lines: list[str]) -> tuple[list[list[int]], list[list[dict[str, Any]]]]:
        """The calls of one level: ``lines`` packed under the budget, and each call's messages."""
        spec = self.spec
        build = leaf_messages if level == 0 else fold_messages
        head, fixed = self._sizes(build(spec.instruction, [], spec.summary_tokens))
        budget_chars = (spec.max_prompt_tokens - fixed) * CHARS_PER_TOKEN
        packs = pack_lines(lines, overhead_chars=head, budget_chars=budget_chars)
        calls = [
            build(spec.instruction, [lines[i] for i in pack], spec.summary_tokens) for pack in packs
        ]
        return packs, calls

    async def _level(
        self,
        level: int,
        items: list[tuple[str, int, int]],
        nodes: list[FoldNode],
        failed: dict[str, int],
        reasons: list[str],
    ) -> list[tuple[str, int, int]]:
        """One level of the tree: pack ``items`` into calls, run them; the parts that came back.

        ``items`` are (row line, n, -1) at level 0 and (summary, rows, node index) above.
        """
        if level == 0:
            lines = [line for line, _, _ in items]
        else:
            lines = [fold_row(summary, rows) for summary, rows, _ in items]
        packs, calls = self.plan(level, lines)
        if level > 0 and len(packs) == len(items) > 1:  # cannot happen with a valid spec
            msg = "aggregate fold made no progress (summaries too long for the prompt budget)"
            raise InputError(msg)
        results = await asyncio.gather(*(self.summarise(messages) for messages in calls))
        parts: list[tuple[str, int, int]] = []
        for pack, messages, (summary, error) in zip(packs, calls, results, strict=True):
            rows = sum(items[i][1] for i in pack)
            children = tuple(items[i][2] for i in pack) if level > 0 else ()
            tokens = estimate_message_tokens(messages) + _schema_tokens()
            nodes.append(FoldNode(level, rows, len(pack), tokens, children, error))
            if summary is None:
                kind = (error or "api_error").split(":", 1)[0]
                failed[kind] = failed.get(kind, 0) + rows
                reasons.append(error or kind)
            else:
                parts.append((summary, rows, len(nodes) - 1))
        return parts


def _cut_line(text: str, n: int, room: int) -> str:
    keep = max(0, room - len(leaf_row("", n)) - len(TRUNCATED_MARKER) - 8)
    while True:
        line = leaf_row(text[:keep] + TRUNCATED_MARKER, n)
        if len(line) <= room or keep == 0:
            return line
        keep = max(0, keep - max(1, (len(line) - room)))


def _group_error(
    failed: dict[str, int], reasons: list[str], total: int, summarised: int, blank: int,
    calls: int,
) -> str | None:
    """The group's ``summary_error``: what the summary is missing, or None."""
    missing = total - blank - summarised
    if missing <= 0:
        return None
    kind = max(failed, key=lambda k: failed[k]) if failed else "api_error"
    parts = [f"{kind}: {missing:,} of {total - blank:,} rows not in the summary"]
    if reasons:
        parts.append(f"({len(reasons)} of {calls} calls failed: {reasons[0][:160]})")
    elif "input_too_long" in failed:
        parts.append("(rows longer than the prompt budget; pass truncate=True to cut them)")
    return " ".join(parts)


async def fold_texts(
    texts: Sequence[str | None],
    client: Any,
    spec: AggregateSpec,
) -> GroupFold:
    """Fold one group given as raw texts (one per row); the async core of :func:`aggregate`.

    Examples
    --------
    >>> import asyncio
    >>> from rlm_pipeline.llm.client import LLMClient
    >>> async def main():
    ...     async with LLMClient(LLM(model="m", base_url="http://127.0.0.1:9/v1")) as client:
    ...         return await fold_texts([None, " "], client, AggregateSpec("t", "themes"))
    >>> asyncio.run(main()).error
    'empty_input'
    """
    counts: dict[str, int] = {}
    blank = 0
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            blank += 1
        else:
            counts[text] = counts.get(text, 0) + 1
    ordered = sorted(counts)
    return await _Folder(client, spec).fold_group(ordered, [counts[t] for t in ordered], blank)


def _grouped(frame: InputFrame, spec: AggregateSpec) -> pl.DataFrame:
    """One row per (group, distinct text) with its count, computed by the engine (checked SQL)."""
    from rlm_pipeline.expr.sqltext import ident

    keys = [ident(name) for name in spec.by]
    text = frame.text_sql(spec.column)
    query = (
        f"SELECT {''.join(k + ', ' for k in keys)}{text} AS {ident(_TEXT)}, "
        f"count(*) AS {ident(_COUNT)} FROM {ident(frame.view)} "
        f"GROUP BY {''.join(k + ', ' for k in keys)}{text}"
    )
    name = frame.fresh("groups")
    frame.sql(query, name)
    return frame.arrow(name)


def _count_groups(frame: InputFrame, spec: AggregateSpec, cap: int) -> int:
    """Groups of ``spec.by`` in the input, counting no further than ``cap + 1`` (checked SQL).

    Only the count reaches the driver: callers refuse too many groups before
    :func:`_grouped` reads every (group, text) pair.
    """
    from rlm_pipeline.expr.sqltext import ident

    if not spec.by:
        return 1
    keys = ", ".join(ident(name) for name in spec.by)
    query = f"SELECT {keys} FROM {ident(frame.view)} GROUP BY {keys} LIMIT {cap + 1}"
    return frame.sql(query, frame.fresh("keys"))


def _groups(table: pl.DataFrame, spec: AggregateSpec) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    if not spec.by:
        return [({}, table)]
    ordered = table.sort(list(spec.by), nulls_last=False, maintain_order=True)
    parts = ordered.partition_by(list(spec.by), maintain_order=True, as_dict=True)
    return [(dict(zip(spec.by, key, strict=True)), part) for key, part in parts.items()]


async def _fold_all(
    client: Any,
    spec: AggregateSpec,
    groups: list[tuple[dict[str, Any], pl.DataFrame]],
    tally: UsageMeter | None = None,
) -> list[GroupFold]:
    """Fold every group (a few at a time); ``tally`` counts these calls only (no cost)."""
    folder = _Folder(client, spec, tally)
    out: list[GroupFold | None] = [None] * len(groups)
    todo = iter(range(len(groups)))

    async def worker() -> None:
        for i in todo:
            part = groups[i][1]
            texts = part.get_column(_TEXT).to_list()
            counts = part.get_column(_COUNT).to_list()
            kept = [(t, n) for t, n in zip(texts, counts, strict=True) if t is not None and t.strip()]
            blank = sum(counts) - sum(n for _, n in kept)
            kept.sort()
            out[i] = await folder.fold_group([t for t, _ in kept], [n for _, n in kept], blank)

    size = max(1, min(len(groups), 2 * client.config.max_concurrency))
    tasks = [asyncio.ensure_future(worker()) for _ in range(size)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return [fold for fold in out if fold is not None]


def _output(
    groups: list[tuple[dict[str, Any], pl.DataFrame]], folds: list[GroupFold],
    table: pl.DataFrame, spec: AggregateSpec,
) -> pl.DataFrame:
    columns: dict[str, pl.Series] = {}
    for name in spec.by:
        dtype = table.schema[name]
        columns[name] = pl.Series(name, [key[name] for key, _ in groups], dtype=dtype)
    columns["summary"] = pl.Series("summary", [f.summary for f in folds], dtype=pl.String)
    columns["rows"] = pl.Series("rows", [f.rows for f in folds], dtype=pl.Int64)
    columns["rows_summarised"] = pl.Series(
        "rows_summarised", [f.rows_summarised for f in folds], dtype=pl.Int64
    )
    columns["summary_error"] = pl.Series("summary_error", [f.error for f in folds], dtype=pl.String)
    return pl.DataFrame(columns)


def run_aggregate(
    data: Any,
    spec: AggregateSpec,
    llm: LLM,
    *,
    engine: str | None = None,
    meter: UsageMeter | None = None,
    budget: Budget | None = None,
) -> tuple[Any, AggregateStats]:
    """Run ``spec`` over ``data``: the output frame (caller's kind) and the stats with every tree."""
    check_llm(llm)
    frame = read_input(data, engine)
    try:
        frame.require([spec.column, *spec.by])
        table = _grouped(frame, spec)
        groups = _groups(table, spec)
        if not groups:  # an empty input with by=(): one group of no rows
            groups = [({}, table)] if not spec.by else []
        meter = meter if meter is not None else UsageMeter()
        before = meter.snapshot()
        folds = with_client(llm, meter, budget, lambda client: _fold_all(client, spec, groups))
        stats = AggregateStats(
            rows=int(table.get_column(_COUNT).sum() or 0),
            groups=tuple(folds),
            usage=meter.snapshot() - before,
        )
        bad = [f for f in folds if f.error is not None and f.error != EMPTY_INPUT]
        if bad:
            missing = sum(f.rows - f.rows_summarised for f in bad)
            logger.warning(
                "aggregate: %d of %d groups have rows missing from their summary (%s rows); "
                "see summary_error — re-run to ask again (set LLM(cache_path=...) so a re-run "
                "re-asks only the failed calls)",
                len(bad), len(folds), f"{missing:,}",
            )
        return frame.back(_output(groups, folds, table, spec)), stats
    finally:
        frame.release()


def aggregate(
    data: Any,
    column: str,
    instruction: str,
    llm: LLM,
    by: str | Sequence[str] | None = None,
    *,
    engine: str | None = None,
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
    summary_tokens: int = DEFAULT_SUMMARY_TOKENS,
    truncate: bool = False,
    budget: Budget | None = None,
    meter: UsageMeter | None = None,
) -> Any:
    """One summary per group of ``by`` (or of the whole table), as a hierarchical fold.

    Parameters
    ----------
    data
        Any table rlm_pipeline reads (Polars, Spark, Parquet, CSV, JSONL, Arrow, pandas).
    column
        The text column.
    instruction
        What the summary should say, e.g. ``"main complaints"``.
    llm
        Endpoint, limits, retries and cache (a re-run with ``cache_path`` sends no call).
    by
        Group column(s); None summarises the whole table in one row.
    engine
        ``"polars"`` or ``"spark"``; inferred from ``data`` when None.
    max_prompt_tokens
        No prompt is larger than this (estimated tokens), however big a group.
    summary_tokens
        Reply allowance of each partial and final summary.
    truncate
        Cut a text too long for one prompt (default: leave it out, ``input_too_long``).
    budget, meter
        Spending limits for the call, and where usage is recorded.

    Returns
    -------
    The caller's kind of frame, one row per group: ``by...``, ``summary``,
    ``rows``, ``rows_summarised``, ``summary_error`` (see the module docstring).

    Examples
    --------
    >>> import polars as pl
    >>> blank = pl.DataFrame({"q": [None, " "]}, schema={"q": pl.String})
    >>> out = aggregate(blank, "q", "themes", LLM(base_url="http://127.0.0.1:9/v1"))
    >>> out.row(0)
    (None, 2, 0, 'empty_input')
    """
    spec = AggregateSpec(
        column=column,
        instruction=instruction,
        by=() if by is None else ((by,) if isinstance(by, str) else tuple(by)),
        max_prompt_tokens=max_prompt_tokens,
        summary_tokens=summary_tokens,
        truncate=truncate,
    )
    out, _ = run_aggregate(data, spec, llm, engine=engine, meter=meter, budget=budget)
    return out
