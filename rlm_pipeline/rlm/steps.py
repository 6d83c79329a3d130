"""The step log of one run: numbered trace records, written and reported as they happen.

Records are :class:`rlm_pipeline.trace.records.TraceRecord` instances; the
writer appends them to the JSONL trace file (when one is asked for) and the
optional ``on_step`` callback receives each one as a plain dict (the CLI uses
it to print steps live).

What the trace page shows beyond the figures is built here, bounded, so the
loop and the tools add one line each:

- :func:`model_details`: a model turn's own text and the actions read from it
  (``extra.text``, ``extra.actions`` of a ``model`` record);
- :func:`run_models`: the root and sub models and their prices (``extra.models``
  of ``run_start``), for the cost breakdown by model;
- :func:`row_sample`: a few input rows of a classify / llm_map / extract step with
  their answers and error reasons (``extra.sample`` of the ``tool`` record), read
  when the step runs and handed over with :meth:`StepLog.note`;
- :func:`group_sample`: the same for an ``aggregate`` step: the first groups with
  their summaries and row counts, and the failed leaf / fold calls with their
  reasons (``extra.sample`` with ``kind: "groups"``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from rlm_pipeline.trace.records import RecordKind, TraceRecord
from rlm_pipeline.trace.writer import TraceWriter

if TYPE_CHECKING:
    from rlm_pipeline.engines.base import Engine
    from rlm_pipeline.llm.config import LLM

__all__ = [
    "MAX_MODEL_TEXT_CHARS",
    "SAMPLE_FAILED_CALLS",
    "SAMPLE_FAILED_ROWS",
    "SAMPLE_GROUPS",
    "SAMPLE_ROWS",
    "StepCallback",
    "StepLog",
    "group_sample",
    "model_details",
    "row_sample",
    "run_models",
]

#: A model turn's text kept in its trace record (what the conversation keeps too).
MAX_MODEL_TEXT_CHARS: Final = 4000
#: Actions of one turn listed in its record, and characters of each one's arguments.
MAX_ACTIONS_SHOWN: Final = 8
MAX_ACTION_ARGS_CHARS: Final = 600
#: Rows of a classify / llm_map step kept in its record: the first rows of its view,
#: and (when rows failed) the first failed rows with their reasons.
SAMPLE_ROWS: Final = 5
SAMPLE_FAILED_ROWS: Final = 3
#: Characters of each sampled cell.
SAMPLE_CELL_CHARS: Final = 300
#: Groups of an aggregate step kept in its record (the first ones, in output order), and
#: failed leaf / fold calls (the first ones, group by group).
SAMPLE_GROUPS: Final = 5
SAMPLE_FAILED_CALLS: Final = 3

logger = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]


class StepLog:
    """Numbers, stores, writes and reports the records of one run.

    Examples
    --------
    >>> log = StepLog("run1", None, None)
    >>> rec = log.record(depth=0, path="root", kind="tool", tool="peek")
    >>> rec["seq"], rec["tool"]
    (0, 'peek')
    """

    def __init__(self, run_id: str, trace_path: str | None, on_step: StepCallback | None):
        self.run_id = run_id
        self._writer = TraceWriter(trace_path)
        self._on_step = on_step
        self._seq = 0
        self._started = time.monotonic()
        self.dicts: list[dict[str, Any]] = []
        self._notes: dict[str, dict[str, Any]] = {}

    def note(self, path: str, **details: Any) -> None:
        """Keep ``details`` for the next ``tool`` record of ``path`` (merged into its ``extra``).

        A tool handler uses it for what only it can read (a row sample); the
        loop writes the record.  Tool calls of one path run one after another,
        and any other record of the path but a model turn drops an unused note.

        Examples
        --------
        >>> log = StepLog("run1", None, None)
        >>> log.note("root", sample={"rows": []})
        >>> log.record(depth=0, path="root", kind="tool", tool="classify")["extra"]["sample"]
        {'rows': []}
        """
        self._notes.setdefault(path, {}).update(details)

    def record(
        self,
        *,
        depth: int,
        path: str,
        kind: RecordKind,
        tool: str | None = None,
        arguments: dict[str, Any] | None = None,
        result_summary: str | None = None,
        rows_in: int | None = None,
        rows_out: int | None = None,
        sub_calls: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        seconds: float = 0.0,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add one record; returns it as a dict.

        ``extra.at`` is added: seconds from the start of the run to this record
        (the end of its step), which places the step on the page's timeline.
        """
        if kind != "model":
            noted = self._notes.pop(path, None)
            if noted and kind == "tool":
                extra = {**(extra or {}), **noted}
        extra = {**(extra or {}), "at": round(time.monotonic() - self._started, 4)}
        record = TraceRecord(
            run_id=self.run_id,
            seq=self._seq,
            depth=depth,
            path=path,
            kind=kind,
            tool=tool,
            arguments=arguments,
            result_summary=result_summary,
            rows_in=rows_in,
            rows_out=rows_out,
            sub_calls=sub_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            seconds=round(seconds, 4),
            error=error,
            extra=extra,
        )
        self._seq += 1
        self._writer.write(record)
        as_dict = _as_dict(record)
        self.dicts.append(as_dict)
        if self._on_step is not None:
            try:
                self._on_step(as_dict)
            except Exception:  # a broken callback must not break the run
                logger.exception("on_step callback failed")
        return as_dict

    def close(self) -> None:
        """Flush and close the trace file, if any."""
        close = getattr(self._writer, "close", None)
        if callable(close):
            close()


def _as_dict(record: TraceRecord) -> dict[str, Any]:
    to_dict = getattr(record, "to_dict", None)
    if callable(to_dict):
        result: dict[str, Any] = to_dict()
        return result
    return asdict(record)


def model_details(text: str | None, calls: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """``extra`` of a model turn: its own text (cut) and the actions read from it.

    ``calls`` are ``(tool name, raw JSON arguments)`` pairs as the loop read them.

    Examples
    --------
    >>> model_details("I will peek.", [("peek", '{"view": "context", "n": 3}')])
    {'text': 'I will peek.', 'actions': [{'tool': 'peek', 'arguments': '{"view": "context", "n": 3}'}]}
    """
    details: dict[str, Any] = {}
    if text:
        details["text"] = _cut(text, MAX_MODEL_TEXT_CHARS)
    actions = [
        {"tool": _cut(str(name), 60), "arguments": _cut(str(arguments), MAX_ACTION_ARGS_CHARS)}
        for name, arguments in calls
    ]
    if actions:
        details["actions"] = actions[:MAX_ACTIONS_SHOWN]
        if len(actions) > MAX_ACTIONS_SHOWN:
            details["actions_not_shown"] = len(actions) - MAX_ACTIONS_SHOWN
    return details


def run_models(root: LLM, sub: LLM) -> dict[str, Any]:
    """``extra.models`` of ``run_start``: root and sub model names and prices (USD / 1M tokens).

    A price is ``None`` for a model without one.

    Examples
    --------
    >>> from rlm_pipeline.llm.config import LLM
    >>> run_models(LLM(model="gpt-4.1-mini"), LLM(model="sim"))
    {'root': {'model': 'gpt-4.1-mini', 'price': [0.4, 1.6]}, 'sub': {'model': 'sim', 'price': None}}
    """
    out: dict[str, Any] = {}
    for role, config in (("root", root), ("sub", sub)):
        price = config.known_price()
        out[role] = {
            "model": config.model,
            "price": None if price is None else [price.input_per_mtok, price.output_per_mtok],
        }
    return out


async def row_sample(
    engine: Engine,
    view: str,
    column: str,
    answer_column: str | Sequence[str],
    error_column: str,
    *,
    rows: int,
    any_failed: bool,
) -> dict[str, Any]:
    """A bounded sample of a classify / llm_map / extract output view: rows, answers, reasons.

    The first :data:`SAMPLE_ROWS` rows of ``view`` and, when ``any_failed``, the
    first :data:`SAMPLE_FAILED_ROWS` rows whose ``error_column`` is set.  Each
    row is ``{"text", "answer", "error"}``, cells cut to :data:`SAMPLE_CELL_CHARS`;
    with several answer columns (extract's fields) the answer is their values as
    one compact JSON object.  A read that fails leaves the sample out (``{}``): a
    trace detail never fails a step.
    """
    answers = [answer_column] if isinstance(answer_column, str) else list(answer_column)
    columns = [column, *answers, error_column]
    try:
        head = await asyncio.to_thread(engine.head, view, SAMPLE_ROWS, columns)
        sample: dict[str, Any] = {
            "column": column,
            "answer_column": answers[0] if len(answers) == 1 else "fields",
            "error_column": error_column,
            "rows_total": rows,
            "rows": _sample_rows(head, columns),
        }
        if any_failed:
            scratch = "_rlm_sample_failed"
            where = f"{error_column} IS NOT NULL"
            failed = await asyncio.to_thread(engine.filter, view, where, scratch)
            head = await asyncio.to_thread(engine.head, scratch, SAMPLE_FAILED_ROWS, columns)
            sample["failed_total"] = int(failed)
            sample["failed"] = _sample_rows(head, columns)
    except Exception:  # noqa: BLE001 - the sample is for people; the step's result stands
        logger.debug("row sample of view %s not read", view, exc_info=True)
        return {}
    return sample


def group_sample(
    column: str,
    by: Sequence[str],
    keys: Sequence[Mapping[str, Any]],
    folds: Sequence[Any],
) -> dict[str, Any]:
    """A bounded sample of an ``aggregate`` step: groups, summaries, row counts, failed calls.

    ``keys`` are the groups' ``by`` values and ``folds`` their
    :class:`~rlm_pipeline.ops.aggregate_op.GroupFold` results, in output order.
    Keeps the first :data:`SAMPLE_GROUPS` groups (``group``, ``summary``,
    ``rows``, ``rows_summarised``, ``error``) and the first
    :data:`SAMPLE_FAILED_CALLS` leaf or fold calls that gave no summary
    (``group``, ``call``, ``rows``, ``error``), cells cut to
    :data:`SAMPLE_CELL_CHARS`.  Built from what the step already holds (no read);
    anything unexpected leaves the sample out (``{}``).

    Examples
    --------
    >>> from rlm_pipeline.ops.aggregate_op import FoldNode, GroupFold
    >>> ok = GroupFold("refunds late", None, 3, 3, (FoldNode(0, 3, 3, 90),))
    >>> bad = GroupFold(None, "api_error: 2 of 2 rows not in the summary", 2, 0,
    ...                 (FoldNode(0, 2, 2, 80, error="api_error: HTTP 500"),))
    >>> sample = group_sample("q", ["user"], [{"user": 1}, {"user": 2}], [ok, bad])
    >>> sample["groups"][0]
    {'group': 'user=1', 'summary': 'refunds late', 'rows': 3, 'rows_summarised': 3, 'error': None}
    >>> sample["failed_calls"]
    [{'group': 'user=2', 'call': 'leaf', 'rows': 2, 'error': 'api_error: HTTP 500'}]
    """
    try:
        groups: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        failed_total = failed_groups = 0
        for key, fold in zip(keys, folds, strict=True):
            group = _group_name(by, key)
            if fold.error is not None:
                failed_groups += 1
            if len(groups) < SAMPLE_GROUPS:
                groups.append({
                    "group": group,
                    "summary": _cell(fold.summary),
                    "rows": int(fold.rows),
                    "rows_summarised": int(fold.rows_summarised),
                    "error": _cell(fold.error),
                })
            for node in fold.nodes:
                if node.error is None:
                    continue
                failed_total += 1
                if len(failed) < SAMPLE_FAILED_CALLS:
                    failed.append({
                        "group": group,
                        "call": "leaf" if node.level == 0 else f"fold level {node.level}",
                        "rows": int(node.rows),
                        "error": _cell(node.error),
                    })
        sample: dict[str, Any] = {
            "kind": "groups",
            "column": column,
            "by": [_cut(str(name), 60) for name in by],
            "groups_total": len(folds),
            "rows_total": sum(int(fold.rows) for fold in folds),
            "groups": groups,
        }
        if failed_groups:
            sample["failed_groups_total"] = failed_groups
        if failed_total:
            sample["failed_calls_total"] = failed_total
            sample["failed_calls"] = failed
    except Exception:  # noqa: BLE001 - the sample is for people; the step's result stands
        logger.debug("group sample not built", exc_info=True)
        return {}
    return sample


def _group_name(by: Sequence[str], key: Mapping[str, Any]) -> str:
    if not by:
        return "all rows"
    parts = ", ".join(f"{name}={'null' if key.get(name) is None else key.get(name)}" for name in by)
    return _cut(parts, SAMPLE_CELL_CHARS)


def _sample_rows(table: Any, columns: list[str]) -> list[dict[str, Any]]:
    text = table.column(columns[0]).to_pylist()
    error = table.column(columns[-1]).to_pylist()
    fields = columns[1:-1]
    values = [table.column(c).to_pylist() for c in fields]
    out = []
    for i, (t, e) in enumerate(zip(text, error, strict=True)):
        if len(fields) == 1:
            answer = values[0][i]
        else:
            row = {f: v[i] for f, v in zip(fields, values, strict=True)}
            answer = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
        out.append({"text": _cell(t), "answer": _cell(answer), "error": _cell(e)})
    return out


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return _cut(str(value), SAMPLE_CELL_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
