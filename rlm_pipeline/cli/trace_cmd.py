"""``rlm-pipeline trace show FILE.jsonl [--html OUT.html]``.

Prints the trace as a tree in the terminal; with ``--html`` also writes one
self-contained page a person can read in any browser.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from rlm_pipeline.trace.html import write_html
from rlm_pipeline.trace.show import render_tree
from rlm_pipeline.trace.writer import read_trace

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register ``trace`` (with its ``show`` action) on the top-level sub-parsers."""
    parser = subparsers.add_parser(
        "trace",
        help="show a run's JSONL trace",
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
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Show the trace; exit 0, or raise ``InputError`` for a missing or corrupt file."""
    records = read_trace(args.file)
    console = Console(soft_wrap=False)
    console.print(render_tree(records))
    if args.html:
        path = write_html(records, args.html)
        console.print(f"wrote {path}", markup=False, highlight=False)
    return 0
