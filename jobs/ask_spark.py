"""Answer one question over a Parquet table with the RLM operator on Spark.

::

    spark-submit jobs/ask_spark.py --input IN --question "How many ... ?" \\
        --answer OUT/answer.json --trace OUT/trace.jsonl --text-column question \\
        --model gpt-4.1-mini --base-url http://127.0.0.1:8000/v1

The root model sees only the question and the table's metadata; its filters
and SQL run as Spark plans, its classify / map sub-calls as ``mapInArrow``
tasks.  Writes the answer as JSON (``schemas/answer.schema.json``) and the
trace as JSONL (``schemas/trace.schema.json``).

The executors' Python must be able to import rlm_pipeline: run with
``PYSPARK_PYTHON`` set to an interpreter that has ``rlm-pipeline[spark]``
(``spark-submit --conf spark.pyspark.python=/venv/bin/python``; plain
``python``: ``PYSPARK_PYTHON=$(which python)``), or ship the package to the
cluster (``--py-files``, ``--archives`` with a packed venv).  Otherwise one
probe task fails before the first classify / map sub-call is sent, and the
job exits 1 with one line naming the workers' Python and this fix.

Exit codes: 0 answered, 1 model failure or budget hit, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import rlm_pipeline as rp
from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.cli.entry import run_guarded
from rlm_pipeline.engines.load import to_spark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="Parquet file, folder or glob")
    p.add_argument("--question", required=True)
    p.add_argument("--answer", required=True, type=Path, help="where to write the answer JSON")
    p.add_argument("--trace", type=Path, default=None, help="where to write the JSONL trace")
    p.add_argument("--text-column", default=None)
    p.add_argument("--model", default=os.environ.get("RLM_MODEL", "gpt-4.1-mini"))
    p.add_argument("--sub-model", default=None)
    p.add_argument("--base-url", default=None)
    p.add_argument("--cache", default=None)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--max-depth", type=int, default=2)
    p.add_argument("--master", default=None, help="Spark master when not run by spark-submit")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("rlm_pipeline-ask")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    df = to_spark(args.input, spark)  # checks the files first: clear InputError, no JVM trace
    root = rp.LLM(model=args.model, base_url=args.base_url, cache_path=args.cache)
    sub = rp.LLM(model=args.sub_model, base_url=args.base_url, cache_path=args.cache) if args.sub_model else None
    rlm = rp.RLM(root=root, sub=sub, engine="spark", max_steps=args.max_steps, max_depth=args.max_depth)
    if args.trace:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
    res = rlm.run(
        args.question,
        df,
        text_column=args.text_column,
        trace_path=str(args.trace) if args.trace else None,
    )
    doc = {
        "answer": res.answer,
        "value": res.value,
        "usage": res.usage.to_dict(),
        "trace_path": str(args.trace) if args.trace else None,
    }
    args.answer.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.answer.with_name(args.answer.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, args.answer)
    print(f"ask_spark: {res.answer}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with known_warnings_filtered():  # PySpark's pandas-version FutureWarning, our calls only
        return run_guarded("ask_spark", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
