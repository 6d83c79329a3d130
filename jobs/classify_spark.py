"""Classify a Parquet table on Spark and write it partitioned by date.

Run with ``spark-submit`` (or plain ``python`` for a local session)::

    spark-submit jobs/classify_spark.py --input IN --output OUT --column question \\
        --labels billing,technical,account,other --model gpt-4.1-mini \\
        --base-url http://127.0.0.1:8000/v1 --partitions 4 --date-column date \\
        --cache /shared/rlm-cache.sqlite

It reads Parquet, classifies the text column in ``mapInArrow`` tasks on the
executors (limits shared out over the tasks), checks the result with
great-expectations (row count, labels in the set, a reason for every null,
unique ids), and writes Parquet partitioned by ``--date-column`` with dynamic
partition overwrite: only the dates present in this input are replaced, other
dates in OUT stay as they are.  With ``--cache`` on storage every executor can
reach, a re-run sends no model calls for rows already answered.

Before any model call the job refuses an output folder that overlaps the
input, and unknown columns.  A systemic model failure (nothing listening, key
refused, unknown model) stops it within seconds: one line, exit 1, nothing
written.  If rows failed for a transient reason (``api_error``,
``budget_exceeded``) it prints the failed rows by reason, writes nothing and
exits 1, so a scheduler retries it; the retry re-sends only those rows.
An output where no non-blank row got a label (every reply unusable, say) is
refused the same way, whatever the reasons.  ``--allow-errors`` publishes
such a result anyway.

Labels: ``--labels a,b,c`` (a label with a comma in double quotes),
``--labels-file F`` (one per line) or ``--label X`` repeated.

The executors' Python must be able to import rlm_pipeline: run with
``PYSPARK_PYTHON`` set to an interpreter that has ``rlm-pipeline[spark]``
(``spark-submit --conf spark.pyspark.python=/venv/bin/python``; plain
``python``: ``PYSPARK_PYTHON=$(which python)``), or ship the package to the
cluster (``--py-files``, ``--archives`` with a packed venv).  Otherwise one
probe task fails before any model call and the job exits 1 with one line
naming the workers' Python and this fix.

Exit codes: 0 written, 1 validation or model failure (nothing written),
2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import os
import sys

import rlm_pipeline as rp
from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.entry import run_guarded
from rlm_pipeline.cli.failures import TRANSIENT, FailureReport
from rlm_pipeline.cli.labels import add_label_arguments, labels_from_args
from rlm_pipeline.cli.outputs import check_output_folder
from rlm_pipeline.engines.load import to_spark
from rlm_pipeline.errors import InputError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="Parquet file, folder or glob")
    p.add_argument("--output", required=True, help="output folder (Parquet, partitioned)")
    p.add_argument("--column", required=True, help="text column to classify")
    add_label_arguments(p)
    p.add_argument("--model", default=os.environ.get("RLM_MODEL", "gpt-4.1-mini"))
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument("--partitions", type=int, default=None, help="repartition input to N tasks")
    p.add_argument("--date-column", default="date", help="partition output by this column")
    p.add_argument("--id-column", default=None, help="column that must stay unique (checked)")
    p.add_argument("--cache", default=None, help="response cache (SQLite) reachable by executors")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=32, help="whole job, shared by all tasks")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute, whole job")
    p.add_argument("--master", default=None, help="Spark master when not run by spark-submit")
    p.add_argument(
        "--max-row-tokens", type=int, default=8000, help="longest cell sent (estimated tokens)"
    )
    p.add_argument("--truncate", action="store_true", help="cut longer cells instead")
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="write even if rows failed for a transient reason (api_error, budget_exceeded)",
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from rlm_pipeline.validate import validate_output

    labels = labels_from_args(args)
    check_output_folder(args.input, args.output)
    builder = SparkSession.builder.appName("rlm_pipeline-classify")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    llm = rp.LLM(
        model=args.model,
        base_url=args.base_url,
        max_concurrency=args.concurrency,
        rpm=args.rpm,
        cache_path=args.cache,
    )
    df = to_spark(args.input, spark)  # checks the files first: clear InputError, no JVM trace
    if args.date_column not in df.columns:
        msg = f"--date-column {args.date_column!r} not in input columns {df.columns}"
        raise InputError(msg)
    if args.partitions:
        df = df.repartition(args.partitions)
    # rp.classify (not the lazy rp.spark.classify step) materialises its result once, so
    # validation and the write see the same answers and the model is called once per row.
    out = rp.classify(
        df,
        args.column,
        labels,
        llm,
        batch_size=args.batch_size,
        max_row_tokens=args.max_row_tokens,
        truncate=args.truncate,
    )
    rows = df.count()
    report = validate_output(
        out, input_rows=rows, labels=labels, output_column="label", id_column=args.id_column
    )
    if not report.success:
        print("classify_spark: validation failed: " + "; ".join(report.failed), file=sys.stderr)
        return 1
    kinds = out.where(F.col("label_error").isNotNull()).groupBy(
        F.regexp_extract("label_error", r"^([a-z_]+)", 1).alias("kind")
    )
    errors = {r["kind"]: int(r["count"]) for r in kinds.count().collect()}
    failures = FailureReport(rows=rows, errors=errors)
    if failures.failed:
        print(f"classify_spark: {failures.failed} rows have no label:", file=sys.stderr)
        for line in failures.lines():
            print(line, file=sys.stderr)
    if failures.all_failed and not args.allow_errors:
        blank = failures.errors.get("empty_input", 0)
        print(
            f"classify_spark: error: no row got a label ({failures.rows - blank} non-blank "
            "rows failed); nothing written — pass --allow-errors to write it anyway",
            file=sys.stderr,
        )
        return 1
    if failures.transient and not args.allow_errors:
        print(
            f"classify_spark: error: {failures.transient} rows failed for a transient reason "
            f"({', '.join(TRANSIENT)}); nothing written — run again (answered rows are cached), "
            "or pass --allow-errors to publish them as nulls",
            file=sys.stderr,
        )
        return 1
    out.write.mode("overwrite").partitionBy(args.date_column).parquet(args.output)
    counts = {r["label"]: r["count"] for r in out.groupBy("label").count().collect()}
    print(f"classify_spark: wrote {sum(counts.values())} rows to {args.output}; labels {counts}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with known_warnings_filtered():  # PySpark's pandas-version FutureWarning, our calls only
        return run_guarded("classify_spark", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
