"""spark-submit jobs/classify_spark.py against the simulator on local[2]:
validated, date-partitioned output; a second run leaves it identical and sends
no model calls; dynamic overwrite leaves other dates alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.datasets import tickets
from rlm_pipeline.sim import intended_label

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "jobs" / "classify_spark.py"
LABELS = ["billing", "technical", "account", "other"]

pytestmark = pytest.mark.spark


def _spark_submit() -> str:
    exe = Path(sys.executable).parent / "spark-submit"
    found = str(exe) if exe.exists() else shutil.which("spark-submit")
    if not found:
        pytest.fail("spark-submit not found next to the Python interpreter (pyspark installs it)")
    return found


def _submit(inp: Path, out: Path, cache: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    cmd = [
        _spark_submit(), "--master", "local[2]",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.ui.enabled=false",
        str(JOB), "--input", str(inp), "--output", str(out), "--column", "question",
        "--labels", ",".join(LABELS), "--model", "sim", "--base-url", base_url,
        "--partitions", "3", "--date-column", "date", "--id-column", "ticket_id",
        "--cache", str(cache), "--batch-size", "8", "--concurrency", "8",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_spark_submit_twice(tmp_path: Path, sim_factory: Any) -> None:
    sim = sim_factory()
    data = tickets(1200, seed=5).with_columns(
        pl.col("date").dt.truncate("1mo")  # a handful of date partitions
    )
    inp = tmp_path / "in.parquet"
    data.write_parquet(inp)
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"

    first = _submit(inp, out, cache, sim.base_url)
    assert first.returncode == 0, first.stderr[-3000:]
    first_calls = sim.stats()["ok"]
    assert first_calls > 0

    written = pl.read_parquet(out / "**/*.parquet", hive_partitioning=True)
    assert written.height == data.height
    assert written["ticket_id"].sort().to_list() == data["ticket_id"].sort().to_list()
    parts = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert parts == sorted(f"date={d}" for d in data["date"].unique().cast(pl.String).to_list())
    answered = written.filter(pl.col("label").is_not_null())
    assert answered.height == data.height
    assert all(
        label == intended_label(q, LABELS) for q, label in zip(answered["question"], answered["label"], strict=True)
    )

    sim.reset_stats()
    second = _submit(inp, out, cache, sim.base_url)
    assert second.returncode == 0, second.stderr[-3000:]
    assert sim.stats()["requests"] == 0
    after = pl.read_parquet(out / "**/*.parquet", hive_partitioning=True).sort("ticket_id")
    assert after.equals(written.sort("ticket_id"))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == parts

    # Dynamic partition overwrite: a run over one month replaces only that month.
    one_month = data.filter(pl.col("date") == data["date"].min())
    inp2 = tmp_path / "one_month.parquet"
    one_month.write_parquet(inp2)
    third = _submit(inp2, out, cache, sim.base_url)
    assert third.returncode == 0, third.stderr[-3000:]
    final = pl.read_parquet(out / "**/*.parquet", hive_partitioning=True)
    assert final.height == data.height
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == parts


def test_missing_input_exits_2(tmp_path: Path) -> None:
    proc = _submit(tmp_path / "missing.parquet", tmp_path / "out", tmp_path / "c.sqlite", "http://127.0.0.1:9/v1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    # spark-submit merges the Python driver's stderr into its stdout
    assert "classify_spark: error: input not found" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
