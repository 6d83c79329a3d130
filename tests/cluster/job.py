"""Driver program of the standalone-cluster test (run in its own process: one SparkContext each)."""

from __future__ import annotations

import json
import sys

import polars as pl
from pyspark.sql import SparkSession

import rlm_pipeline as rp
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.ops import spark_fanout
from rlm_pipeline.ops.spec import ClassifySpec


def main() -> None:
    master, base_url, cache, data, rpm, concurrency = sys.argv[1:7]
    spark = (
        SparkSession.builder.master(master)
        .appName("rlm-cluster-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.memory", "512m")
        .config("spark.cores.max", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    table = pl.read_parquet(data).to_arrow()
    # two partitions, so both executors work (answers are cached per row, whatever the batching)
    df = spark.createDataFrame(table).repartition(2, "id").sortWithinPartitions("id")
    llm = rp.LLM(model="sim-1", base_url=base_url, api_key="x", max_concurrency=int(concurrency),
                 rpm=int(rpm), cache_path=cache)
    spec = ClassifySpec("q", ("billing", "technical", "account", "other"))
    for run in range(2):  # the second run waits for the test's go (after it reset the counters)
        if run:
            sys.stdin.readline()
        meter = UsageMeter()
        out, stats = spark_fanout.apply(df, spec, llm, meter=meter, parallelism=2)
        rows = pl.DataFrame(out.select("id", "q", "label", "label_error").toArrow())
        rows.write_parquet(f"{data}.out{run}.parquet")
        report = {"usage": meter.snapshot().to_dict(), "rows": stats.rows,
                  "cached_rows": stats.cached_rows}
        print(json.dumps(report), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
