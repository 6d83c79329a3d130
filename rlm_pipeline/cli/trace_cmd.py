"""``rlm-pipeline trace show FILE.jsonl [--verbose] [--html OUT.html]`` and
``rlm-pipeline trace diff A.jsonl B.jsonl``.

``show`` prints the trace as a tree in the terminal (``--verbose``: with the
model's own text, the actions read from it and the row samples); with
``--html`` it also writes one self-contained page a person can read in any
browser.  ``diff`` puts two runs of one question side by side: answers,
protocols, models, usage, and their steps aligned.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from rlm_pipeline.trace.diff import compare, render_diff
from rlm_pipeline.trace.html import write_html
from rlm_pipeline.trace.show import render_tree
from rlm_pipeline.trace.writer import read_trace

__all__ = ["add_parser", "run", "run_diff"]


def add_parser(subparsers: Any) -> None:
    """Register ``trace`` (with its ``show`` and ``diff`` actions) on the top-level sub-parsers."""
    parser = subparsers.add_parser(
        "trace",
        help="show a run's JSONL trace, or compare two",
        description="Work with JSONL traces written by `ask --trace` or RLM.run.",
    )
    actions = parser.add_subparsers(dest="trace_action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print a trace as a tree (and optionally write an HTML page)",
        description="Print a trace as a tree: run → steps → sub-RLM paths.",
    )
    show.add_argument("file", metavar="FILE.jsonl", help="trace file to show")
    show.add_argument(
        "--html", metavar="OUT.html", default=None, help="also write a self-contained HTML page"
    )
    show.add_argument(
        "-v", "--verbose", action="store_true",
        help="also show what the model wrote each turn, its actions, and row samples",
    )
    show.set_defaults(func=run)
    diff = actions.add_parser(
        "diff",
        help="two runs of one question side by side (steps, answers, tokens)",
        description="Compare the first run of A.jsonl with the first run of B.jsonl: answer, "
        "protocol, models, calls, tokens, cost, seconds, and the root steps aligned "
        "(= same, ~ changed, - only in A, + only in B).",
    )
    diff.add_argument("a", metavar="A.jsonl", help="first trace")
    diff.add_argument("b", metavar="B.jsonl", help="second trace")
    diff.set_defaults(func=run_diff)


def run(args: argparse.Namespace) -> int:
    """Show the trace; exit 0, or raise ``InputError`` for a missing or corrupt file."""
    records = read_trace(args.file)
    console = Console(soft_wrap=False)
    console.print(render_tree(records, verbose=bool(getattr(args, "verbose", False))))
    if args.html:
        path = write_html(records, args.html)
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def run_diff(args: argparse.Namespace) -> int:
    """Print the comparison of two traces; exit 0 (``InputError`` for a bad file)."""
    diff = compare(read_trace(args.a), read_trace(args.b))
    Console(soft_wrap=False).print(render_diff(diff))
    return 0
