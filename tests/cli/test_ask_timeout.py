"""``ask --timeout 30`` on a plan whose query would run for minutes exits in time.

The simulator's root (``[adversarial:slow]``) asks for a triple self-join over
100,000 tickets (about 7.5e9 rows).  On Spark the row cap is lifted
(``--max-view-rows``) so the query really starts: the run's timeout cancels its
job by tag and the process exits, leaving no child process (the local JVM)
behind.  On Polars the default cap refuses the join before it runs and the run
answers (with the cap lifted, see test_ask_timeout_worker.py: the join runs in a
worker process that the timeout kills).  The bound is counted from
the run's first printed step (net of start-up: Spark takes seconds to start).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.datasets import write_tickets
from rlm_pipeline.engines.work import _children_of

QUESTION = "How many rows are there? [adversarial:slow]"


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _ask(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_pipeline", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    first_step: list[float] = []
    lines: list[str] = []
    children: set[int] = set()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not first_step and line.strip():
                first_step.append(time.monotonic())
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        children |= _descendants(proc.pid)
        time.sleep(0.2)
        assert time.monotonic() - started < 180, "ask did not exit"
    ended = time.monotonic()
    reader.join(5)
    assert proc.stderr is not None
    return {
        "code": proc.returncode,
        "stdout": "".join(lines),
        "stderr": proc.stderr.read(),
        "run_seconds": ended - (first_step[0] if first_step else started),
        "total_seconds": ended - started,
        "children": children,
    }


@pytest.mark.parametrize(
    "engine", [pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow]), "polars"]
)
def test_ask_timeout_exits_in_time_and_leaves_nothing_running(
    engine: str, sim_factory: Any, tmp_path: Path
) -> None:
    data = write_tickets(tmp_path / "t.parquet", 100_000)
    sim = sim_factory()
    args = ["ask", str(data), QUESTION, "--engine", engine, "--base-url", sim.base_url]
    args += ["--timeout", "30", "--max-retries", "0"]
    if engine == "spark":
        args += ["--max-view-rows", str(10**15)]  # let the join start: it must be cancelled
    out = _ask(args)
    print(
        f"\n{engine}: ask exited {out['run_seconds']:.1f}s after the first step "
        f"({out['total_seconds']:.1f}s in all), code {out['code']}"
    )
    assert out["run_seconds"] < 40, out
    # nothing the process started is still running (the local Spark JVM included)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in out["children"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in out["children"] if _alive(p)]
    if engine == "spark":
        assert out["code"] != 0
        assert "time_s" in out["stderr"] or "timeout" in out["stderr"].lower(), out["stderr"]
        assert "Traceback" not in out["stderr"]
    else:
        assert out["code"] == 0, out["stderr"]
        assert "estimated from the key counts" in out["stdout"]
        assert "Answer: 100000" in out["stdout"]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--max-view-rows=0", "max_view_rows must be a positive integer or None, got 0"),
        ("--tool-timeout=0", "tool_timeout_s must be > 0 or None, got 0.0"),
    ],
)
def test_bad_limit_flags_are_one_line_errors(
    flag: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlm_pipeline.cli.main import main

    data = write_tickets(tmp_path / "t.parquet", 10)
    assert main(["ask", str(data), "How many rows?", flag]) == 2
    _, err = capsys.readouterr()
    assert err.strip() == f"rlm-pipeline: error: {message}"
