"""The root model's ``extract`` tool: typed fields read off each row by sub-calls.

``extract`` fans :class:`~rlm_pipeline.ops.extract_op.ExtractSpec` out over a
view through the engine's one fan-out entry (``Engine.map_llm``, the route of
``classify`` and ``llm_map``), into a new view with one column per field
(null when the text does not state it) and ``extract_error``.  The result
text counts, per field, the rows that got a value, and the failed rows by
reason, so the model can decide to ``sql`` over the view.

Why there is no semantic ``condition`` on the root's ``filter`` tool: ``filter``
stays an exact SQL ``WHERE`` over the view (cheap, no model call).  Small
root models confuse the two kinds of filtering (NOTES.md: a 0.5B root
"filtered on the sample rows' texts instead of user_id"); one tool with two
exclusive arguments, one of which costs a sub-call per row, invites the
expensive mistake.  A semantic condition is one ``extract`` of a boolean field
(``{"asks_refund": "boolean"}``) followed by ``filter``/``sql`` on that
column, or ``classify``.

This module imports no other tool module (``tools`` imports it).
"""

from __future__ import annotations

from typing import Any

from rlm_pipeline.errors import InputError, ToolError
from rlm_pipeline.rlm.render import bound, cut
from rlm_pipeline.rlm.scope import Scope
from rlm_pipeline.rlm.steps import row_sample
from rlm_pipeline.rlm.views import (
    ToolOutcome,
    check_columns,
    check_view,
    check_view_name,
    describe_view,
    on_engine,
)

__all__ = ["EXTRACT_EXAMPLE", "EXTRACT_TOOL", "MAX_TOOL_FIELDS", "extract_tool"]

#: Most fields one ``extract`` call of the root may ask for.
MAX_TOOL_FIELDS = 16
#: Distinct failure reasons read to summarise the failed rows by kind.
_MAX_REASONS = 200

_FIELD_TYPE = {
    "anyOf": [
        {"enum": ["string", "integer", "number", "boolean", "date"]},
        {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 100},
            "minItems": 1,
            "maxItems": 50,
        },
    ]
}

#: The tool's schema with its real limits (``tools.TOOL_SPECS`` holds it).
EXTRACT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "extract",
        "description": (
            "Sub-models read typed `fields` out of each row's `column` (name -> string, "
            "integer, number, boolean, date, or a list of allowed values); new view with one "
            "column per field (null when the text does not say) and `extract_error`."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "view": {"type": "string", "description": "name of an existing view, e.g. context"},
                "column": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": _FIELD_TYPE,
                    "minProperties": 1,
                    "maxProperties": MAX_TOOL_FIELDS,
                },
                "name": {
                    "type": "string",
                    "description": "name of the new view (letters, digits, _)",
                },
                "instructions": {"type": "string", "maxLength": 2000},
            },
            "required": ["view", "column", "fields", "name"],
            "additionalProperties": False,
        },
    },
}

#: One worked call (prompts and hints show it; it must validate against the schema).
EXTRACT_EXAMPLE: dict[str, Any] = {
    "view": "subset",
    "column": "question",
    "fields": {"refund_amount": "number", "plan": ["Basic", "Pro", "Team"]},
    "name": "extracted",
}


async def extract_tool(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    """Run ``extract`` for the root: fan the spec out over ``view`` into view ``name``."""
    from rlm_pipeline.ops.extract_op import ExtractSpec
    from rlm_pipeline.ops.fanout import FANOUT

    view, column, name = args["view"], args["column"], args["name"]
    check_view(scope, view)
    check_view_name(name)
    schema = await on_engine(scope.engine.schema, view)
    check_columns(schema, [column])
    try:
        spec = ExtractSpec(
            column=column,
            fields=args["fields"],
            instructions=args.get("instructions"),
            batch_size=scope.state.sub_batch_size,
        )
    except InputError as exc:
        raise ToolError(str(exc)) from None
    taken = [field for field in spec.names if field in schema]
    if taken:
        raise ToolError(
            f"view `{view}` already has column(s) {', '.join(taken)}; name the fields otherwise"
        )
    stats = await scope.engine.map_llm(view, spec, scope.client, name, fanout=FANOUT)
    calls = stats.usage.calls  # this call's own (other tool calls may share the client)
    rows = int(await on_engine(scope.engine.count, name))
    found = []
    for field in spec.names:
        counts = await on_engine(scope.engine.value_counts, name, field, max_values=1)
        found.append(f"{field} {rows - counts.count_of(None)}")
    failures = await _failures(scope, name, spec.error_column, rows)
    text = (
        f"view `{name}`: {rows} rows read ({calls} sub-calls); rows with a value: "
        f"{', '.join(found)}{failures}"
    )
    text += "\n" + await describe_view(scope, name, rows, preview=5)
    sample = await row_sample(scope.engine, name, column, list(spec.names), spec.error_column,
                              rows=rows, any_failed=bool(failures))  # for the trace page
    scope.state.steps.note(scope.path, sample=sample)
    return ToolOutcome(text=bound(text), rows_in=rows, rows_out=rows, sub_calls=calls,
                       usage=stats.usage)


async def _failures(scope: Scope, name: str, error_column: str, rows: int) -> str:
    """``"; N rows failed (api_error 3, ...)"``, blank inputs apart; ``""`` when none failed."""
    reasons = await on_engine(scope.engine.value_counts, name, error_column, max_values=_MAX_REASONS)
    kinds: dict[str, int] = {}
    for reason, n in reasons.pairs():
        if reason is not None:
            kind = str(reason).split(":", 1)[0].strip()[:40]
            kinds[kind] = kinds.get(kind, 0) + n
    if not kinds:
        return ""
    failed = rows - reasons.count_of(None)
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"; {failed} rows without values (reason in `{error_column}`: {cut(by_kind, 200)})"
