"""Two runs of one question side by side: answers, usage, and their steps aligned.

For comparing models, protocols or prompt versions on the same question.  The
root path's steps of each run (model turns left out: they are counted) are
aligned with :class:`difflib.SequenceMatcher` on the tool names, so a step one
run took and the other did not shows as a gap on one side.

Everything taken from the traces goes into :class:`rich.text.Text` cells (never
markup), with control characters shown as visible ones.

Examples
--------
>>> from rlm_pipeline.trace.diff import compare
>>> a = [{"run_id": "a", "seq": 0, "path": "root", "kind": "run_start",
...       "extra": {"question": "How many?"}},
...      {"run_id": "a", "seq": 1, "path": "root", "kind": "tool", "tool": "peek"},
...      {"run_id": "a", "seq": 2, "path": "root", "kind": "answer", "tool": "answer",
...       "arguments": {"value": 3}}]
>>> b = [dict(r, run_id="b") for r in a[:1]] + [
...      {"run_id": "b", "seq": 1, "path": "root", "kind": "answer", "tool": "answer",
...       "arguments": {"value": 4}}]
>>> diff = compare(a, b)
>>> diff.same_question, [(r.mark, r.left, r.right) for r in diff.steps]
(True, [('-', 'peek', ''), ('~', 'answer 3', 'answer 4')])
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rlm_pipeline.errors import InputError
from rlm_pipeline.trace.figures import cost_by_model
from rlm_pipeline.trace.outline import (
    VISIBLE_CONTROLS,
    RunOutline,
    argument_summary,
    build_outline,
    format_value,
)
from rlm_pipeline.trace.records import TraceRecord

__all__ = ["StepPair", "TraceDiff", "compare", "render_diff"]

Record = Mapping[str, Any]



@dataclass(frozen=True)
class StepPair:
    """One line of the step comparison.

    ``mark`` is ``"="`` (same tool, same arguments), ``"~"`` (same tool, other
    arguments or result), ``"-"`` (only in A) or ``"+"`` (only in B).
    """

    mark: str
    left: str
    right: str
    left_numbers: str = ""
    right_numbers: str = ""


@dataclass(frozen=True)
class TraceDiff:
    """Two runs compared: header facts (name → (A, B)) and the aligned steps."""

    a: RunOutline
    b: RunOutline
    facts: tuple[tuple[str, str, str], ...]
    steps: tuple[StepPair, ...]

    @property
    def same_question(self) -> bool:
        """Whether both runs answer the same question."""
        return (self.a.question or "") == (self.b.question or "")


def compare(
    a: Iterable[Record | TraceRecord], b: Iterable[Record | TraceRecord]
) -> TraceDiff:
    """Compare the first run of trace ``a`` with the first run of trace ``b``.

    Raises
    ------
    InputError
        A trace holds no run.
    """
    run_a, run_b = _first_run(a, "A"), _first_run(b, "B")
    return TraceDiff(run_a, run_b, _facts(run_a, run_b), _align(run_a, run_b))


def render_diff(diff: TraceDiff) -> RenderableType:
    """The comparison as rich tables: facts first, then the steps side by side."""
    facts = Table(show_header=True, header_style="bold", expand=False)
    facts.add_column("")
    facts.add_column(_visible(f"A  {diff.a.run_id}"), overflow="fold")
    facts.add_column(_visible(f"B  {diff.b.run_id}"), overflow="fold")
    for name, left, right in diff.facts:
        style = "" if left == right else "yellow"
        facts.add_row(Text(name, style="bold"), _cell(left, style), _cell(right, style))
    steps = Table(show_header=True, header_style="bold", expand=False)
    steps.add_column("", width=1)
    steps.add_column("A steps", overflow="fold", ratio=1)
    steps.add_column("", style="dim", no_wrap=True)
    steps.add_column("B steps", overflow="fold", ratio=1)
    steps.add_column("", style="dim", no_wrap=True)
    styles = {"=": "", "~": "yellow", "-": "red", "+": "green"}
    for pair in diff.steps:
        style = styles[pair.mark]
        steps.add_row(
            Text(pair.mark, style=style),
            _cell(pair.left, style),
            _cell(pair.left_numbers),
            _cell(pair.right, style),
            _cell(pair.right_numbers),
        )
    parts: list[RenderableType] = []
    if not diff.same_question:
        parts.append(Text("note: the two runs answer different questions", style="bold yellow"))
    parts += [facts, steps]
    return Group(*parts)


def _first_run(records: Iterable[Record | TraceRecord], side: str) -> RunOutline:
    runs = build_outline(records)
    if not runs:
        msg = f"trace {side} holds no run"
        raise InputError(msg)
    return runs[0]


def _facts(a: RunOutline, b: RunOutline) -> tuple[tuple[str, str, str], ...]:
    rows: list[tuple[str, str, str]] = []

    def add(name: str, left: Any, right: Any) -> None:
        rows.append((name, _text(left), _text(right)))

    add("question", a.question, b.question)
    add("answer", format_value(a.answer, 300), format_value(b.answer, 300))
    add("protocol", _protocols(a), _protocols(b))
    add("models", _models(a), _models(b))
    for key, name in (("calls", "model calls"), ("input_tokens", "tokens in"),
                      ("output_tokens", "tokens out"), ("max_prompt_tokens", "largest prompt")):
        add(name, _usage_number(a, key), _usage_number(b, key))
    add("cost", _cost(a), _cost(b))
    add("seconds", f"{a.seconds:.2f}", f"{b.seconds:.2f}")
    add("steps", str(_step_count(a)), str(_step_count(b)))
    add("errors", str(_errors(a)), str(_errors(b)))
    return tuple(rows)


def _align(a: RunOutline, b: RunOutline) -> tuple[StepPair, ...]:
    left, right = _root_steps(a), _root_steps(b)
    matcher = difflib.SequenceMatcher(
        a=[s[0] for s in left], b=[s[0] for s in right], autojunk=False
    )
    pairs: list[StepPair] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for same_a, same_b in zip(left[i1:i2], right[j1:j2], strict=True):
                mark = "=" if same_a[1] == same_b[1] else "~"
                pairs.append(StepPair(mark, same_a[1], same_b[1], same_a[2], same_b[2]))
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            x = left[i1 + k] if i1 + k < i2 else None
            y = right[j1 + k] if j1 + k < j2 else None
            if x is not None and y is not None:
                mark = "~"
            else:
                mark = "-" if y is None else "+"
            pairs.append(StepPair(mark, x[1] if x else "", y[1] if y else "",
                                  x[2] if x else "", y[2] if y else ""))
    return tuple(pairs)


def _root_steps(run: RunOutline) -> list[tuple[str, str, str]]:
    """(tool name, what it did, its numbers) for each non-model step of the root path."""
    out = []
    for step in run.root.steps:
        record = step.record
        kind = str(record.get("kind"))
        if kind in ("model", "sub_paths"):
            continue
        name = str(record.get("tool") or kind)
        if kind == "answer":
            value = (record.get("arguments") or {}).get("value", record.get("result_summary"))
            what = f"answer {format_value(value, 200)}"
        else:
            what = name + (" (error)" if kind == "error" else "")
            arguments = argument_summary(record.get("arguments"), limit=200)
            if arguments:
                what += f"  {arguments}"
            if record.get("error"):
                what += f"\n✗ {format_value(record.get('error'), 200)}"
        numbers = []
        if isinstance(record.get("rows_out"), int):
            numbers.append(f"→{record['rows_out']:,}")
        tokens = _int(record.get("input_tokens")) + _int(record.get("output_tokens"))
        if tokens:
            numbers.append(f"{tokens:,} tok")
        if step.children:
            numbers.append(f"{len(step.children)} sub-runs")
        key = name + (" (error)" if kind == "error" else "")  # a failed try aligns apart
        out.append((key, what, " ".join(numbers)))
    return out


def _protocols(run: RunOutline) -> str:
    seen: list[str] = []
    for record in run.all_records:
        if record.get("kind") == "model" and _int(record.get("depth")) == 0:
            protocol = (record.get("extra") or {}).get("protocol")
            if protocol and (not seen or seen[-1] != protocol):
                seen.append(str(protocol))
    return " → ".join(seen)


def _models(run: RunOutline) -> str:
    costs = cost_by_model(run.all_records)
    return ", ".join(f"{c.role} {c.model}" for c in costs if c.model)


def _cost(run: RunOutline) -> str:
    costs = cost_by_model(run.all_records)
    if costs and all(c.cost_usd is not None for c in costs):
        return f"${sum(c.cost_usd or 0.0 for c in costs):.4f}"
    if "cost_usd" in run.usage and run.usage.get("cost_usd"):
        return f"${float(run.usage['cost_usd']):.4f}"
    return "no price"


def _usage_number(run: RunOutline, key: str) -> str:
    value = run.usage.get(key)
    return f"{value:,}" if isinstance(value, int) else ""


def _step_count(run: RunOutline) -> int:
    return sum(1 for s in run.root.steps if s.record.get("kind") in ("tool", "error", "answer"))


def _errors(run: RunOutline) -> int:
    return sum(1 for r in run.all_records if r.get("error"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _visible(text: str) -> str:
    return text.translate(VISIBLE_CONTROLS)


def _cell(text: str, style: str = "") -> Text:
    return Text(_visible(text), style=style)
