"""``rlm-pipeline filter``: the rows where a condition holds, as judged by the model, as Parquet.

Every row is kept (the condition holds), dropped (it does not, or the text is
blank) or failed (no trustworthy answer).  What happens to failed rows is
``--on-error``: ``raise`` (default) writes nothing and exits 1 with the
per-reason counts and the command that re-asks only those rows (answered rows
are cached); ``keep`` writes them too, with the reason in ``filter_error``;
``drop`` leaves them out.  The counts are printed either way.  A run where no
non-blank row got an answer writes nothing and exits 1 whatever ``--on-error``
says, unless ``--allow-errors``.

With ``--cascade-model M`` a cheap proxy model judges every row first and
only its uncertain rows go to ``--model`` (the ``--cascade-*`` flags, as for
``rlm-pipeline classify``); the kept rows then carry ``filter_source``
(``proxy`` / ``oracle``) and ``filter_confidence``, and the summary prints the
cascade's report.

The other flags, the cache and the staged output are those of
``rlm-pipeline classify``.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.cascade_args import add_cascade_arguments
from rlm_pipeline.cli.op_cmd import (
    add_command,
    backend,
    print_failures,
    print_usage,
    start,
    validated,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``filter`` command."""
    p = add_command(
        subparsers,
        "filter",
        "keep the rows whose text meets a condition in plain words",
        __doc__,
        run,
    )
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
    add_cascade_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run ``filter``; return the exit code."""
    with known_warnings_filtered():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rlm_pipeline.cli.failures import FailureReport
    from rlm_pipeline.cli.outputs import staged_output
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.filter_op import FilterSpec
    from rlm_pipeline.ops.semantic import FilterStats
    from rlm_pipeline.validate_semantic import validate_filter

    def make_spec(limits: dict[str, Any]) -> FilterSpec:
        return FilterSpec(
            column=args.column, condition=args.condition, batch_size=args.batch_size, **limits
        )

    run = start(args, make_spec, lambda spec: [spec.output_column, spec.error_column])
    if run is None:  # --estimate printed
        return 0
    spec = run.spec
    meter = UsageMeter()
    with run.staged() as answers, staged_output(run.output) as staged:
        _, op_stats = run.answer(meter, answers.tmp)
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
        if not validated(validate_filter(_scan(staged.tmp), stats, backend=backend(args)), args):
            return 1
        staged.commit()
    print(f"wrote {stats.returned:,} of {stats.rows:,} rows to {Path(args.output)}")
    print(f"  kept: {stats.kept:,}")
    print(f"  dropped: {stats.dropped:,} (blank: {stats.blank:,})")
    print(f"  failed: {stats.failed:,} (on-error {args.on_error})")
    print_usage(meter)
    if op_stats.cascade is not None:
        print(op_stats.cascade.summary())
    if stats.failed:
        print_failures(failures, args, "answer", refused=None)
    return 0


def _scan(path: Path) -> Any:
    import polars as pl

    return pl.scan_parquet(path)


def _write_rows(answers: Path, out: Path, spec: Any, on_error: str) -> None:
    """The kept rows (and the failed ones with ``keep``) of the answers file, into ``out``.

    The keep/drop is the engine's (:meth:`~rlm_pipeline.engines.base.Engine.rows_where`),
    streamed from one Parquet file to the other.
    """
    from rlm_pipeline.engines.load import engine_for

    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    kept = engine_for(answers, "polars").rows_where(
        _scan(answers),
        spec.output_column,
        failed=spec.error_column,
        failed_rows="keep" if on_error == "keep" else "drop",
    )
    kept.sink_parquet(out)
