"""Shape a flat trace into runs → paths → steps, for the tree and the HTML page.

A trace is a flat list of records.  Records of a sub-RLM (path ``root/p3``)
are attached to the ``recurse`` step of their parent path that came after
them (the step that started them); failing that, at the end of the parent.
Records are read with ``.get`` so a trace from an older writer still shows.

Examples
--------
>>> from rlm_pipeline.trace.outline import build_outline
>>> runs = build_outline([
...     {"run_id": "r", "seq": 0, "path": "root", "kind": "run_start",
...      "extra": {"question": "How many?"}},
...     {"run_id": "r", "seq": 1, "path": "root", "kind": "tool", "tool": "peek"},
... ])
>>> runs[0].question, [s.record["tool"] for s in runs[0].root.steps]
('How many?', ['peek'])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm_pipeline.trace.records import TraceRecord

__all__ = [
    "VISIBLE_CONTROLS",
    "step_numbers",
    "PathNode",
    "RunOutline",
    "StepNode",
    "argument_summary",
    "build_outline",
    "format_value",
]

Record = Mapping[str, Any]

#: Control characters from a trace (model text, ticket text) as visible ones, for the
#: terminal: C0 controls but newline and tab as their control pictures (ESC as "␛"), DEL,
#: C1 controls and the Unicode line / paragraph separators as "·" — one character for
#: one, so styled spans keep their places.  Use with ``str.translate``.
VISIBLE_CONTROLS: dict[int, int] = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
VISIBLE_CONTROLS.update({0x7F: 0x2421, 0x2028: 0xB7, 0x2029: 0xB7})
VISIBLE_CONTROLS.update({c: 0xB7 for c in range(0x80, 0xA0)})


@dataclass(frozen=True)
class StepNode:
    """One record of a path, with the sub-RLM paths it started (for ``recurse``)."""

    record: Record
    children: tuple[PathNode, ...] = ()


@dataclass(frozen=True)
class PathNode:
    """All steps of one path (``root`` or a sub-RLM such as ``root/p3``)."""

    path: str
    depth: int
    steps: tuple[StepNode, ...]
    start: Record | None = None
    end: Record | None = None

    @property
    def answer(self) -> Any:
        """The path's answer: its ``run_end`` answer, else its last ``answer`` step's value,
        else (for a sub-RLM answered by one plain call) that call's reply."""
        if self.end is not None:
            extra = self.end.get("extra") or {}
            if extra.get("answer") is not None:
                return extra["answer"]
            if "value" in extra:
                return extra["value"]
        for step in reversed(self.steps):
            if step.record.get("kind") == "answer":
                arguments = step.record.get("arguments") or {}
                if "value" in arguments:
                    return arguments["value"]
                return step.record.get("result_summary")
        if self.depth > 0 and self.steps and self.steps[-1].record.get("kind") == "model":
            # a partition answered by one plain call: its reply is the answer
            return self.steps[-1].record.get("result_summary")
        return None

    @property
    def error_count(self) -> int:
        """Records of this path (not its children) that carry an error."""
        return sum(1 for s in self.steps if s.record.get("error"))


@dataclass(frozen=True)
class RunOutline:
    """One top-level run: its header facts and the root path."""

    run_id: str
    root: PathNode
    question: str | None = None
    engine: str | None = None
    answer: Any = None
    value: Any = None
    usage: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    records: int = 0
    error: str | None = None
    #: Every record of the run, in ``seq`` order (for the timeline and the cost by model).
    all_records: tuple[Record, ...] = ()


def build_outline(records: Iterable[Record | TraceRecord]) -> list[RunOutline]:
    """Group a flat list of records into one :class:`RunOutline` per ``run_id``.

    Runs keep the order in which they first appear; records within a path are
    sorted by ``seq``.
    """
    by_run: dict[str, list[Record]] = {}
    for item in records:
        record = item.to_dict() if isinstance(item, TraceRecord) else item
        by_run.setdefault(str(record.get("run_id", "?")), []).append(record)
    return [_outline_run(run_id, recs) for run_id, recs in by_run.items()]


def _outline_run(run_id: str, records: list[Record]) -> RunOutline:
    ordered = sorted(records, key=lambda r: _int(r.get("seq")))
    by_path: dict[str, list[Record]] = {}
    for record in ordered:
        by_path.setdefault(str(record.get("path") or "root"), []).append(record)
    by_path.setdefault("root", [])
    kids: dict[str, list[str]] = {}
    for path in by_path:
        if path != "root":
            kids.setdefault(_parent_path(path, by_path), []).append(path)
    root = _build_path("root", by_path, kids)
    start_extra = (root.start or {}).get("extra") or {}
    end_extra = (root.end or {}).get("extra") or {}
    usage = end_extra.get("usage")
    if not isinstance(usage, Mapping):
        usage = _summed_usage(by_path["root"])
    seconds = _float((root.end or {}).get("seconds")) or sum(
        _float(r.get("seconds")) for r in by_path["root"]
    )
    return RunOutline(
        run_id=run_id,
        root=root,
        question=_str_or_none(start_extra.get("question")),
        engine=_str_or_none(start_extra.get("engine")),
        answer=root.answer,
        value=end_extra.get("value"),
        usage=usage,
        seconds=seconds,
        records=len(ordered),
        error=_str_or_none((root.end or {}).get("error")),
        all_records=tuple(ordered),
    )


def _parent_path(path: str, present: Mapping[str, object]) -> str:
    """The nearest ancestor of ``path`` that has records (``root`` at worst)."""
    parts = path.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = "/".join(parts[:cut])
        if candidate in present:
            return candidate
    return "root"


def _build_path(
    path: str, by_path: dict[str, list[Record]], kids: dict[str, list[str]]
) -> PathNode:
    own = by_path.get(path, [])
    children = sorted(
        kids.get(path, []), key=lambda p: _int(by_path[p][0].get("seq")) if by_path[p] else 0
    )
    start = next((r for r in own if r.get("kind") == "run_start"), None)
    end = next((r for r in reversed(own) if r.get("kind") == "run_end"), None)
    body = [r for r in own if r is not start and r is not end]
    attached: dict[int, list[PathNode]] = {}
    trailing: list[PathNode] = []
    for child in children:
        node = _build_path(child, by_path, kids)
        first_seq = _int(by_path[child][0].get("seq")) if by_path[child] else 0
        host = next(
            (
                i
                for i, r in enumerate(body)
                if r.get("tool") == "recurse" and _int(r.get("seq")) >= first_seq
            ),
            None,
        )
        if host is None:
            trailing.append(node)
        else:
            attached.setdefault(host, []).append(node)
    steps = [StepNode(r, tuple(attached.get(i, ()))) for i, r in enumerate(body)]
    if trailing:
        steps.append(StepNode({"kind": "sub_paths", "path": path}, tuple(trailing)))
    depth = _int((own[0] if own else {}).get("depth"), default=path.count("/"))
    return PathNode(path=path, depth=depth, steps=tuple(steps), start=start, end=end)


def _summed_usage(records: list[Record]) -> dict[str, Any]:
    return {
        "input_tokens": sum(_int(r.get("input_tokens")) for r in records),
        "output_tokens": sum(_int(r.get("output_tokens")) for r in records),
        "sub_calls": sum(_int(r.get("sub_calls")) for r in records),
    }


def argument_summary(arguments: Mapping[str, Any] | None, limit: int = 160) -> str:
    """Tool arguments as ``key=value`` pairs on one line, cut to ``limit`` characters.

    Examples
    --------
    >>> argument_summary({"view": "context", "where": "user_id = 7", "name": "u"})
    'view=context where=user_id = 7 name=u'
    """
    if not arguments:
        return ""
    parts = [f"{key}={format_value(value, limit)}" for key, value in arguments.items()]
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_value(value: Any, limit: int = 200) -> str:
    """A JSON value as short text: strings as they are, others as compact JSON.

    Examples
    --------
    >>> format_value(["a", "b"])
    '["a","b"]'
    """
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def step_numbers(record: Mapping[str, Any]) -> list[str]:
    """The figures shown beside a step: rows in → out, sub-calls, tokens, seconds.

    Examples
    --------
    >>> step_numbers({"rows_in": 5000, "rows_out": 12, "sub_calls": 2, "seconds": 0.5})
    ['rows 5,000 → 12', '2 sub-calls', '0.50 s']
    """
    parts = []
    rows_in, rows_out = record.get("rows_in"), record.get("rows_out")
    if rows_in is not None and rows_out is not None:
        parts.append(f"rows {_count(rows_in)} → {_count(rows_out)}")
    elif rows_out is not None:
        parts.append(f"→ {_count(rows_out)} rows")
    elif rows_in is not None:
        parts.append(f"{_count(rows_in)} rows in")
    sub_calls = record.get("sub_calls")
    if isinstance(sub_calls, int) and sub_calls:
        parts.append(f"{sub_calls:,} sub-calls")
    tokens = _int(record.get("input_tokens"), default=0) + _int(record.get("output_tokens"), default=0)
    if tokens:
        parts.append(f"{tokens:,} tokens")
    seconds = record.get("seconds")
    if isinstance(seconds, int | float) and seconds:
        parts.append(f"{seconds:.2f} s" if seconds >= 0.01 else "<0.01 s")
    return parts


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"

