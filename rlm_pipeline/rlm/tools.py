"""The root model's tools: their JSON schemas and their dispatch.

The tool set is closed.  A tool call names one of :data:`TOOL_NAMES`; its
arguments are parsed as JSON, validated against the tool's JSON schema, then
checked against the views (names, columns) before the engine sees them.  SQL
goes only through the engine, which checks it with :mod:`rlm_pipeline.expr`'s
allow list.  Whatever the model sends, the outcome is a short text (at most
:data:`~rlm_pipeline.rlm.render.MAX_RESULT_CHARS` characters): a result, or an
``error: ...`` line the model can act on.  Nothing here opens files, sockets or
processes, or evaluates model text.

Examples
--------
>>> [t["function"]["name"] for t in TOOLS][:3]
['peek', 'filter', 'partition']
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jsonschema

from rlm_pipeline.engines.partitioning import MAX_PARTITIONS
from rlm_pipeline.errors import (
    BudgetExceededError,
    InputError,
    LLMEndpointError,
    RLMPipelineError,
    ToolError,
)
from rlm_pipeline.rlm.agg_tool import AGGREGATE_TOOL, aggregate_tool
from rlm_pipeline.rlm.guard import guarded
from rlm_pipeline.rlm.limits import wire_schema
from rlm_pipeline.rlm.render import MAX_RESULT_CHARS, bound, cut, rows_as_json_lines, schema_line
from rlm_pipeline.rlm.scope import Scope
from rlm_pipeline.rlm.sem_tools import EXTRACT_TOOL, extract_tool
from rlm_pipeline.rlm.steps import row_sample
from rlm_pipeline.rlm.views import (
    MAX_RECURSE_PARTITIONS,
    ToolOutcome,
    check_columns,
    check_view,
    check_view_name,
    describe_view,
)
from rlm_pipeline.rlm.views import on_engine as _engine

if TYPE_CHECKING:
    from rlm_pipeline.ops.stats import OpStats

__all__ = [
    "MAX_PEEK_ROWS",
    "MAX_RECURSE_PARTITIONS",
    "MODEL_TOOLS",
    "TOOLS",
    "TOOL_NAMES",
    "TOOL_SPECS",
    "ToolError",
    "ToolOutcome",
    "check_view_name",
    "dispatch",
]

logger = logging.getLogger(__name__)

MAX_PEEK_ROWS = 20
#: Rows shown after `sql`.
SQL_PREVIEW_ROWS = 10
#: Batch size of classify / llm_map sub-calls issued by the root model.
SUB_BATCH_SIZE = 16

_VIEW = {"type": "string", "description": "name of an existing view, e.g. context"}
_NEW = {"type": "string", "description": "name of the new view (letters, digits, _)"}


def _tool(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


#: The tools' schemas with their real limits: what arguments are validated against.
TOOL_SPECS: list[dict[str, Any]] = [
    _tool(
        "peek",
        "First rows of a view; each cell cut to 200 characters.",
        {
            "view": _VIEW,
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_PEEK_ROWS},
            "columns": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
        },
        ["view", "n"],
    ),
    _tool(
        "filter",
        "New view of the rows of `view` where the SQL boolean expression `where` holds; "
        "returns the row count.",
        {"view": _VIEW, "where": {"type": "string", "maxLength": 4000}, "name": _NEW},
        ["view", "where", "name"],
    ),
    _tool(
        "partition",
        "New view with a `partition` column: by a column or SQL expression (`by`), or into "
        "`n` chunks of contiguous rows; returns partition count and sizes.",
        {
            "view": _VIEW,
            "by": {"type": "string", "maxLength": 1000},
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_PARTITIONS},
            "name": _NEW,
        },
        ["view", "name"],
    ),
    _tool(
        "sql",
        "Read-only SELECT over views; new view; returns schema, row count, first rows.",
        {"query": {"type": "string", "maxLength": 8000}, "name": _NEW},
        ["query", "name"],
    ),
    _tool(
        "classify",
        "Sub-models label each row's text with one of `labels`; new view with columns "
        "`label` and `label_error`; returns the label counts.",
        {
            "view": _VIEW,
            "column": {"type": "string"},
            "labels": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 100},
                "minItems": 2,
                "maxItems": 50,
            },
            "name": _NEW,
            "instructions": {"type": "string", "maxLength": 2000},
        },
        ["view", "column", "labels", "name"],
    ),
    _tool(
        "llm_map",
        "A sub-model answers `instruction` for each row's `column`; new view with columns "
        "`value` and `value_error`.",
        {
            "view": _VIEW,
            "column": {"type": "string"},
            "instruction": {"type": "string", "minLength": 1, "maxLength": 2000},
            "name": _NEW,
            "output_type": {"enum": ["string", "integer", "number", "boolean"]},
        },
        ["view", "column", "instruction", "name"],
    ),
    EXTRACT_TOOL,  # rlm/sem_tools.py
    AGGREGATE_TOOL,  # rlm/agg_tool.py
    _tool(
        "recurse",
        "Answer `query` separately for each value of `partition_column` (a sub-run per "
        f"partition, at most {MAX_RECURSE_PARTITIONS} partitions, every one answered); new view "
        "(partition_column, answer) to aggregate with sql.",
        {
            "view": _VIEW,
            "partition_column": {"type": "string"},
            "query": {"type": "string", "minLength": 1, "maxLength": 2000},
            "name": _NEW,
        },
        ["view", "partition_column", "query", "name"],
    ),
    _tool(
        "answer",
        "Final answer; ends the run. `value` is a JSON value (number, string, list, object).",
        {"value": {}, "explanation": {"type": "string", "maxLength": 2000}},
        ["value"],
    ),
]

#: OpenAI function-calling schemas of the tools (DESIGN.md §2), as sent to servers: limits
#: above :data:`~rlm_pipeline.rlm.limits.SCHEMA_LIMIT` are left out (grammar engines cannot
#: take them) and enforced after parsing, by validation against :data:`TOOL_SPECS`.
TOOLS: list[dict[str, Any]] = [wire_schema(t) for t in TOOL_SPECS]
TOOL_NAMES: tuple[str, ...] = tuple(t["function"]["name"] for t in TOOLS)
#: The tools that call the model; the others (peek, filter, partition, sql, answer) never do.
MODEL_TOOLS = frozenset({"classify", "llm_map", "extract", "aggregate", "recurse"})
_VALIDATORS = {
    t["function"]["name"]: jsonschema.Draft202012Validator(t["function"]["parameters"])
    for t in TOOL_SPECS
}


# --------------------------------------------------------------------- handlers


async def _peek(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    view, n = args["view"], args["n"]
    check_view(scope, view)
    columns = args.get("columns")
    if columns:
        check_columns(await _engine(scope.engine.schema, view), columns)
    table = await _engine(scope.engine.head, view, n, columns or None)
    rows_in = int(await _engine(scope.engine.count, view))
    body = rows_as_json_lines(table, limit=MAX_RESULT_CHARS - 100)
    text = f"view `{view}`: first {table.num_rows} rows\n{body}"
    return ToolOutcome(text=text, rows_in=rows_in, rows_out=table.num_rows)


async def _filter(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    view, where, name = args["view"], args["where"], args["name"]
    check_view(scope, view)
    check_view_name(name)
    # The engine refuses first (view and row limits, a bad condition); the input is
    # counted once, after -- or before when the new view replaces it.
    rows_in = int(await _engine(scope.engine.count, view)) if name == view else None
    rows = int(await _engine(scope.engine.filter, view, where, name))
    if rows_in is None:
        rows_in = int(await _engine(scope.engine.count, view))
    text = f"view `{name}`: {rows} rows (filtered from `{view}`, {rows_in} rows)"
    return ToolOutcome(text=text, rows_in=rows_in, rows_out=rows)


async def _partition(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    view, name = args["view"], args["name"]
    by, n = args.get("by"), args.get("n")
    check_view(scope, view)
    check_view_name(name)
    if by is None and n is None:
        raise ToolError("give `by` (a column or SQL expression) or `n` (number of chunks)")
    sizes: dict[str, int] = await _engine(scope.engine.partition, view, by=by, n=n, name=name)
    shown = ", ".join(f"{k}: {v}" for k, v in list(sizes.items())[:60])
    more = f", … {len(sizes) - 60} more" if len(sizes) > 60 else ""
    text = (
        f"view `{name}`: {len(sizes)} partitions in column `partition`, "
        f"{sum(sizes.values())} rows; sizes: {shown}{more}"
    )
    total = sum(sizes.values())  # every input row lands in one partition
    return ToolOutcome(text=bound(text), rows_in=total, rows_out=total)


async def _sql(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    query, name = args["query"], args["name"]
    check_view_name(name)
    rows = int(await _engine(scope.engine.sql, query, name))
    text = await describe_view(scope, name, rows, preview=SQL_PREVIEW_ROWS)
    return ToolOutcome(text=text, rows_out=rows)


async def _classify(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    from rlm_pipeline.ops.spec import ClassifySpec

    view, column, name = args["view"], args["column"], args["name"]
    labels = list(dict.fromkeys(args["labels"]))
    check_view(scope, view)
    check_view_name(name)
    check_columns(await _engine(scope.engine.schema, view), [column])
    if len(labels) < 2:
        raise ToolError("give at least two distinct labels")
    spec = ClassifySpec(
        column=column,
        labels=tuple(labels),
        instructions=args.get("instructions"),
        batch_size=scope.state.sub_batch_size,
        output_column="label",
    )
    cascade = scope.state.cascade
    if cascade is None:
        stats = await _map_llm(scope, view, spec, name)
    else:
        stats = await _cascade_map(scope, view, spec, name, cascade)
    calls = stats.usage.calls  # this call's own
    # The library's own reads (every label, uncut), not the model's 20-row preview.
    counts = await _engine(scope.engine.value_counts, name, "label", max_values=len(labels) + 1)
    total = counts.rows
    shown = counts_line(counts.pairs(), labels, more=counts.distinct - len(counts.values))
    text = f"view `{name}`: {total} rows labelled ({calls} sub-calls); label counts: {shown}"
    text += await _failures(scope, name, "label_error", total, "label")
    if stats.cascade is not None:
        report = stats.cascade
        text += (
            f"; {report.oracle_rows} of {report.proxy_rows + report.oracle_rows} rows answered by "
            "the strong model (cascade)"
        )
    sample = await row_sample(scope.engine, name, column, "label", "label_error", rows=total,
                              any_failed=counts.count_of(None) > 0)  # for the trace page
    scope.state.steps.note(scope.path, sample=sample)
    if stats.cascade is not None:
        scope.state.steps.note(scope.path, cascade=cascade_record(stats.cascade))
    return ToolOutcome(text=bound(text), rows_in=total, rows_out=total, sub_calls=calls,
                       usage=stats.usage)


#: Characters of a classify result given to its label counts: the rest of the ~2,000
#: is left for the header, the failure line and the view line added after the result.
COUNTS_CHARS = 1000
#: Distinct failure reasons read to summarise the failed rows by kind.
MAX_REASONS = 200


def counts_line(
    pairs: list[tuple[Any, int]], labels: list[str], *, more: int = 0, limit: int = COUNTS_CHARS
) -> str:
    """Label counts as ``a: 3, b: 1, c: 0``, most rows first, every label included.

    Labels without rows are listed with 0; the null label (rows that failed) as
    ``null``.  If the text would pass ``limit`` characters it ends with
    ``… and N more labels`` (never a silent cut).  ``more`` counts labels the
    caller could not read.

    Examples
    --------
    >>> counts_line([(None, 1), ("a", 3)], ["a", "b"])
    'a: 3, null: 1, b: 0'
    >>> names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    >>> counts_line(list(zip(names, [5, 4, 3, 2, 1])), names, limit=40)
    'alpha: 5, beta: 4, … and 3 more labels'
    """
    seen = {value for value, _ in pairs}
    rows = list(pairs) + [(label, 0) for label in labels if label not in seen]
    rows.sort(key=lambda p: (-p[1], p[0] is None, "" if p[0] is None else str(p[0])))
    items = [f"{'null' if v is None else v}: {n}" for v, n in rows]
    whole = ", ".join(items)
    if not more and len(whole) <= limit:
        return whole
    room = limit - len(f", … and {len(items) + more} more labels")
    shown: list[str] = []
    size = 0
    for item in items:
        size += len(item) + (2 if shown else 0)
        if size > room:
            break
        shown.append(item)
    left = len(items) - len(shown) + more
    return ", ".join([*shown, f"… and {left} more labels"]) if left else ", ".join(shown)


async def _failures(scope: Scope, name: str, error_column: str, rows: int, column: str) -> str:
    """``"; N rows failed (…: api_error 3, parse_error 1)"``, or ``""`` when none failed."""
    reasons = await _engine(scope.engine.value_counts, name, error_column, max_values=MAX_REASONS)
    failed = rows - reasons.count_of(None)
    if failed <= 0:
        return ""
    kinds: dict[str, int] = {}
    for reason, n in reasons.pairs():
        if reason is not None:
            kind = str(reason).split(":", 1)[0].strip()[:40]
            kinds[kind] = kinds.get(kind, 0) + n
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    if not reasons.complete:
        by_kind += ", …"
    return (
        f"; {failed} rows failed ({column} null, reason in `{error_column}`: {cut(by_kind, 200)})"
    )


async def _llm_map(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    from rlm_pipeline.ops.spec import MapSpec

    view, column, name = args["view"], args["column"], args["name"]
    check_view(scope, view)
    check_view_name(name)
    check_columns(await _engine(scope.engine.schema, view), [column])
    spec = MapSpec(
        column=column,
        instruction=args["instruction"],
        output_type=args.get("output_type", "string"),
        batch_size=scope.state.sub_batch_size,
        output_column="value",
    )
    stats = await _map_llm(scope, view, spec, name)
    calls = stats.usage.calls  # this call's own
    rows = int(await _engine(scope.engine.count, name))
    failures = await _failures(scope, name, "value_error", rows, "value")
    sample = await row_sample(scope.engine, name, column, "value", "value_error", rows=rows,
                              any_failed=bool(failures))  # for the trace page
    scope.state.steps.note(scope.path, sample=sample)
    text = await describe_view(scope, name, rows, preview=5)
    text = bound(f"{calls} sub-calls{failures}; " + text)
    return ToolOutcome(text=text, rows_in=rows, rows_out=rows, sub_calls=calls, usage=stats.usage)


async def _map_llm(scope: Scope, view: str, spec: Any, name: str) -> OpStats:
    """Fan ``spec`` out over ``view`` into view ``name`` through the scope's engine and client.

    Polars runs it in the run's own event loop through the scope's client, so the
    fan-out shares the run's semaphore and rpm/tpm limiters with every other model
    call; Spark as executor tasks with the scope's share of the ``sub`` config
    (:func:`rlm_pipeline.ops.spark_fanout.apply` shares it out again over the tasks).
    """
    from rlm_pipeline.ops.fanout import FANOUT

    return await scope.engine.map_llm(view, spec, scope.client, name, fanout=FANOUT)


async def _cascade_map(scope: Scope, view: str, spec: Any, name: str, run: Any) -> OpStats:
    """``spec`` over ``view`` through the run's cascade into view ``name`` (``RLM(cascade=...)``).

    ``run`` is the run's :class:`~rlm_pipeline.rlm.cascade_tool.CascadeRun`; the
    proxy is ``run.cascade.proxy``, the oracle the scope's ``sub`` client.  On
    Polars the cascade runs in the run's event loop through the run's clients
    (one budget guard, one concurrency and rate limit per model for the whole
    run; cancelling the tool call cancels its calls).  On Spark its passes are
    executor tasks (:func:`~rlm_pipeline.ops.cascade.run_cascade` in a worker
    thread, within what the run's budget has left; ``max_parallel=1`` is
    required, see :mod:`rlm_pipeline.rlm.cascade_tool`).
    """
    from rlm_pipeline.rlm.cascade_tool import run_in_loop

    frame = await _engine(scope.engine.frame, view)
    if not scope.engine.fans_out_in_tasks:  # Polars: in the run's loop
        out, stats = await run_in_loop(run, frame, spec, scope.client, scope.llm)
    else:
        out, stats = await _spark_cascade(scope, frame, spec, run.cascade)
    await _engine(scope.engine.register, name, out, replace=True)
    found: OpStats = stats
    return found


async def _spark_cascade(scope: Scope, frame: Any, spec: Any, cascade: Any) -> Any:
    """:func:`~rlm_pipeline.ops.api.run_op` with the cascade, in a worker thread (Spark)."""
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.api import run_op

    meter = UsageMeter()
    try:
        return await _engine(
            run_op,
            frame,
            spec,
            scope.llm,
            engine=scope.engine.name,
            meter=meter,
            budget=_budget_left(scope),
            warn=False,
            cascade=cascade,
        )
    finally:
        scope.state.meter.add(meter.snapshot())


def _budget_left(scope: Scope) -> Any:
    """What the run's budget leaves after what its meter holds (None: no limit set)."""
    b = scope.state.budget
    if b.max_calls is None and b.max_tokens is None and b.max_cost_usd is None:
        return None
    return b.less(scope.state.meter.snapshot())


def cascade_record(report: Any) -> dict[str, Any]:
    """The cascade's report as a tool step records it (``extra.cascade`` of the trace record).

    Examples
    --------
    >>> from rlm_pipeline.ops.cascade_report import CascadeReport
    >>> from rlm_pipeline.ops.cascade_stats import Calibration
    >>> r = CascadeReport("small", "big", "logprobs", 0.95, 0.05, 200,
    ...                   Calibration(0.7, 200, 180, 130, 129, 0.96), rows=10, proxy_rows=7,
    ...                   oracle_rows=3)
    >>> rec = cascade_record(r)
    >>> rec["escalated_share"], rec["threshold"], rec["sample_agreement"], rec["lower_bound"]
    (0.3, 0.7, 0.9923, 0.96)
    """
    cal = report.calibration
    kept = cal.kept_agreement
    return {
        "proxy_model": report.proxy_model,
        "oracle_model": report.oracle_model,
        "confidence": report.confidence,
        "target": report.target,
        "delta": report.delta,
        "reached": report.reached,
        "threshold": report.threshold,
        "escalated_share": round(report.escalated_share, 4),
        "proxy_rows": report.proxy_rows,
        "oracle_rows": report.oracle_rows,
        "sample_rows": cal.rows,
        "sample_kept": cal.kept,
        "sample_kept_agreeing": cal.kept_agreeing,
        "sample_agreement": None if kept is None else round(kept, 4),
        "lower_bound": round(cal.lower_bound, 4),
        "cost_usd": report.cost_usd,
        "cost_all_oracle_usd": report.cost_all_oracle_usd,
        "summary": report.summary(),
    }


async def _recurse(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    from rlm_pipeline.rlm.recurse import recurse

    check_view(scope, args["view"])
    check_view_name(args["name"])
    check_columns(await _engine(scope.engine.schema, args["view"]), [args["partition_column"]])
    return await recurse(scope, args["view"], args["partition_column"], args["query"], args["name"])


async def _answer(args: dict[str, Any], scope: Scope) -> ToolOutcome:
    value = args["value"]
    explanation = args.get("explanation")
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ToolOutcome(
        text=f"answer recorded: {cut(shown, 500)}",
        final=True,
        value=value,
        explanation=explanation,
    )


_HANDLERS: dict[str, Callable[[dict[str, Any], Scope], Awaitable[ToolOutcome]]] = {
    "peek": _peek,
    "filter": _filter,
    "partition": _partition,
    "sql": _sql,
    "classify": _classify,
    "llm_map": _llm_map,
    "extract": extract_tool,
    "aggregate": aggregate_tool,
    "recurse": _recurse,
    "answer": _answer,
}


def parse_arguments(name: str, raw: str) -> dict[str, Any]:
    """Decode and validate the arguments of a call to tool ``name``.

    Raises
    ------
    ToolError
        Unknown tool, invalid JSON, not an object, or not matching the schema.

    Examples
    --------
    >>> parse_arguments("peek", '{"view": "context", "n": 3}')
    {'view': 'context', 'n': 3}
    """
    if name not in _HANDLERS:
        raise ToolError(f"unknown tool {cut(name, 60)!r}; the tools are: {', '.join(TOOL_NAMES)}")
    try:
        args = json.loads(raw) if raw and raw.strip() else {}
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ToolError(f"arguments are not valid JSON ({exc}); send one JSON object") from None
    if not isinstance(args, dict):
        raise ToolError("arguments must be one JSON object")
    errors = sorted(_VALIDATORS[name].iter_errors(args), key=lambda e: list(e.path))
    if errors:
        detail = "; ".join(_problem(e) for e in errors[:3])
        raise ToolError(f"bad arguments for {name}: {detail}")
    return args


_SIZE_WORDS = {
    "maxLength": ("at most", "characters"),
    "minLength": ("at least", "characters"),
    "maxItems": ("at most", "items"),
    "minItems": ("at least", "items"),
}


def _problem(error: jsonschema.ValidationError) -> str:
    """One schema violation in words the model can act on, without echoing a long value.

    Length and count limits (enforced here, not in the schemas sent to servers)
    say the size and the limit; a wrong type says what was expected.
    """
    where = "/".join(str(p) for p in error.path) or "arguments"
    kind = str(error.validator)
    if kind in _SIZE_WORDS and isinstance(error.instance, str | list):
        bound_word, unit = _SIZE_WORDS[kind]
        size = len(error.instance)
        return f"{where}: {size} {unit}, must be {bound_word} {error.validator_value} {unit}"
    if kind == "type":
        got = type(error.instance).__name__
        return f"{where}: expected {error.validator_value}, got {got} {cut(repr(error.instance), 40)}"
    return f"{where}: {cut(error.message, 160)}"


async def dispatch(name: str, raw_arguments: str, scope: Scope) -> ToolOutcome:
    """Run one tool call; model mistakes become an ``error: ...`` outcome, never an exception.

    Only the run's own limits escape: :class:`BudgetExceededError` raised by the
    budget guard of a *root* model call is not raised here (tools catch theirs
    and report them), so the caller decides when the run stops.  An
    :class:`LLMEndpointError` (the sub-model's endpoint is dead for every call)
    is raised: no correction by the model can help, the run stops.
    """
    started = time.monotonic()
    try:
        args = parse_arguments(name, raw_arguments)
        outcome = await guarded(name, _HANDLERS[name](args, scope))  # tool_timeout_s
        if outcome.error is None and not outcome.final:
            outcome.text = await _restated(name, args, outcome, scope)
    except LLMEndpointError:
        raise
    except (ToolError, InputError, BudgetExceededError) as exc:
        outcome = _error(exc)
    except RLMPipelineError as exc:
        outcome = _error(exc, kind=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 — model input must never crash the run
        logger.warning("tool %s failed unexpectedly", name, exc_info=True)
        outcome = _error(exc, kind="internal error")
    logger.debug("tool %s done in %.3fs", name, time.monotonic() - started)
    return outcome


async def _restated(name: str, args: dict[str, Any], outcome: ToolOutcome, scope: Scope) -> str:
    """The result text with a line naming the view, its row count and columns (when it lacks them).

    Small models lose track of which views exist and what they hold; each
    result that made or read a view restates it in one line.
    """
    view = args.get("view") if name == "peek" else args.get("name")
    rows = outcome.rows_in if name == "peek" else outcome.rows_out
    if not isinstance(view, str) or rows is None or "\ncolumns: " in outcome.text:
        return outcome.text
    try:
        schema = await _engine(scope.engine.schema, view)
    except Exception:  # noqa: BLE001 - the view is gone or unreadable: keep the result as is
        return outcome.text
    line = f"(view `{view}`: {rows} rows; columns: {schema_line(schema, limit=400)})"
    head, _, rest = outcome.text.partition("\n")  # right under the result's first line
    return bound("\n".join(filter(None, [head, line, rest])))


def _error(exc: BaseException, kind: str | None = None) -> ToolOutcome:
    message = str(exc) or type(exc).__name__
    text = bound(f"error: {kind + ': ' if kind else ''}{message}", 1000)
    return ToolOutcome(text=text, error=cut(message, 500))
