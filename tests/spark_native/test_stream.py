"""Structured Streaming: ``jobs/stream_tickets.py`` killed (SIGKILL) after its second
micro-batch and restarted from its checkpoint: every input row in the sink exactly
once, and the model not called again for the committed batches."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlm_pipeline.sim import intended_label
from tests.ops.tickets import LABELS, tickets

pytestmark = pytest.mark.spark

JOB = Path(__file__).resolve().parents[2] / "jobs" / "stream_tickets.py"
ROWS = 90  # per file


def _drop(folder: Path, n: int, texts: list[str]) -> None:
    """File ``n`` arrives: written under a hidden name, then renamed (Spark skips hidden files)."""
    ids = list(range(n * ROWS, (n + 1) * ROWS))
    table = pa.table({"ticket_id": ids, "question": texts[n * ROWS : (n + 1) * ROWS]})
    tmp = folder / f".part-{n}.parquet"
    pq.write_table(table, tmp)
    tmp.rename(folder / f"part-{n}.parquet")


def _wait_commit(checkpoint: Path, batch: int, driver: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not (checkpoint / "commits" / str(batch)).exists():
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"batch {batch} not committed"
        time.sleep(0.2)


def _args(folders: dict[str, Path], base_url: str) -> list[str]:
    return [
        "--input", str(folders["in"]), "--output", str(folders["out"]),
        "--checkpoint", str(folders["ckpt"]), "--cache", str(folders["cache"]),
        "--column", "question", "--labels", ",".join(LABELS), "--model", "sim-1",
        "--base-url", base_url, "--batch-size", "16", "--concurrency", "8",
    ]  # fmt: skip


def test_killed_stream_restarts_exactly_once(spark: Any, sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(seed=7)
    texts = tickets(3 * ROWS, seed=43)  # all different
    folders = {k: tmp_path / k for k in ("in", "out", "ckpt")}
    folders["cache"] = tmp_path / "cache.sqlite"
    folders["in"].mkdir()
    _drop(folders["in"], 0, texts)
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "OPENAI_API_KEY": "x",
    }
    driver = subprocess.Popen(
        [sys.executable, str(JOB), *_args(folders, sim.base_url), "--master", "local[2]",
         "--trigger-seconds", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the Python driver and its JVM
    )  # fmt: skip
    try:
        _wait_commit(folders["ckpt"], 0, driver)
        _drop(folders["in"], 1, texts)
        _wait_commit(folders["ckpt"], 1, driver)
        calls_two_batches = sim.stats()["requests"]
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies; no clean stop
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert calls_two_batches >= 2 * math.ceil(ROWS / 16)
    _drop(folders["in"], 2, texts)

    # restart from the checkpoint (in this process's Spark: a new driver for the query)
    load = importlib.util.spec_from_file_location("stream_tickets", JOB)
    assert load is not None and load.loader is not None
    job = importlib.util.module_from_spec(load)
    load.loader.exec_module(job)
    assert job.main([*_args(folders, sim.base_url), "--available-now"]) == 0

    rows = spark.read.parquet(str(folders["out"])).select("ticket_id", "label").collect()
    assert sorted(r["ticket_id"] for r in rows) == list(range(3 * ROWS))  # exactly once
    assert all(r["label"] == intended_label(texts[r["ticket_id"]], LABELS) for r in rows)
    # only the third file's rows were sent after the restart
    assert sim.stats()["requests"] - calls_two_batches <= math.ceil(ROWS / 16) + 1
