"""``rlm-pipeline classify``: label a column of a file, validate, write Parquet atomically.

Responses are cached by default in a per-user file so a stopped or failed run
resumes where it ended: ``$RLM_PIPELINE_CACHE`` if set, else
``~/.cache/rlm_pipeline/responses.sqlite``; ``--cache PATH`` picks another
file and ``--no-cache`` turns caching off.  The output is written to a
temporary file next to ``--output`` and renamed into place, so a crash or a
Ctrl-C / SIGTERM never leaves a half-written file; answered rows are already
in the cache, so running the same command again only sends what is missing.

Checked before any model call (exit 2, nothing sent, nothing written): the
labels (exactly one of --labels, --labels-file, --label), the prices
(--max-cost-usd needs a priced model: built in, or --price-input/--price-output),
--output (not the input, not inside an input directory or glob, not a
directory), the text column, --id-column (present, unique, no nulls) and the
output columns (not already in the input unless --overwrite-column).

After the run, rows without a label are summed up by reason on stderr.  If any
failed for a transient reason (api_error, budget_exceeded) nothing is written
and the exit code is 1, with the command that re-asks only those rows; accept
the partial output with --allow-errors or --max-error-rate R.  If every
non-blank row failed, whatever the reason, nothing is written and the exit
code is 1 unless --allow-errors.  When the first calls all come back unusable
(not JSON, labels outside the set, rows not answered) the run stops: exit 1.  A systemic
failure (endpoint down, bad key, unknown model) stops the run at once: exit 1,
one line, nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.cascade_args import (
    add_cascade_arguments,
    cascade_columns,
    cascade_from_args,
    check_cascade_budget,
    print_cascade_estimate,
)
from rlm_pipeline.cli.failures import FailureReport, rerun_command
from rlm_pipeline.cli.labels import add_label_arguments, labels_from_args
from rlm_pipeline.cli.outputs import check_output_path, staged_output
from rlm_pipeline.errors import InputError, RLMPipelineError
from rlm_pipeline.ops.stats import EMPTY_INPUT

DEFAULT_CACHE = os.path.join("~", ".cache", "rlm_pipeline", "responses.sqlite")

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register the ``classify`` command."""
    p = subparsers.add_parser(
        "classify",
        help="label every row of a text column with one of a few labels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="Parquet file, directory or glob; CSV; JSONL")
    p.add_argument("--column", required=True, help="text column to classify")
    add_label_arguments(p)
    p.add_argument("--output", required=True, help="output Parquet file")
    p.add_argument("--engine", choices=("polars", "spark"), default="polars")
    p.add_argument("--batch-size", type=int, default=16, help="rows per call (1 for small models)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    p.add_argument("--model", default=None, help="model name (default gpt-4.1-mini)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument(
        "--max-retries", type=int, default=None, help="retries per model call (default 6)"
    )
    p.add_argument("--cache", default=None, help="response cache file (see above)")
    p.add_argument("--no-cache", action="store_true", help="do not cache responses")
    p.add_argument("--instructions", default=None, help="extra guidance for the model")
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
    p.add_argument("--output-column", default="label", help="name of the label column")
    p.add_argument(
        "--overwrite-column",
        action="store_true",
        help="replace --output-column (and its _error column) when the input already has it",
    )
    p.add_argument(
        "--max-row-tokens",
        type=int,
        default=None,
        metavar="N",
        help="longest cell sent, in estimated tokens (default 8000); longer: input_too_long",
    )
    p.add_argument(
        "--truncate", action="store_true", help="cut cells over --max-row-tokens instead"
    )
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
    p.add_argument(
        "--great-expectations",
        action="store_true",
        help="validate the output with great-expectations (slower) instead of built-in checks",
    )
    add_cascade_arguments(p)
    p.set_defaults(func=run)


def _cache_path(args: argparse.Namespace) -> str | None:
    if args.no_cache:
        return None
    path = args.cache or os.environ.get("RLM_PIPELINE_CACHE") or DEFAULT_CACHE
    return os.path.abspath(os.path.expanduser(path))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the run unwinds (temp file removed)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _spark_session() -> Any:
    from rlm_pipeline._lazy import require_spark

    require_spark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.appName("rlm-pipeline classify")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _no_price(model: str) -> str:
    return f"no price for model {model}"


def _llm(args: argparse.Namespace) -> Any:
    from rlm_pipeline.llm.config import LLM, Price

    kwargs: dict[str, Any] = {
        "base_url": args.base_url,
        "max_concurrency": args.concurrency,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "cache_path": _cache_path(args),
    }
    if args.model:
        kwargs["model"] = args.model
    if args.max_retries is not None:
        kwargs["max_retries"] = args.max_retries
    prices = (args.price_input, args.price_output)
    if prices != (None, None):
        if None in prices:
            raise InputError("give both --price-input and --price-output (USD per 1M tokens)")
        if min(p for p in prices if p is not None) < 0:
            raise InputError("--price-input and --price-output must be >= 0")
        model = args.model or LLM().model
        kwargs["prices"] = {model: Price(float(args.price_input), float(args.price_output))}
    return LLM(**kwargs)


def _budget(args: argparse.Namespace, llm: Any) -> Any:
    from rlm_pipeline.llm.config import Budget

    if args.max_cost_usd is None:
        return None
    if args.max_cost_usd < 0:
        raise InputError("--max-cost-usd must be >= 0")
    if not llm.has_price():
        msg = (
            f"{_no_price(llm.model)}: pass --price-input/--price-output (USD per 1M tokens) "
            "to use --max-cost-usd"
        )
        raise InputError(msg)
    return Budget(max_cost_usd=args.max_cost_usd)


def _spec(args: argparse.Namespace, labels: list[str]) -> Any:
    from rlm_pipeline.ops.spec import ClassifySpec

    extra: dict[str, Any] = {}
    if args.max_row_tokens is not None:
        if args.max_row_tokens < 1:
            raise InputError("--max-row-tokens must be >= 1")
        extra["max_row_tokens"] = args.max_row_tokens
    if args.truncate:
        extra["truncate"] = True
    return ClassifySpec(
        column=args.column,
        labels=tuple(labels),
        instructions=args.instructions,
        batch_size=args.batch_size,
        output_column=args.output_column,
        **extra,
    )


def _check_columns(
    columns: list[str], spec: Any, args: argparse.Namespace, extra: list[str] | None = None
) -> None:
    """The text column, --id-column and the output columns (and ``extra``), against the input's."""
    from rlm_pipeline.ops.spec_base import output_names

    if spec.column not in columns:
        msg = f"column {spec.column!r} not found; columns: {columns}"
        raise InputError(msg)
    if args.id_column is not None and args.id_column not in columns:
        msg = f"--id-column {args.id_column!r} not found; columns: {columns}"
        raise InputError(msg)
    taken = [c for c in [*output_names(spec), *(extra or [])] if c in columns]
    if taken and not args.overwrite_column:
        names = " and ".join(repr(c) for c in taken)
        msg = (
            f"column {names} already in the input; pick another --output-column, "
            "or pass --overwrite-column to replace it"
        )
        raise InputError(msg)


def _check_ids(engine: Any, id_column: str) -> None:
    """--id-column must be unique and non-null (read before any model call)."""
    from rlm_pipeline.engines.views import CONTEXT_VIEW

    found = engine.key_check(CONTEXT_VIEW, id_column)
    if found.duplicated:
        msg = (
            f"--id-column {id_column!r} is not unique (e.g. {found.example!r} repeats); "
            "nothing was sent"
        )
        raise InputError(msg)
    if found.nulls:
        msg = f"--id-column {id_column!r} has {found.nulls:,} null(s); nothing was sent"
        raise InputError(msg)


def run(args: argparse.Namespace) -> int:
    """Run ``classify``; return the exit code."""
    with known_warnings_filtered():  # PySpark's pandas-version FutureWarning, for our calls only
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rlm_pipeline.engines.load import open_engine
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.llm.usage import UsageMeter

    # Everything that can be refused is checked before any model call.
    labels = labels_from_args(args)
    llm = _llm(args)
    budget = _budget(args, llm)
    cascade = cascade_from_args(args, llm)
    check_cascade_budget(cascade, budget)
    if args.max_error_rate is not None and not 0 <= args.max_error_rate <= 1:
        raise InputError("--max-error-rate must be between 0 and 1")
    max_error_rate = 1.0 if args.allow_errors else args.max_error_rate
    spec = _spec(args, labels)
    output = check_output_path(args.input, args.output)

    # The engine is chosen once (--engine); a Spark session is made only if Spark is.
    engine = open_engine(args.input, args.engine, spark=_spark_session)
    _check_columns(
        list(engine.schema(CONTEXT_VIEW)), spec, args, cascade_columns(spec) if cascade else None
    )
    if args.id_column:
        _check_ids(engine, args.id_column)

    if args.estimate:
        if cascade is not None:
            print_cascade_estimate(engine, spec, llm, cascade)
        else:
            _print_estimate(engine, spec, llm)
        return 0

    meter = UsageMeter()
    with _sigterm_as_interrupt(), staged_output(output) as staged:
        input_rows, stats = _classify(engine, spec, llm, meter, budget, staged.tmp, cascade)
        from rlm_pipeline.validate import validate_output

        result = validate_output(
            _read_back(staged.tmp),
            input_rows=input_rows,
            labels=labels,
            output_column=spec.output_column,
            id_column=args.id_column,
            backend="great_expectations" if args.great_expectations else "builtin",
        )
        if not result.success:
            for line in result.failed:
                print(f"rlm-pipeline: validation failed: {line}", file=sys.stderr)
            print(f"rlm-pipeline: error: nothing written to {args.output}", file=sys.stderr)
            return 1
        failures = FailureReport(rows=stats.rows, errors=dict(stats.errors))
        if failures.all_failed and not args.allow_errors:
            _refuse_all_failed(failures, args)
            return 1
        if not failures.accepted(max_error_rate):
            _refuse(failures, args)
            return 1
        staged.commit()
    _report(stats, meter, Path(args.output), spec.output_column)
    # Blank inputs are not failures: they are in the report on stdout, not warned about.
    if failures.failed > failures.errors.get(EMPTY_INPUT, 0):
        _warn_failures(failures, args)
    return 0


def _print_estimate(engine: Any, spec: Any, llm: Any) -> None:
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.ops.estimate import estimate_texts

    est = estimate_texts(engine.column_texts(engine.frame(CONTEXT_VIEW), spec.column), spec, llm)
    print(f"rows            {est.rows:>12,}")
    print(f"distinct texts  {est.distinct_texts:>12,}")
    print(f"cached texts    {est.cached:>12,}")
    print(f"calls           {est.calls:>12,}")
    print(f"input tokens    {est.input_tokens:>12,}")
    print(f"output tokens   {est.output_tokens:>12,}")
    what = "cut to fit, --truncate" if spec.truncate else "not sent: input_too_long"
    print(f"rows too long   {est.too_long:>12,}   (over {spec.max_row_tokens:,} tokens; {what})")
    from rlm_pipeline.ops.estimate import wall_line  # issue 19: the capacity bound

    print(wall_line(est))
    if llm.has_price():
        print(f"cost (USD)      {est.cost_usd:>12.4f}   ({llm.model}; no model was called)")
    else:
        print(
            f"cost: unknown ({_no_price(llm.model)}; pass --price-input/--price-output, "
            "USD per 1M tokens)"
        )


def _rerun_hint(args: argparse.Namespace) -> list[str]:
    argv = getattr(args, "argv", None)
    lines = []
    if argv is not None:
        lines.append(f"  {rerun_command(argv)}")
    if args.no_cache:
        lines.append("  (with --no-cache every row is asked again; drop it to re-ask only these)")
    return lines


_RERUN = "run the same command again to re-ask only the failed rows (answered rows are cached)"


def _print_failures(
    failures: FailureReport, args: argparse.Namespace, prefix: str, rerun: str | None
) -> None:
    """The per-reason summary on stderr; with ``rerun``, that line and the command to re-run."""
    err = sys.stderr
    print(
        f"rlm-pipeline: {prefix}{failures.failed:,} of {failures.rows:,} rows have no label:",
        file=err,
    )
    for line in failures.lines():
        print(line, file=err)
    if rerun is not None:
        print(f"rlm-pipeline: {rerun}:", file=err)
        for line in _rerun_hint(args):
            print(line, file=err)


def _refuse(failures: FailureReport, args: argparse.Namespace) -> None:
    err = sys.stderr
    _print_failures(failures, args, "", _RERUN)
    print(
        "rlm-pipeline: or accept the partial output with --allow-errors (or --max-error-rate R)",
        file=err,
    )
    print(
        f"rlm-pipeline: error: {failures.transient:,} rows failed for a transient reason; "
        f"nothing written to {args.output}",
        file=err,
    )


def _refuse_all_failed(failures: FailureReport, args: argparse.Namespace) -> None:
    """Every non-blank row failed: an output without a single label is not written."""
    err = sys.stderr
    _print_failures(failures, args, "", _RERUN if failures.transient else None)
    print("rlm-pipeline: or write the output anyway with --allow-errors", file=err)
    blank = failures.errors.get(EMPTY_INPUT, 0)
    print(
        f"rlm-pipeline: error: no row got a label ({failures.rows - blank:,} non-blank rows "
        f"failed); nothing written to {args.output}",
        file=err,
    )


def _warn_failures(failures: FailureReport, args: argparse.Namespace) -> None:
    rerun = None
    if failures.transient:
        rerun = (
            "accepted by --allow-errors/--max-error-rate; the same command "
            "re-asks only the failed rows"
        )
    _print_failures(failures, args, "warning: ", rerun)


def _classify(
    engine: Any, spec: Any, llm: Any, meter: Any, budget: Any, tmp: Path, cascade: Any = None
) -> tuple[int, Any]:
    """Run the operator over the engine's ``context`` into ``tmp``; the input row count and the stats.

    With ``cascade`` the run is a cascade (proxy pass, calibration, oracle pass),
    streamed into ``tmp`` on Polars (:func:`write_cascade`); the progress follows
    the proxy's pass.
    """
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.ops.fanout import FANOUT
    from rlm_pipeline.ops.progress import ProgressBar, RowCounter

    input_rows = engine.count(CONTEXT_VIEW)
    # On a terminal, a bar: rows as they finish (on Spark, as each task ends: its report is
    # polled while the job runs), calls, cached, errors, tokens, cost.
    bar = sys.stderr.isatty()
    progress = ProgressBar(input_rows, meter) if bar else RowCounter()
    with progress if isinstance(progress, ProgressBar) else contextlib.nullcontext():
        if cascade is not None:
            return input_rows, write_cascade(
                engine, spec, llm, meter, budget, tmp, cascade, progress
            )
        _, stats = engine.map_frame(
            engine.frame(CONTEXT_VIEW),
            spec,
            llm,
            fanout=FANOUT,
            meter=meter,
            budget=budget,
            progress=progress,
            write_to=tmp,
        )
    return input_rows, stats


def write_cascade(
    engine: Any,
    spec: Any,
    llm: Any,
    meter: Any,
    budget: Any,
    tmp: Path,
    cascade: Any,
    progress: Any = None,
) -> Any:
    """The cascade over the engine's ``context``, written to the Parquet file ``tmp``; its stats.

    Polars: streamed (:func:`~rlm_pipeline.ops.cascade.cascade_to_parquet`: both passes
    stream through scratch Parquet files next to ``tmp``; peak memory in docs/cascades.md).  Spark: the
    passes run as executor tasks, then the result is written from the driver (as
    the plain Spark path does).  The output columns were checked before any call,
    so they are replaced here.
    """
    from rlm_pipeline.engines.views import CONTEXT_VIEW

    if not engine.fans_out_in_tasks:  # Polars: streamed
        from rlm_pipeline.ops.cascade import cascade_to_parquet

        return cascade_to_parquet(
            engine.frame(CONTEXT_VIEW),
            spec,
            llm,
            cascade,
            tmp,
            meter=meter,
            budget=budget,
            progress=progress,
        )
    import pyarrow.parquet as pq

    from rlm_pipeline.ops.api import run_op

    out, stats = run_op(
        engine.frame(CONTEXT_VIEW),
        spec,
        llm,
        engine=engine.name,
        meter=meter,
        budget=budget,
        progress=progress,
        overwrite=True,
        warn=False,
        cascade=cascade,
    )
    scratch = "_rlm_cascade_out"
    engine.register(scratch, out, replace=True)
    try:
        pq.write_table(engine.to_arrow(scratch), tmp)
    finally:
        engine.drop(scratch)
    return stats


def _read_back(path: Path) -> Any:
    import polars as pl

    try:
        return pl.scan_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read back {path}: {exc}"
        raise RLMPipelineError(msg) from exc


def _report(stats: Any, meter: Any, output: Path, column: str) -> None:
    print(f"wrote {stats.rows:,} rows to {output}")
    for value, count in sorted(stats.values.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {column}={value}: {count:,}")
    for kind, count in sorted(stats.errors.items()):
        print(f"  {column}=null ({kind}): {count:,}")
    usage = meter.snapshot()
    print(
        f"usage: {usage.calls:,} calls, {usage.cached_calls:,} cached, "
        f"{usage.input_tokens:,} input + {usage.output_tokens:,} output tokens, "
        f"${usage.cost_usd:.4f}"
    )
    if stats.cascade is not None:
        print(stats.cascade.summary())
    if stats.errors.get("budget_exceeded"):
        print(
            f"budget reached: {stats.errors['budget_exceeded']:,} rows not asked; the same "
            "command asks them (each run has its own budget; answered rows are cached)"
        )
