"""Classify tickets as they arrive: a Structured Streaming job (Parquet files in, Parquet out).

Run with ``spark-submit`` (or plain ``python`` for a local session)::

    spark-submit --conf spark.pyspark.python=/venv/bin/python jobs/stream_tickets.py \\
        --input IN_DIR --output OUT_DIR --checkpoint CKPT_DIR --column question \\
        --labels billing,technical,account,other --base-url http://127.0.0.1:8000/v1 \\
        --cache /shared/rlm-cache.sqlite

New Parquet files dropped into ``IN_DIR`` are read as micro-batches
(``--max-files-per-trigger``, default 1), classified by
``rp.spark.classify`` — a lazy step, so the model is called in each
micro-batch's tasks, each with its share of the limits — and appended to
``OUT_DIR`` with a checkpoint.  The Parquet sink is exactly-once: read
``OUT_DIR`` with Spark (``spark.read.parquet``), which lists only the files of
committed batches.  If the driver dies, start the same command again: it goes
on from the checkpoint, committed batches are not read (nor sent) again, and a
batch that was running when the driver died runs again — with ``--cache`` its
rows already answered come from stored answers, not from the model.

``--available-now`` processes the files present and stops (for cron);
otherwise the query runs until stopped (Ctrl-C / SIGTERM), checking for new
files every ``--trigger-seconds``.  The input schema is read from the files
already in ``IN_DIR`` when the job starts.  One line per micro-batch on
stdout: batch id, input rows, and the calls / tokens so far.

The executors' Python must be able to import rlm_pipeline (``PYSPARK_PYTHON``
or ``spark.pyspark.python`` pointing at a Python with ``rlm-pipeline[spark]``);
otherwise the job stops before any model call with one line naming the fix.
A systemic model failure (nothing listening, key refused) stops the query:
one line, exit 1.

Exit codes: 0 stopped cleanly, 1 the query failed, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import rlm_pipeline as rp
from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.entry import run_guarded
from rlm_pipeline.cli.labels import add_label_arguments, labels_from_args
from rlm_pipeline.errors import InputError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="folder new Parquet files arrive in")
    p.add_argument("--output", required=True, help="output folder (Parquet sink)")
    p.add_argument("--checkpoint", required=True, help="the query's checkpoint folder")
    p.add_argument("--column", required=True, help="text column to classify")
    add_label_arguments(p)
    p.add_argument("--model", default=os.environ.get("RLM_MODEL", "gpt-4.1-mini"))
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument("--cache", default=None, help="response cache (SQLite) reachable by executors")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=32, help="whole job, shared by all tasks")
    p.add_argument("--rpm", type=int, default=None, help="requests per minute, whole job")
    p.add_argument("--max-files-per-trigger", type=int, default=1)
    p.add_argument("--trigger-seconds", type=float, default=2.0)
    p.add_argument("--available-now", action="store_true", help="process what is there, stop")
    p.add_argument("--master", default=None, help="Spark master when not run by spark-submit")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from pyspark.errors import AnalysisException
    from pyspark.sql import SparkSession

    labels = labels_from_args(args)
    for name in ("output", "checkpoint"):
        inner = os.path.abspath(getattr(args, name))
        if inner == os.path.abspath(args.input) or inner.startswith(
            os.path.abspath(args.input) + os.sep
        ):
            msg = f"--{name} {getattr(args, name)!r} is inside --input; pick another folder"
            raise InputError(msg)
    builder = SparkSession.builder.appName("rlm_pipeline-stream")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    try:
        schema = spark.read.parquet(args.input).schema
    except AnalysisException as exc:
        msg = f"no Parquet file in {args.input!r} yet: the schema is read from the files there"
        raise InputError(msg) from exc
    llm = rp.LLM(
        model=args.model,
        base_url=args.base_url,
        max_concurrency=args.concurrency,
        rpm=args.rpm,
        cache_path=args.cache,
    )
    op = rp.spark.classify(args.column, labels, llm=llm, batch_size=args.batch_size)
    stream = (
        spark.readStream.schema(schema)
        .option("maxFilesPerTrigger", args.max_files_per_trigger)
        .parquet(args.input)
    )
    writer = (
        stream.transform(op)
        .writeStream.format("parquet")
        .option("path", args.output)
        .option("checkpointLocation", args.checkpoint)
        .outputMode("append")
    )
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.trigger_seconds} seconds")
    with op.typed_errors():
        query = writer.start()
        _follow(query, op)
    return 0


def _follow(query: Any, op: Any) -> None:
    """Print one line per finished micro-batch until the query ends (SIGTERM stops it)."""

    def stop(signum: int, frame: Any) -> None:
        query.stop()

    previous = signal.signal(signal.SIGTERM, stop)
    printed = -1
    try:
        while True:
            done = query.awaitTermination(1.0)
            for progress in query.recentProgress:
                batch = int(progress["batchId"])
                if batch > printed:
                    printed = batch
                    usage = op.usage
                    print(
                        f"stream_tickets: batch {batch}: {progress['numInputRows']} rows; "
                        f"so far {usage.calls} calls, {usage.cached_calls} cached, "
                        f"{usage.total_tokens} tokens",
                        flush=True,
                    )
            if done:
                return
    except KeyboardInterrupt:
        query.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with known_warnings_filtered():
        return run_guarded("stream_tickets", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
