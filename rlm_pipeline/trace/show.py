"""Render a trace as a rich tree: run → steps → sub-RLM paths by depth.

Every text taken from the trace goes into :class:`rich.text.Text` objects, never
into markup strings, so model output cannot inject rich markup.  With
``verbose=True`` each model turn also shows its protocol, the model's own text
and the actions read from it, a classify / llm_map / extract step its sample rows
with their answers and error reasons, and an aggregate step its first groups (summary,
rows summarised) and failed calls with their reasons.  The caller prints the
renderable (the library never prints).

Examples
--------
>>> from rich.console import Console
>>> from rlm_pipeline.trace.show import render_tree
>>> tree = render_tree([{"run_id": "r", "seq": 0, "path": "root", "kind": "run_start",
...                      "extra": {"question": "How many?"}}])
>>> console = Console(width=80, record=True, color_system=None)
>>> console.print(tree)  # doctest: +ELLIPSIS
run r...How many?...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from rlm_pipeline.trace.outline import (
    VISIBLE_CONTROLS,
    PathNode,
    RunOutline,
    argument_summary,
    build_outline,
    format_value,
    step_numbers,
)
from rlm_pipeline.trace.records import TraceRecord

__all__ = ["render_tree"]

#: Longest result summary line shown under a step.
RESULT_CHARS = 160



def _visible(label: Text) -> Text:
    """``label`` with control characters shown, not sent to the terminal (same length)."""
    plain = label.plain
    cleaned = plain.translate(VISIBLE_CONTROLS)
    if cleaned != plain:
        label.plain = cleaned
    return label


def render_tree(
    records: Iterable[Mapping[str, Any] | TraceRecord], *, verbose: bool = False
) -> RenderableType:
    """A rich renderable of the trace: one tree per run in the file.

    Parameters
    ----------
    records
        Trace records (dicts as read by :func:`~rlm_pipeline.trace.read_trace`,
        ``RLMResult.trace``, or :class:`~rlm_pipeline.trace.TraceRecord`).
    verbose
        Also show what the model wrote in each turn, the actions read from it,
        the row samples of classify / llm_map / extract steps and the group
        samples of aggregate steps.

    Returns
    -------
    RenderableType
        A :class:`rich.tree.Tree` (or a group of them for several runs); an
        empty trace gives a one-line note.
    """
    runs = build_outline(records)
    if not runs:
        return Text("(empty trace)", style="dim")
    trees = [_run_tree(run, verbose) for run in runs]
    return trees[0] if len(trees) == 1 else Group(*trees)


def _run_tree(run: RunOutline, verbose: bool = False) -> Tree:
    label = Text.assemble(("run ", "bold"), (run.run_id, "bold cyan"))
    if run.engine:
        label.append(f"  engine {run.engine}", style="dim")
    if run.question:
        label.append("\n")
        label.append("Q: ", style="bold")
        label.append(run.question)
    if run.answer is not None:
        label.append("\n")
        label.append("A: ", style="bold green")
        label.append(format_value(run.answer, 300), style="green")
    if run.error:
        label.append("\n")
        label.append("✗ run ended with: " + format_value(run.error, 300), style="bold red")
    label.append("\n")
    label.append(_usage_line(run), style="dim")
    tree = Tree(_visible(label), guide_style="dim")
    _add_steps(tree, run.root, verbose)
    return tree


def _usage_line(run: RunOutline) -> str:
    usage = run.usage
    parts = []
    if "calls" in usage:
        parts.append(f"{usage['calls']} calls")
    tokens = int(usage.get("input_tokens", 0) or 0) + int(usage.get("output_tokens", 0) or 0)
    parts.append(f"{tokens:,} tokens")
    if usage.get("max_prompt_tokens"):
        parts.append(f"largest prompt {int(usage['max_prompt_tokens']):,}")
    if usage.get("cost_usd"):
        parts.append(f"${float(usage['cost_usd']):.4f}")
    parts.append(f"{run.seconds:.2f} s")
    parts.append(f"{run.records} records")
    return " · ".join(parts)


def _add_steps(tree: Tree, node: PathNode, verbose: bool = False) -> None:
    for step in node.steps:
        label = _step_label(step.record, verbose)
        if verbose:
            label = _verbose_label(step.record, label)
        branch = tree.add(_visible(label))
        for child in step.children:
            _add_path(branch, child, verbose)


#: Characters of a model turn's text shown with ``verbose``.
VERBOSE_TEXT_CHARS = 2000


def _verbose_label(record: Mapping[str, Any], label: Text) -> Text:
    extra = record.get("extra") or {}
    if record.get("kind") == "model":
        text = extra.get("text")
        if isinstance(text, str) and text:
            shown = text if len(text) <= VERBOSE_TEXT_CHARS else text[:VERBOSE_TEXT_CHARS] + "…"
            label.append("\n")
            label.append("│ " + shown.replace("\n", "\n│ "), style="italic")
        for action in extra.get("actions") or []:
            if isinstance(action, Mapping):
                label.append("\n")
                label.append("→ " + format_value(action.get("tool"), 60), style="bold")
                label.append(" " + format_value(action.get("arguments"), 300), style="cyan")
        return label
    sample = extra.get("sample")
    if isinstance(sample, Mapping) and sample.get("kind") == "groups":
        return _group_lines(sample, label)
    if isinstance(sample, Mapping):
        answer = str(sample.get("answer_column") or "answer")
        for key in ("rows", "failed"):
            for row in sample.get(key) or []:
                if not isinstance(row, Mapping):
                    continue
                label.append("\n")
                label.append(f"{answer}={format_value(row.get('answer'), 60) or 'null'}",
                             style="bold red" if row.get("error") else "bold")
                if row.get("error"):
                    label.append(f" ({format_value(row.get('error'), 80)})", style="red")
                label.append("  " + format_value(row.get("text"), 120))
    return label


def _group_lines(sample: Mapping[str, Any], label: Text) -> Text:
    """An aggregate step's sample: one line per group, then one per failed call."""
    for group in sample.get("groups") or []:
        if not isinstance(group, Mapping):
            continue
        label.append("\n")
        label.append(f"[{format_value(group.get('group'), 80)}]",
                     style="bold red" if group.get("error") else "bold")
        label.append(f" {format_value(group.get('rows_summarised'), 20)}/"
                     f"{format_value(group.get('rows'), 20)} rows: ")
        label.append(format_value(group.get("summary"), 160) or "null")
        if group.get("error"):
            label.append(f" ({format_value(group.get('error'), 120)})", style="red")
    for call in sample.get("failed_calls") or []:
        if not isinstance(call, Mapping):
            continue
        label.append("\n")
        label.append(f"✗ {format_value(call.get('call'), 20)} of "
                     f"[{format_value(call.get('group'), 80)}], "
                     f"{format_value(call.get('rows'), 20)} rows: "
                     f"{format_value(call.get('error'), 160)}", style="red")
    return label


def _add_path(tree: Tree, node: PathNode, verbose: bool = False) -> None:
    label = Text.assemble(("sub-RLM ", "bold magenta"), (node.path, "magenta"))
    label.append(f"  depth {node.depth} · {_plural(len(node.steps), 'step')}", style="dim")
    if node.error_count:
        label.append(f" · {_plural(node.error_count, 'error')}", style="red")
    if node.answer is not None:
        label.append("  → ", style="dim")
        label.append(format_value(node.answer, 120), style="green")
    branch = tree.add(_visible(label))
    _add_steps(branch, node, verbose)


def _step_label(record: Mapping[str, Any], verbose: bool = False) -> Text:
    kind = str(record.get("kind", "?"))
    if kind == "sub_paths":
        return Text("sub-RLMs", style="magenta")
    error = record.get("error")
    text = Text()
    if kind == "model":
        text.append("model turn", style="dim")
        protocol = (record.get("extra") or {}).get("protocol")
        if verbose and protocol:
            text.append(f" [{protocol}]", style="blue")
    elif kind == "answer":
        text.append("answer ", style="bold green")
        arguments = record.get("arguments") or {}
        text.append(format_value(arguments.get("value", record.get("result_summary")), 200))
    else:
        name = str(record.get("tool") or kind)
        text.append(name, style="bold red" if error else "bold")
        if kind == "error":
            text.append(" (error)", style="red")
        arguments = argument_summary(record.get("arguments"))
        if arguments:
            text.append("  " + arguments, style="cyan")
    text.append(_numbers(record), style="dim")
    if error:
        text.append("\n")
        text.append("✗ " + format_value(error, 300), style="red")
    elif kind != "answer" and record.get("result_summary") and not (verbose and kind == "model"):
        text.append("\n")
        text.append(format_value(record.get("result_summary"), RESULT_CHARS), style="dim")
    return text


def _numbers(record: Mapping[str, Any]) -> str:
    parts = step_numbers(record)
    return ("  · " + " · ".join(parts)) if parts else ""




def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
