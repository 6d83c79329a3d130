"""The root model's ``aggregate`` tool: one summary per group of a view, as a hierarchical fold.

``aggregate`` runs :mod:`rlm_pipeline.ops.aggregate_op` over a view with the
run's own sub-model client (so its calls share the run's concurrency, rate
limits and budget): the engine groups and deduplicates the texts, leaves and
folds are asked under the prompt budget, and the result becomes a new view
(``by...``, ``summary``, ``rows``, ``rows_summarised``, ``summary_error``).
The tool result lists the first groups' summaries (bounded) and the groups
whose summary misses rows, with the reason.

This module imports no other tool module (``tools`` imports it).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from rlm_pipeline.errors import InputError, ToolError
from rlm_pipeline.rlm.render import bound, cut
from rlm_pipeline.rlm.scope import Scope
from rlm_pipeline.rlm.views import (
    ToolOutcome,
    check_columns,
    check_view,
    check_view_name,
    on_engine,
)

__all__ = ["AGGREGATE_TOOL", "MAX_TOOL_GROUPS", "aggregate_tool"]

#: Most groups one ``aggregate`` call of the root may summarise (one fold each).
MAX_TOOL_GROUPS = 64
#: Largest prompt of the tool's calls (the sub-model's context is the limit that matters).
TOOL_PROMPT_TOKENS = 4_000
#: Reply allowance of each summary the tool asks for.
TOOL_SUMMARY_TOKENS = 200

#: The tool's schema with its real limits (``tools.TOOL_SPECS`` holds it).
AGGREGATE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "aggregate",
        "description": (
            "Sub-models summarise `column` per group of `by` (or the whole view) following "
            "`instruction`, however many rows (hierarchical fold); new view with `summary`, "
            f"`rows`, `rows_summarised`, `summary_error`. At most {MAX_TOOL_GROUPS} groups."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "view": {"type": "string", "description": "name of an existing view, e.g. context"},
                "column": {"type": "string"},
                "instruction": {"type": "string", "minLength": 1, "maxLength": 2000},
                "by": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
                "name": {
                    "type": "string",
                    "description": "name of the new view (letters, digits, _)",
                },
            },
            "required": ["view", "column", "instruction", "name"],
            "additionalProperties": False,
        },
    },
}


async def aggregate_tool(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    """Run ``aggregate`` for the root over ``view`` into the new view ``name``.

    The groups are counted first (only the count is read): more than
    :data:`MAX_TOOL_GROUPS` is a tool error before any text is read or any
    sub-call made.  The scratch views of the grouping are dropped before the
    fold starts (also on error), so a call leaves only ``name`` behind.
    ``sub_calls`` counts this fold's own requests (other tool calls may run
    beside it on the same client).  The step's trace record gets a bounded
    sample: the first groups with their summaries and row counts, and the
    failed leaf / fold calls with their reasons (:func:`~rlm_pipeline.rlm.steps.group_sample`).
    """
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.aggregate_op import (
        AggregateSpec,
        _count_groups,
        _fold_all,
        _grouped,
        _groups,
        _output,
    )
    from rlm_pipeline.ops.multi_common import InputFrame
    from rlm_pipeline.rlm.steps import group_sample

    view, column, name = args["view"], args["column"], args["name"]
    by = list(args.get("by") or [])
    check_view(scope, view)
    check_view_name(name)
    schema = await on_engine(scope.engine.schema, view)
    check_columns(schema, [column, *by])
    try:
        spec = AggregateSpec(column, args["instruction"], by=tuple(by),
                             max_prompt_tokens=TOOL_PROMPT_TOKENS,
                             summary_tokens=TOOL_SUMMARY_TOKENS)
    except InputError as exc:
        raise ToolError(str(exc)) from None
    frame = InputFrame(scope.engine, view)
    try:
        count = await on_engine(_count_groups, frame, spec, MAX_TOOL_GROUPS)
        if count > MAX_TOOL_GROUPS:
            raise ToolError(
                f"view `{view}` has more than {MAX_TOOL_GROUPS} groups by {', '.join(by)}; "
                f"aggregate summarises at most {MAX_TOOL_GROUPS}: filter the view or group by "
                "fewer values"
            )
        table = await on_engine(_grouped, frame, spec)
    finally:
        await on_engine(frame.release)
    groups = _groups(table, spec)
    tally = UsageMeter()
    folds = await _fold_all(scope.client, spec, groups, tally)
    used = tally.snapshot()
    calls = used.calls + used.failed_calls  # requests sent: answered or failed for good
    out = _output(groups, folds, table, spec)
    await on_engine(scope.engine.register, name, out.to_arrow(), replace=True)
    rows = sum(fold.rows for fold in folds)
    keys = [key for key, _ in groups]
    scope.state.steps.note(scope.path, sample=group_sample(column, spec.by, keys, folds))
    text = _result(name, out, spec, rows, calls, used.failed_calls)
    return ToolOutcome(text=bound(text), rows_in=rows, rows_out=out.height, sub_calls=calls,
                       usage=used)


def _result(name: str, out: pl.DataFrame, spec: Any, rows: int, calls: int, failed: int) -> str:
    failed_text = f", {failed} failed" if failed else ""
    lines = [f"view `{name}`: {out.height} groups ({rows} rows, {calls} sub-calls{failed_text})"]
    missing = out.filter(pl.col("summary_error").is_not_null())
    if missing.height:
        kinds = missing["summary_error"].str.split(":").list.first().value_counts(sort=True)
        counts = ", ".join(f"{k} {n}" for k, n in kinds.iter_rows())
        lines.append(f"{missing.height} groups miss rows in their summary ({counts})")
    for row in out.iter_rows(named=True):
        key = ", ".join(f"{k}={row[k]}" for k in spec.by)
        head = f"[{key}] " if key else ""
        summary = cut(str(row["summary"]), 300) if row["summary"] is not None else "(none)"
        lines.append(f"{head}{row['rows_summarised']}/{row['rows']} rows: {summary}")
    return "\n".join(lines)
