"""A user's plain script: classify a small Spark DataFrame on local[2].

Run as ``python user_script.py BASE_URL`` (the venv not activated, no
``PYSPARK_PYTHON``) by ``test_workers.py``.  Prints ``elapsed S`` (seconds
from the transform to the end, error or not) on stdout.
"""

import sys
import time

from pyspark.sql import SparkSession

import rlm_pipeline as rp

spark = (
    SparkSession.builder.master("local[2]")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.createDataFrame(
    [(i, f"my invoice {i} was charged twice") for i in range(20)], "id long, q string"
)
llm = rp.LLM(model="sim-1", base_url=sys.argv[1], api_key="x")
start = time.monotonic()
try:
    out = df.transform(rp.spark.classify("q", ["billing", "other"], llm=llm))
    print(out.count())
finally:
    print(f"elapsed {time.monotonic() - start:.1f}", flush=True)
