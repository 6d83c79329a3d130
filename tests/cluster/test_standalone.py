"""classify on a real Spark standalone cluster (master + 2 workers on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyspark
import pytest

from rlm_pipeline.sim import intended_label
from tests.ops.tickets import LABELS, tickets

pytestmark = [pytest.mark.cluster, pytest.mark.spark]

SPARK_HOME = os.path.dirname(pyspark.__file__)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "SPARK_HOME": SPARK_HOME, "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOG_DIR": str(tmp_path / "logs")}
    port, ui = _port(), _port()
    spark_class = os.path.join(SPARK_HOME, "bin", "spark-class")
    procs = [subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(ui)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    master = f"spark://127.0.0.1:{port}"
    for i in range(2):
        procs.append(subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
             "--cores", "1", "--memory", "1g", "--webui-port", str(_port()),
             "--work-dir", str(tmp_path / f"work{i}")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                    status = json.load(r)
                if sum(w.get("state") == "ALIVE" for w in status.get("workers", [])) == 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("standalone cluster did not start: 2 alive workers expected")
            time.sleep(0.5)
        yield master
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_classify_on_standalone_cluster(cluster: str, sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(latency_ms=50)
    texts = tickets(1_200, distinct=700, seed=21)
    data = tmp_path / "in.parquet"
    pl.DataFrame({"id": range(len(texts)), "q": texts}).write_parquet(data)
    cache = tmp_path / "cache.sqlite"
    rpm, concurrency = 1_200, 4
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [sys.executable, "-m", "tests.cluster.job", cluster, sim.base_url, str(cache), str(data),
           str(rpm), str(concurrency)]
    job = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert job.stdout is not None and job.stdin is not None
        line = job.stdout.readline()
        assert line, job.stderr.read()[-3000:] if job.stderr else "job died"
        report = json.loads(line)
        out = pl.read_parquet(f"{data}.out0.parquet")
        assert out.height == len(texts) and report["rows"] == len(texts)
        assert sorted(out["id"].to_list()) == list(range(len(texts)))
        pairs = out.select("q", "label").iter_rows()
        assert all(label == intended_label(q, LABELS) for q, label in pairs)
        stats = sim.stats()
        assert stats["peak_in_flight"] <= concurrency
        starts = sorted(entry[0] for entry in stats["requests_log"])
        # requests per minute held: no 60 s window (and, scaled, no 5 s window) holds more
        for i, t0 in enumerate(starts):
            assert sum(1 for t in starts[i:] if t - t0 < 60.0) <= rpm
            assert sum(1 for t in starts[i : i + 200] if t - t0 < 5.0) <= rpm / 12 + 2
        # the executors sent every request and wrote the cache: a second run is all hits
        assert report["usage"]["calls"] == stats["requests"] > 0
        sim.reset_stats()
        job.stdin.write("go\n")
        job.stdin.flush()
        second = json.loads(job.stdout.readline())
        assert sim.stats()["requests"] == 0 and second["usage"]["calls"] == 0
        assert second["cached_rows"] == second["rows"] == len(texts)
        # cached calls are the calls the row store saved, ceil(stored texts / batch_size) per
        # chunk, so they are not the first run's calls: those include the driver's preflight
        # (not sent again: the response cache holds its reply, and a skipped preflight counts
        # nothing), and the first run's tasks already saved some calls (the two partitions
        # share texts: a task finds what the other one stored) and a chunk split into stored
        # and asked texts rounds up twice
        task_calls = report["usage"]["calls"] - 1  # less the preflight
        saved = report["usage"]["cached_calls"]
        assert task_calls <= second["usage"]["cached_calls"] <= task_calls + saved
        assert pl.read_parquet(f"{data}.out1.parquet").equals(out)
        assert job.wait(timeout=60) == 0
    finally:
        if job.poll() is None:
            job.kill()
