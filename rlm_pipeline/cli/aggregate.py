"""``rlm-pipeline aggregate``: one summary per group of a file, written to Parquet atomically.

The summary of each group (``--by``, or the whole file) is a hierarchical fold:
rows packed into calls under ``--max-prompt-tokens``, each summarised, the
summaries merged level by level until one is left (docs/operators/aggregate.md).
Responses are cached as for ``classify`` (``$RLM_PIPELINE_CACHE``, ``--cache``,
``--no-cache``), so running the same command again sends only what failed.

Checked before any model call (exit 2, nothing sent, nothing written): the
columns, the prompt budget, the prices for ``--max-cost-usd`` and ``--output``
(not the input, not inside an input directory or glob).

The output is validated before it is written (one row per group, the
``rows`` summing to the input's rows, a reason wherever a summary misses
rows: :mod:`rlm_pipeline.ops.multi_validate`; ``--great-expectations`` runs
the same checks there).  A group whose summary misses rows (a call failed for good, the budget ran
out, a text too long for one prompt) is counted by reason on stderr; then
nothing is written and the exit code is 1, unless ``--allow-errors`` (the
output then says in ``summary_error`` what each summary is missing).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.outputs import check_output_path, staged_output
from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.stats import EMPTY_INPUT

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Register the ``aggregate`` command."""
    p = subparsers.add_parser(
        "aggregate",
        help="one summary per group of a text column (hierarchical fold)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="Parquet file, directory or glob; CSV; JSONL")
    p.add_argument("--column", required=True, help="text column to summarise")
    p.add_argument("--instruction", required=True, help="what the summary should say")
    p.add_argument("--by", default=None, help="group column(s), comma-separated")
    p.add_argument("--output", required=True, help="output Parquet file")
    p.add_argument("--engine", choices=("polars", "spark"), default="polars")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    p.add_argument("--model", default=None, help="model name (default gpt-4.1-mini)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument("--max-retries", type=int, default=None, help="retries per call (default 6)")
    p.add_argument("--cache", default=None, help="response cache file (as for classify)")
    p.add_argument("--no-cache", action="store_true", help="do not cache responses")
    p.add_argument("--estimate", action="store_true", help="print the estimate; call nothing")
    p.add_argument("--max-cost-usd", type=float, default=None, help="stop before this cost")
    p.add_argument("--price-input", type=float, default=None, metavar="USD",
                   help="USD per 1M input tokens")
    p.add_argument("--price-output", type=float, default=None, metavar="USD",
                   help="USD per 1M output tokens")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute, whole job")
    p.add_argument("--tpm", type=int, default=None, help="tokens per minute, whole job")
    p.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N",
                   help="largest prompt of any call, estimated tokens (default 4000)")
    p.add_argument("--summary-tokens", type=int, default=None, metavar="N",
                   help="reply allowance of each summary (default 256)")
    p.add_argument("--truncate", action="store_true",
                   help="cut texts too long for one prompt instead of leaving them out")
    p.add_argument("--allow-errors", action="store_true",
                   help="write the output even when summaries miss rows (see summary_error)")
    p.add_argument("--great-expectations", action="store_true",
                   help="validate the output with great-expectations (slower) instead of "
                   "built-in checks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``aggregate``; return the exit code."""
    with known_warnings_filtered():
        return _run(args)


def _spec(args: argparse.Namespace) -> Any:
    from rlm_pipeline.ops.aggregate_op import AggregateSpec

    by = tuple(name.strip() for name in args.by.split(",")) if args.by else ()
    if any(not name for name in by):
        raise InputError(f"--by must be column names separated by commas, got {args.by!r}")
    extra: dict[str, Any] = {}
    if args.max_prompt_tokens is not None:
        extra["max_prompt_tokens"] = args.max_prompt_tokens
    if args.summary_tokens is not None:
        extra["summary_tokens"] = args.summary_tokens
    return AggregateSpec(args.column, args.instruction, by=by, truncate=args.truncate, **extra)


def _run(args: argparse.Namespace) -> int:
    from rlm_pipeline.cli.classify import _budget, _llm, _spark_session
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.ops.aggregate_op import run_aggregate

    spec = _spec(args)
    llm = _llm(args)
    budget = _budget(args, llm)
    output = check_output_path(args.input, args.output)
    if args.engine == "spark":
        _spark_session()
    if args.estimate:
        _print_estimate(args, spec, llm)
        return 0
    meter = UsageMeter()
    out, stats = run_aggregate(args.input, spec, llm, engine=args.engine, meter=meter,
                               budget=budget)
    table = out.toArrow() if args.engine == "spark" else out.to_arrow()
    missing = [fold for fold in stats.groups if fold.error not in (None, EMPTY_INPUT)]
    if missing and not args.allow_errors:
        _refuse(missing, len(stats.groups), args.output)
        return 1
    import polars as pl
    import pyarrow.parquet as pq

    from rlm_pipeline.cli.op_cmd import backend, validated
    from rlm_pipeline.ops.multi_validate import validate_aggregate

    checked = validate_aggregate(pl.DataFrame(table), input_rows=stats.rows,
                                 groups=len(stats.groups), backend=backend(args))
    if not validated(checked, args):  # one row per group, every input row counted once
        return 1
    with staged_output(output) as staged:
        pq.write_table(table, staged.tmp)
        staged.commit()
    usage = meter.snapshot()
    print(f"wrote {len(stats.groups):,} groups ({stats.rows:,} rows) to {args.output}")
    print(
        f"usage: {usage.calls:,} calls, {usage.cached_calls:,} cached, "
        f"{usage.input_tokens:,} input + {usage.output_tokens:,} output tokens, "
        f"largest prompt {stats.max_prompt_tokens:,} tokens, ${usage.cost_usd:.4f}"
    )
    if missing:
        _print_missing(missing, len(stats.groups), "warning: ")
    return 0


def _print_missing(missing: list[Any], groups: int, prefix: str) -> None:
    kinds = Counter((fold.error or "").split(":", 1)[0] for fold in missing)
    rows = sum(fold.rows - fold.rows_summarised for fold in missing)
    counts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items()))
    print(
        f"rlm-pipeline: {prefix}{len(missing):,} of {groups:,} groups have rows missing from "
        f"their summary ({rows:,} rows): {counts}",
        file=sys.stderr,
    )


def _refuse(missing: list[Any], groups: int, output: str) -> None:
    _print_missing(missing, groups, "")
    print(
        "rlm-pipeline: run the same command again to re-ask only the failed calls "
        "(answered calls are cached), or write the output anyway with --allow-errors",
        file=sys.stderr,
    )
    print(f"rlm-pipeline: error: nothing written to {output}", file=sys.stderr)


def _print_estimate(args: argparse.Namespace, spec: Any, llm: Any) -> None:
    from rlm_pipeline.ops.estimate import wall_line
    from rlm_pipeline.ops.multi_estimate import estimate_aggregate

    est = estimate_aggregate(args.input, spec, llm, engine=args.engine)
    print(f"rows            {est.rows:>12,}")
    print(f"distinct texts  {est.distinct_texts:>12,}   (per group)")
    print(f"cached calls    {est.cached:>12,}")
    print(f"calls           {est.calls:>12,}   (leaves exact, folds at most)")
    print(f"input tokens    {est.input_tokens:>12,}")
    print(f"output tokens   {est.output_tokens:>12,}")
    print(f"rows too long   {est.too_long:>12,}   (over one prompt; --truncate cuts them)")
    print(wall_line(est))
    if llm.has_price():
        print(f"cost (USD)      {est.cost_usd:>12.4f}   ({llm.model}; no model was called)")
    else:
        print(f"cost: unknown (no price for model {llm.model}; pass --price-input/--price-output)")
