"""``rlm-pipeline extract``: typed fields read off a text column, validated, written as Parquet.

One column per field (null when the text does not state it) and
``extract_error`` (null, or why the row has no values).  Fields are given as
``--fields 'amount:number, order_id:string, status:open|closed'`` (a type with
``|`` is an enum) or as a JSON object.  Types: string, integer, number,
boolean, date (YYYY-MM-DD).  A value of the wrong type is a ``parse_error``
for its row, never a cast.

The flags, the cache, the staged output and the failure rules are those of
``rlm-pipeline classify``: rows that failed for a transient reason
(api_error, budget_exceeded) make the command write nothing and exit 1 with
the command that re-asks only them, unless --allow-errors or --max-error-rate R;
an output where every non-blank row failed is refused the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.op_cmd import (
    add_command,
    backend,
    print_failures,
    print_usage,
    start,
    validated,
)
from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.stats import EMPTY_INPUT

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``extract`` command."""
    p = add_command(
        subparsers,
        "extract",
        "read typed fields (numbers, dates, enums, ...) out of every row of a text column",
        __doc__,
        run, output_column=True,
    )
    p.add_argument(
        "--fields",
        required=True,
        help="name:type, ... (types string, integer, number, boolean, date, a|b|c) "
        "or a JSON object",
    )
    p.add_argument("--instructions", default=None, help="extra guidance for the model")
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="write the output even if rows failed for a transient reason (exit 0)",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=None,
        metavar="R",
        help="write the output if at most this fraction (0-1) of rows failed transiently",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``extract``; return the exit code."""
    with known_warnings_filtered():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rlm_pipeline.cli.failures import FailureReport
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.extract_op import ExtractSpec
    from rlm_pipeline.ops.spec_base import output_names
    from rlm_pipeline.validate_semantic import validate_extract

    if args.max_error_rate is not None and not 0 <= args.max_error_rate <= 1:
        raise InputError("--max-error-rate must be between 0 and 1")
    max_error_rate = 1.0 if args.allow_errors else args.max_error_rate

    def make_spec(limits: dict[str, Any]) -> ExtractSpec:
        return ExtractSpec(
            column=args.column,
            fields=args.fields,
            instructions=args.instructions,
            batch_size=args.batch_size,
            **limits,
        )

    run = start(args, make_spec, output_names)
    if run is None:  # --estimate printed
        return 0
    meter = UsageMeter()
    with run.staged() as staged:
        input_rows, stats = run.answer(meter, staged.tmp)
        result = validate_extract(
            _scan(staged.tmp),
            input_rows=input_rows,
            fields=dict(run.spec.fields),
            id_column=args.id_column,
            backend=backend(args),
        )
        if not validated(result, args):
            return 1
        failures = FailureReport(rows=stats.rows, errors=dict(stats.errors))
        if failures.all_failed and not args.allow_errors:
            print_failures(
                failures,
                args,
                "values",
                refused="no row got values (or write the output anyway with --allow-errors)",
            )
            return 1
        if not failures.accepted(max_error_rate):
            print_failures(
                failures,
                args,
                "values",
                refused=(
                    f"{failures.transient:,} rows failed for a transient reason (accept the partial "
                    "output with --allow-errors or --max-error-rate R)"
                ),
            )
            return 1
        staged.commit()
    print(f"wrote {stats.rows:,} rows to {Path(args.output)}")
    for kind, count in sorted(stats.errors.items()):
        print(f"  no values ({kind}): {count:,}")
    print_usage(meter)
    if failures.failed > failures.errors.get(EMPTY_INPUT, 0):
        print_failures(failures, args, "values", refused=None)
    return 0


def _scan(path: Path) -> Any:
    import polars as pl

    return pl.scan_parquet(path)
