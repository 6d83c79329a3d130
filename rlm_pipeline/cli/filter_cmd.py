"""``rlm-pipeline filter``: the rows where a condition holds, as judged by the model, as Parquet.

Every row is kept (the condition holds), dropped (it does not, or the text is
blank) or failed (no trustworthy answer).  What happens to failed rows is
``--on-error``: ``raise`` (default) writes nothing and exits 1 with the
per-reason counts and the command that re-asks only those rows (answered rows
are cached); ``keep`` writes them too, with the reason in ``filter_error``;
``drop`` leaves them out.  The counts are printed either way.  A run where no
non-blank row got an answer writes nothing and exits 1 whatever ``--on-error``
says, unless ``--allow-errors``.

The other flags, the cache and the staged output are those of
``rlm-pipeline classify``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.op_cmd import (
    add_common_arguments,
    check_columns,
    fan_out,
    print_estimate,
    print_failures,
    print_usage,
    row_limits,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``filter`` command."""
    p = subparsers.add_parser(
        "filter",
        help="keep the rows whose text meets a condition in plain words",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(p)
    p.add_argument("--condition", required=True, help="the condition, e.g. 'asks for a refund'")
    p.add_argument(
        "--on-error",
        choices=("raise", "keep", "drop"),
        default="raise",
        help="rows without an answer: refuse the run (default), keep or drop them",
    )
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="with --on-error keep|drop: write the output even when no row got an answer",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``filter``; return the exit code."""
    with known_warnings_filtered():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rlm_pipeline.cli.classify import (
        _budget,
        _check_ids,
        _llm,
        _sigterm_as_interrupt,
        _spark_session,
    )
    from rlm_pipeline.cli.failures import FailureReport
    from rlm_pipeline.cli.outputs import check_output_path, staged_output
    from rlm_pipeline.engines.load import open_engine
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.filter_op import FilterSpec
    from rlm_pipeline.ops.semantic import FilterStats

    llm = _llm(args)
    budget = _budget(args, llm)
    spec = FilterSpec(
        column=args.column, condition=args.condition, batch_size=args.batch_size, **row_limits(args)
    )
    output = check_output_path(args.input, args.output)
    engine = open_engine(args.input, args.engine, spark=_spark_session)
    added = [spec.output_column, spec.error_column]
    check_columns(list(engine.schema(CONTEXT_VIEW)), spec, args, added)
    if args.id_column:
        _check_ids(engine, args.id_column)
    if args.estimate:
        print_estimate(engine, spec, llm)
        return 0

    meter = UsageMeter()
    with (
        _sigterm_as_interrupt(),
        staged_output(output) as answers,
        staged_output(output) as staged,
    ):
        _, op_stats = fan_out(engine, spec, llm, meter, budget, answers.tmp)
        stats = FilterStats.of(op_stats, args.on_error)
        failures = FailureReport(rows=stats.rows, errors=dict(stats.errors))
        if stats.failed and args.on_error == "raise":
            print_failures(
                failures,
                args,
                "answer",
                refused=(f"{stats.failed:,} rows have no answer (or pass --on-error keep or drop)"),
            )
            return 1
        if stats.failed and stats.failed >= stats.rows - stats.blank and not args.allow_errors:
            print_failures(
                failures,
                args,
                "answer",
                refused="no row got an answer (or write the output anyway with --allow-errors)",
            )
            return 1
        _write_rows(answers.tmp, staged.tmp, spec, args.on_error)
        from rlm_pipeline.validate_semantic import validate_filter

        result = validate_filter(
            _scan(staged.tmp),
            stats,
            backend="great_expectations" if args.great_expectations else "builtin",
        )
        if not result.success:
            for line in result.failed:
                print(f"rlm-pipeline: validation failed: {line}", file=sys.stderr)
            print(f"rlm-pipeline: error: nothing written to {args.output}", file=sys.stderr)
            return 1
        staged.commit()
    print(f"wrote {stats.returned:,} of {stats.rows:,} rows to {Path(args.output)}")
    print(f"  kept: {stats.kept:,}")
    print(f"  dropped: {stats.dropped:,} (blank: {stats.blank:,})")
    print(f"  failed: {stats.failed:,} (on-error {args.on_error})")
    print_usage(meter)
    if stats.failed:
        print_failures(failures, args, "answer", refused=None)
    return 0


def _scan(path: Path) -> Any:
    import polars as pl

    return pl.scan_parquet(path)


def _write_rows(answers: Path, out: Path, spec: Any, on_error: str) -> None:
    """The kept rows (and the failed ones with ``keep``) of the answers file, into ``out``."""
    import polars as pl

    value, error = pl.col(spec.output_column), pl.col(spec.error_column)
    keep = value.fill_null(False)
    drop = [spec.output_column, spec.error_column]
    if on_error == "keep":
        keep = keep | (error.is_not_null() & ~error.str.starts_with("empty_input"))
        drop = [spec.output_column]
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    _scan(answers).filter(keep).drop(drop).sink_parquet(out)
