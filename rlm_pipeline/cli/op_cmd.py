"""What ``rlm-pipeline filter`` and ``rlm-pipeline extract`` share with ``classify``.

The flags (model, endpoint, limits, cache, estimate, prices, row limits,
error acceptance, validation), the checks made before any model call, the
fan-out into a staged Parquet file, and the failure summary.  The engine's one
fan-out entry (``Engine.map_frame``) does the work, as for ``classify``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlm_pipeline.cli.failures import FailureReport, rerun_command
from rlm_pipeline.errors import InputError

__all__ = [
    "OpRun",
    "add_command",
    "add_common_arguments",
    "check_columns",
    "fan_out",
    "print_estimate",
    "print_failures",
    "print_usage",
    "row_limits",
    "start",
    "validated",
]


@dataclass(frozen=True)
class OpRun:
    """What an operator command has checked before any model call (see :func:`start`)."""

    llm: Any
    budget: Any
    spec: Any
    output: Path
    engine: Any
    #: ``--cascade-model``'s :class:`~rlm_pipeline.ops.cascade.Cascade` (commands that have the flags).
    cascade: Any = None

    def answer(self, meter: Any, tmp: Path) -> tuple[int, Any]:
        """:func:`fan_out` of the spec over the input into ``tmp``: input rows, stats."""
        if self.cascade is not None:
            from rlm_pipeline.cli.classify import write_cascade
            from rlm_pipeline.engines.views import CONTEXT_VIEW
            from rlm_pipeline.ops.progress import RowCounter

            rows = self.engine.count(CONTEXT_VIEW)
            stats = write_cascade(
                self.engine,
                self.spec,
                self.llm,
                meter,
                self.budget,
                tmp,
                self.cascade,
                RowCounter(),
            )
            return rows, stats
        return fan_out(self.engine, self.spec, self.llm, meter, self.budget, tmp)

    @contextmanager
    def staged(self) -> Iterator[Any]:
        """The staged output file (committed by the caller), SIGTERM taken as an interrupt."""
        from rlm_pipeline.cli.classify import _sigterm_as_interrupt
        from rlm_pipeline.cli.outputs import staged_output

        with _sigterm_as_interrupt(), staged_output(self.output) as staged:
            yield staged


def start(args: argparse.Namespace, make_spec: Any, added: Any) -> OpRun | None:
    """The checks every operator command makes before any model call; None after ``--estimate``.

    ``make_spec(row_limits)`` builds the operator's spec from the flags
    (``row_limits``: :func:`row_limits`), ``added(spec)`` names the columns the
    command adds.  Checked: the endpoint and budget flags, the spec's
    arguments, the output path (not inside the input), the text column,
    ``--id-column`` (unique, non-null) and the added columns against the input.
    """
    from rlm_pipeline.cli.cascade_args import (
        cascade_columns,
        cascade_from_args,
        check_cascade_budget,
        print_cascade_estimate,
    )
    from rlm_pipeline.cli.classify import _budget, _check_ids, _llm, _spark_session
    from rlm_pipeline.cli.outputs import check_output_path
    from rlm_pipeline.engines.load import open_engine
    from rlm_pipeline.engines.views import CONTEXT_VIEW

    llm = _llm(args)
    budget = _budget(args, llm)
    cascade = cascade_from_args(args, llm)  # None for commands without --cascade-model
    check_cascade_budget(cascade, budget)
    spec = make_spec(row_limits(args))
    output = check_output_path(args.input, args.output)
    engine = open_engine(args.input, args.engine, spark=_spark_session)
    adds = [*added(spec), *(cascade_columns(spec) if cascade is not None else [])]
    check_columns(list(engine.schema(CONTEXT_VIEW)), spec, args, adds)
    if args.id_column:
        _check_ids(engine, args.id_column)
    if args.estimate:
        if cascade is not None:
            print_cascade_estimate(engine, spec, llm, cascade)
        else:
            print_estimate(engine, spec, llm)
        return None
    return OpRun(llm, budget, spec, output, engine, cascade)


def validated(result: Any, args: argparse.Namespace) -> bool:
    """True when the output passed its checks; else the failed checks on stderr and False."""
    if result.success:
        return True
    for line in result.failed:
        print(f"rlm-pipeline: validation failed: {line}", file=sys.stderr)
    print(f"rlm-pipeline: error: nothing written to {args.output}", file=sys.stderr)
    return False


def backend(args: argparse.Namespace) -> Literal["great_expectations", "builtin"]:
    """The validation backend the flags ask for."""
    return "great_expectations" if args.great_expectations else "builtin"


def add_command(
    subparsers: Any, name: str, summary: str, doc: str | None, run: Any, **common: Any
) -> argparse.ArgumentParser:
    """Register operator command ``name`` with the common flags; the caller adds its own."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(p, **common)
    p.set_defaults(func=run)
    return p


def add_common_arguments(p: argparse.ArgumentParser, *, output_column: bool = False) -> None:
    """The flags every operator command has (the same as ``classify``'s)."""
    p.add_argument("input", metavar="INPUT", help="Parquet file, directory or glob; CSV; JSONL")
    p.add_argument("--column", required=True, help="text column to read")
    p.add_argument("--output", required=True, help="output Parquet file")
    p.add_argument("--engine", choices=("polars", "spark"), default="polars")
    p.add_argument("--batch-size", type=int, default=16, help="rows per call (1 for small models)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    p.add_argument("--model", default=None, help="model name (default gpt-4.1-mini)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument(
        "--max-retries", type=int, default=None, help="retries per model call (default 6)"
    )
    p.add_argument("--cache", default=None, help="response cache file (default as classify)")
    p.add_argument("--no-cache", action="store_true", help="do not cache responses")
    p.add_argument("--estimate", action="store_true", help="print the estimate; call nothing")
    p.add_argument("--max-cost-usd", type=float, default=None, help="stop before this cost")
    p.add_argument(
        "--price-input", type=float, default=None, metavar="USD", help="USD per 1M input tokens"
    )
    p.add_argument(
        "--price-output", type=float, default=None, metavar="USD", help="USD per 1M output tokens"
    )
    p.add_argument("--rpm", type=int, default=None, help="requests per minute, whole job")
    p.add_argument("--tpm", type=int, default=None, help="tokens per minute, whole job")
    p.add_argument("--id-column", default=None, help="column that must be unique and non-null")
    if output_column:
        p.add_argument(
            "--overwrite-column",
            action="store_true",
            help="replace input columns named like the output columns",
        )
    p.add_argument(
        "--max-row-tokens",
        type=int,
        default=None,
        metavar="N",
        help="longest cell sent, in estimated tokens (default 8000)",
    )
    p.add_argument("--truncate", action="store_true", help="cut cells over --max-row-tokens")
    p.add_argument(
        "--great-expectations",
        action="store_true",
        help="validate the output with great-expectations (slower) instead of built-in checks",
    )


def row_limits(args: argparse.Namespace) -> dict[str, Any]:
    """``max_row_tokens`` / ``truncate`` keywords from the flags."""
    extra: dict[str, Any] = {}
    if args.max_row_tokens is not None:
        if args.max_row_tokens < 1:
            raise InputError("--max-row-tokens must be >= 1")
        extra["max_row_tokens"] = args.max_row_tokens
    if args.truncate:
        extra["truncate"] = True
    return extra


def check_columns(
    columns: list[str], spec: Any, args: argparse.Namespace, added: list[str]
) -> None:
    """The text column, --id-column, and the columns the command adds, against the input."""
    if spec.column not in columns:
        msg = f"column {spec.column!r} not found; columns: {columns}"
        raise InputError(msg)
    if args.id_column is not None and args.id_column not in columns:
        msg = f"--id-column {args.id_column!r} not found; columns: {columns}"
        raise InputError(msg)
    taken = [c for c in added if c in columns]
    if taken and not getattr(args, "overwrite_column", False):
        names = " and ".join(repr(c) for c in taken)
        hint = (
            "pass --overwrite-column to replace it"
            if hasattr(args, "overwrite_column")
            else ("rename it first")
        )
        msg = f"column {names} already in the input; {hint}"
        raise InputError(msg)


def print_estimate(engine: Any, spec: Any, llm: Any) -> None:
    """What the run would send and cost (no model call)."""
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.ops.estimate import estimate_texts

    est = estimate_texts(engine.column_texts(engine.frame(CONTEXT_VIEW), spec.column), spec, llm)
    print(f"rows            {est.rows:>12,}")
    print(f"distinct texts  {est.distinct_texts:>12,}")
    print(f"cached texts    {est.cached:>12,}")
    print(f"calls           {est.calls:>12,}")
    print(f"input tokens    {est.input_tokens:>12,}")
    print(f"output tokens   {est.output_tokens:>12,}")
    print(f"rows too long   {est.too_long:>12,}   (over {spec.max_row_tokens:,} tokens)")
    if est.cost_usd is not None:
        print(f"cost (USD)      {est.cost_usd:>12.4f}   ({llm.model}; no model was called)")
    else:
        print(f"cost: unknown (no price for model {llm.model}; pass --price-input/--price-output)")


def fan_out(
    engine: Any, spec: Any, llm: Any, meter: Any, budget: Any, tmp: Path
) -> tuple[int, Any]:
    """Run ``spec`` over the engine's ``context`` into the Parquet file ``tmp``: input rows, stats."""
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.ops.fanout import FANOUT
    from rlm_pipeline.ops.progress import RowCounter

    input_rows = engine.count(CONTEXT_VIEW)
    _, stats = engine.map_frame(
        engine.frame(CONTEXT_VIEW),
        spec,
        llm,
        fanout=FANOUT,
        meter=meter,
        budget=budget,
        progress=RowCounter(),
        write_to=tmp,
    )
    return input_rows, stats


def print_failures(
    failures: FailureReport, args: argparse.Namespace, noun: str, *, refused: str | None
) -> None:
    """The per-reason summary on stderr; with ``refused``, why nothing was written and how to re-run."""
    err = sys.stderr
    prefix = "" if refused else "warning: "
    print(
        f"rlm-pipeline: {prefix}{failures.failed:,} of {failures.rows:,} rows have no {noun}:",
        file=err,
    )
    for line in failures.lines():
        print(line, file=err)
    if refused is None:
        return
    argv = getattr(args, "argv", None)
    print(
        "rlm-pipeline: run the same command again to re-ask only the failed rows "
        "(answered rows are cached):",
        file=err,
    )
    if argv is not None:
        print(f"  {rerun_command(argv)}", file=err)
    print(f"rlm-pipeline: error: {refused}; nothing written to {args.output}", file=err)


def print_usage(meter: Any) -> None:
    """One line: calls, cached calls, tokens and cost of the run."""
    usage = meter.snapshot()
    print(
        f"usage: {usage.calls:,} calls, {usage.cached_calls:,} cached, "
        f"{usage.input_tokens:,} input + {usage.output_tokens:,} output tokens, "
        f"${usage.cost_usd:.4f}"
    )
