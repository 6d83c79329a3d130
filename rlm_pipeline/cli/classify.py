"""``rlm-pipeline classify``: label a column of a file, validate, write Parquet atomically.

Responses are cached by default in a per-user file so a stopped or failed run
resumes where it ended: ``$RLM_PIPELINE_CACHE`` if set, else
``~/.cache/rlm_pipeline/responses.sqlite``; ``--cache PATH`` picks another
file and ``--no-cache`` turns caching off.  The output is written to a
temporary file next to ``--output`` and renamed into place, so a crash or a
Ctrl-C / SIGTERM never leaves a half-written file; answered rows are already
in the cache, so running the same command again only sends what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlm_pipeline.errors import InputError, RLMPipelineError

DEFAULT_CACHE = os.path.join("~", ".cache", "rlm_pipeline", "responses.sqlite")


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
    p.add_argument("--labels", required=True, help="comma-separated labels, e.g. a,b,c")
    p.add_argument("--output", required=True, help="output Parquet file")
    p.add_argument("--engine", choices=("polars", "spark"), default="polars")
    p.add_argument("--batch-size", type=int, default=16, help="rows per call (1 for small models)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    p.add_argument("--model", default=None, help="model name (default gpt-4.1-mini)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument("--cache", default=None, help="response cache file (see above)")
    p.add_argument("--no-cache", action="store_true", help="do not cache responses")
    p.add_argument("--instructions", default=None, help="extra guidance for the model")
    p.add_argument("--estimate", action="store_true", help="print the estimate; call nothing")
    p.add_argument("--max-cost-usd", type=float, default=None, help="stop before this cost")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute, whole job")
    p.add_argument("--tpm", type=int, default=None, help="tokens per minute, whole job")
    p.add_argument("--id-column", default=None, help="column that must be unique and non-null")
    p.add_argument("--output-column", default="label", help="name of the label column")
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


@contextlib.contextmanager
def _temp_output(output: Path) -> Iterator[Path]:
    """A temporary file beside ``output``; removed unless renamed into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _spark_session() -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.appName("rlm-pipeline classify")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def run(args: argparse.Namespace) -> int:
    """Run ``classify``; return the exit code."""
    from rlm_pipeline.engines.load import to_polars, to_spark
    from rlm_pipeline.llm.config import LLM, Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.api import estimate
    from rlm_pipeline.ops.spec import ClassifySpec

    if not args.debug:  # great-expectations logs its temporary folders at INFO
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    spec = ClassifySpec(
        column=args.column,
        labels=tuple(labels),
        instructions=args.instructions,
        batch_size=args.batch_size,
        output_column=args.output_column,
    )
    llm_kwargs: dict[str, Any] = {
        "base_url": args.base_url,
        "max_concurrency": args.concurrency,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "cache_path": _cache_path(args),
    }
    if args.model:
        llm_kwargs["model"] = args.model
    llm = LLM(**llm_kwargs)
    if args.max_cost_usd is not None and args.max_cost_usd < 0:
        raise InputError("--max-cost-usd must be >= 0")
    budget = Budget(max_cost_usd=args.max_cost_usd) if args.max_cost_usd is not None else None

    session = _spark_session() if args.engine == "spark" else None
    data = to_spark(args.input, session) if session is not None else to_polars(args.input)

    if args.estimate:
        est = estimate(
            data,
            args.column,
            labels,
            llm,
            batch_size=args.batch_size,
            instructions=args.instructions,
        )
        print(f"rows            {est.rows:>12,}")
        print(f"distinct texts  {est.distinct_texts:>12,}")
        print(f"cached texts    {est.cached:>12,}")
        print(f"calls           {est.calls:>12,}")
        print(f"input tokens    {est.input_tokens:>12,}")
        print(f"output tokens   {est.output_tokens:>12,}")
        print(f"cost (USD)      {est.cost_usd:>12.4f}   ({llm.model}; no model was called)")
        return 0

    meter = UsageMeter()
    output = Path(args.output)
    with _sigterm_as_interrupt(), _temp_output(output) as tmp:
        input_rows, stats = _classify(data, spec, llm, meter, budget, tmp, session)
        from rlm_pipeline.validate import validate_output

        result = validate_output(
            _read_back(tmp),
            input_rows=input_rows,
            labels=labels,
            output_column=spec.output_column,
            id_column=args.id_column,
        )
        if not result.success:
            for line in result.failed:
                print(f"rlm-pipeline: validation failed: {line}", file=sys.stderr)
            return 1
        os.replace(tmp, output)
    _report(stats, meter, output, spec.output_column)
    return 0


def _classify(
    data: Any, spec: Any, llm: Any, meter: Any, budget: Any, tmp: Path, session: Any
) -> tuple[int, Any]:
    """Run the operator into ``tmp``; the input row count and the stats."""
    from rlm_pipeline.ops import polars_fanout, spark_fanout
    from rlm_pipeline.ops.progress import ProgressBar, RowCounter

    if session is not None:
        input_rows = int(data.count())
        progress: RowCounter = RowCounter()
        out, stats = spark_fanout.apply(data, spec, llm, meter=meter, budget=budget)
        import pyarrow.parquet as pq

        pq.write_table(out.toArrow(), str(tmp))
        return input_rows, stats
    import polars as pl

    input_rows = int(data.select(pl.len()).collect().item())
    bar = sys.stderr.isatty()
    progress = ProgressBar(input_rows, meter) if bar else RowCounter()
    with progress if isinstance(progress, ProgressBar) else contextlib.nullcontext():
        stats = polars_fanout.classify_to_parquet(
            data, spec, llm, tmp, meter=meter, budget=budget, progress=progress
        )
    return input_rows, stats


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
    if stats.errors.get("budget_exceeded"):
        print(
            f"budget reached: {stats.errors['budget_exceeded']:,} rows not asked; "
            "run again with a higher --max-cost-usd to finish (answered rows are cached)"
        )
