"""Render a trace as a rich tree: run → steps → sub-RLM paths by depth.

Every text taken from the trace goes into :class:`rich.text.Text` objects, never
into markup strings, so model output cannot inject rich markup.  The caller
prints the renderable (the library never prints).

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


def render_tree(records: Iterable[Mapping[str, Any] | TraceRecord]) -> RenderableType:
    """A rich renderable of the trace: one tree per run in the file.

    Parameters
    ----------
    records
        Trace records (dicts as read by :func:`~rlm_pipeline.trace.read_trace`,
        ``RLMResult.trace``, or :class:`~rlm_pipeline.trace.TraceRecord`).

    Returns
    -------
    RenderableType
        A :class:`rich.tree.Tree` (or a group of them for several runs); an
        empty trace gives a one-line note.
    """
    runs = build_outline(records)
    if not runs:
        return Text("(empty trace)", style="dim")
    trees = [_run_tree(run) for run in runs]
    return trees[0] if len(trees) == 1 else Group(*trees)


def _run_tree(run: RunOutline) -> Tree:
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
    tree = Tree(label, guide_style="dim")
    _add_steps(tree, run.root)
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


def _add_steps(tree: Tree, node: PathNode) -> None:
    for step in node.steps:
        branch = tree.add(_step_label(step.record))
        for child in step.children:
            _add_path(branch, child)


def _add_path(tree: Tree, node: PathNode) -> None:
    label = Text.assemble(("sub-RLM ", "bold magenta"), (node.path, "magenta"))
    label.append(f"  depth {node.depth} · {_plural(len(node.steps), 'step')}", style="dim")
    if node.error_count:
        label.append(f" · {_plural(node.error_count, 'error')}", style="red")
    if node.answer is not None:
        label.append("  → ", style="dim")
        label.append(format_value(node.answer, 120), style="green")
    branch = tree.add(label)
    _add_steps(branch, node)


def _step_label(record: Mapping[str, Any]) -> Text:
    kind = str(record.get("kind", "?"))
    if kind == "sub_paths":
        return Text("sub-RLMs", style="magenta")
    error = record.get("error")
    text = Text()
    if kind == "model":
        text.append("model turn", style="dim")
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
    elif kind != "answer" and record.get("result_summary"):
        text.append("\n")
        text.append(format_value(record.get("result_summary"), RESULT_CHARS), style="dim")
    return text


def _numbers(record: Mapping[str, Any]) -> str:
    parts = step_numbers(record)
    return ("  · " + " · ".join(parts)) if parts else ""




def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
