"""Entry point of ``rlm-pipeline``: argument parsing and error-to-exit-code mapping.

Each command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``.  Errors print one line on stderr (a traceback only with
``--debug``): exit 2 for bad arguments or input, 1 for model/runtime failures.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from rlm_pipeline.cli.entry import exit_code
from rlm_pipeline.errors import RLMPipelineError

COMMANDS = ("classify", "filter_cmd", "extract_cmd", "aggregate", "ask", "demo", "sim_server", "trace_cmd", "cache_cmd")


class _Parser(argparse.ArgumentParser):
    """An argument parser that remembers its last error (``ask --json`` reports it as JSON)."""

    last_error: str | None = None

    def error(self, message: str) -> NoReturn:
        _Parser.last_error = message
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command."""
    parser = _Parser(
        prog="rlm-pipeline",
        description="Recursive Language Models over dataframes and Spark.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rlm_pipeline.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(raw)
    except SystemExit as exc:
        if exc.code == 2 and raw[:1] == ["ask"] and "--json" in raw:
            _json_usage_error(_Parser.last_error or "invalid arguments")
        raise
    args.argv = raw  # the command as given, for "run it again" hints
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RLMPipelineError as exc:
        return _fail(args, exc, exit_code(exc))
    except Exception as exc:
        return _fail(args, exc, 1, unexpected=True)


def _json_usage_error(message: str) -> None:
    """``ask --json`` with bad arguments still prints its one JSON object."""
    import json

    from rlm_pipeline.llm.usage import Usage

    error = {"kind": "input_error", "message": message}
    usage = Usage().to_dict()
    print(json.dumps({"error": error, "partial": None, "usage": usage, "trace_path": None}))


def _fail(args: argparse.Namespace, exc: BaseException, code: int, unexpected: bool = False) -> int:
    if args.debug:
        traceback.print_exc()
    prefix = "internal error" if unexpected else "error"
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hint = " (run with --debug for details)" if unexpected and not args.debug else ""
    print(f"rlm-pipeline: {prefix}: {first_line}{hint}", file=sys.stderr)
    return code
