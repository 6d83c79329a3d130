"""``rlm-pipeline classify`` end to end: subprocesses, real Parquet, the simulator over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from rlm_pipeline.llm.cache import ResponseCache
from rlm_pipeline.sim import intended_label
from tests.ops.tickets import LABELS, tickets


def _cmd(sim: Any, src: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rlm_pipeline", "classify", str(src), "--column", "q",
            "--labels", ",".join(LABELS), "--output", str(out), "--base-url", sim.base_url,
            "--cache", str(cache), "--model", "gpt-4.1-mini", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-test"}


def _input(tmp_path: Path, n: int, seed: int) -> tuple[Path, list[str]]:
    texts = tickets(n, seed=seed)
    src = tmp_path / "in.parquet"
    pl.DataFrame({"id": range(n), "q": texts}).write_parquet(src)
    return src, texts


def test_classify_writes_validated_output(sim: Any, tmp_path: Path) -> None:
    src, texts = _input(tmp_path, 400, 31)
    out = tmp_path / "out" / "labels.parquet"
    done = subprocess.run(_cmd(sim, src, out, tmp_path / "c.sqlite", "--id-column", "id"),
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = pl.read_parquet(out)
    assert got["id"].to_list() == list(range(400))
    assert got["label"].to_list() == [intended_label(t, LABELS) for t in texts]
    assert "label=" in done.stdout and "usage:" in done.stdout
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_estimate_calls_nothing(sim: Any, tmp_path: Path) -> None:
    src, _ = _input(tmp_path, 100, 32)
    done = subprocess.run(_cmd(sim, src, tmp_path / "o.parquet", tmp_path / "c.sqlite", "--estimate"),
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "calls" in done.stdout and "input tokens" in done.stdout
    assert sim.stats()["requests"] == 0
    assert not (tmp_path / "o.parquet").exists()


def test_exit_codes(sim: Any, tmp_path: Path) -> None:
    src, _ = _input(tmp_path, 50, 33)
    out = tmp_path / "o.parquet"
    cmd = _cmd(sim, src, out, tmp_path / "c.sqlite")
    cmd[cmd.index("--column") + 1] = "nope"
    bad_column = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert bad_column.returncode == 2 and "nope" in bad_column.stderr
    missing = subprocess.run(_cmd(sim, tmp_path / "missing.parquet", out, tmp_path / "c.sqlite"),
                             env=_env(), capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    # an id column with duplicates is refused before any call: exit 2 naming the column
    dup = tmp_path / "dup.parquet"
    pl.DataFrame({"id": [1, 1], "q": ["refund", "crash"]}).write_parquet(dup)
    sim.reset_stats()
    failed = subprocess.run(_cmd(sim, dup, out, tmp_path / "c.sqlite", "--id-column", "id"),
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    assert "--id-column 'id' is not unique" in failed.stderr
    assert sim.stats()["requests"] == 0
    assert not out.exists()


def test_sigterm_then_rerun_sends_only_unfinished_calls(sim_factory: Any, tmp_path: Path) -> None:
    sim = sim_factory(latency_ms=100, max_concurrency=4)
    src, texts = _input(tmp_path, 1_600, 34)
    out, cache = tmp_path / "o.parquet", tmp_path / "c.sqlite"
    total_calls = -(-len(set(texts)) // 16)
    cmd = _cmd(sim, src, out, cache, "--concurrency", "4")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sim.stats()["ok"] < total_calls // 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "interrupted" in err
    assert not out.exists()
    with ResponseCache(cache) as c:
        answered = len(c)
    assert 0 < answered < total_calls
    sim.reset_stats()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sim.stats()["requests"] == total_calls - answered
    got = pl.read_parquet(out)
    assert got["label"].to_list() == [intended_label(t, LABELS) for t in texts]



def test_rerun_with_other_batch_size_uses_stored_rows(sim: Any, tmp_path: Path) -> None:
    src, texts = _input(tmp_path, 300, 35)
    out, cache = tmp_path / "o.parquet", tmp_path / "c.sqlite"
    first = subprocess.run(_cmd(sim, src, out, cache, "--batch-size", "16"),
                           env=_env(), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert sim.stats()["requests"] == -(-300 // 16)
    sim.reset_stats()
    second = subprocess.run(_cmd(sim, src, out, cache, "--batch-size", "6"),
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert sim.stats()["requests"] == 0
    assert f"usage: 0 calls, {300 // 6} cached" in second.stdout  # calls the stored rows saved
    assert pl.read_parquet(out)["label"].to_list() == [intended_label(t, LABELS) for t in texts]
