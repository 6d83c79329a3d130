"""``rlm-pipeline ask``: live steps, ``--json`` output shape, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets.tickets import tickets

QUESTION = "Among users 12345, 67890 and 11111, how many questions are about billing?"


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return tickets(5000, seed=0)


@pytest.fixture(scope="module")
def data(frame: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ask") / "tickets.parquet"
    frame.drop("true_label").write_parquet(path)
    return path


def _truth(frame: pl.DataFrame) -> int:
    users = [12345, 67890, 11111]
    return frame.filter(pl.col("user_id").is_in(users) & (pl.col("true_label") == "billing")).height


def test_json_output_is_one_object(
    sim: Any, data: Path, frame: pl.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.jsonl"
    code = main(
        [
            "ask",
            str(data),
            QUESTION,
            "--text-column",
            "question",
            "--base-url",
            sim.base_url,
            "--model",
            "sim-1",
            "--trace",
            str(trace),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)  # exactly one JSON document on stdout
    assert set(payload) == {"answer", "value", "usage", "trace_path"}
    assert payload["value"] == _truth(frame)
    assert payload["answer"] == str(_truth(frame))
    assert payload["trace_path"] == str(trace) and trace.exists()
    assert payload["usage"]["calls"] >= 6
    assert 0 < payload["usage"]["max_prompt_tokens"] < 8000
    assert "classify" in err and "filter" in err  # steps went to stderr


def test_human_output_prints_steps_then_answer(
    sim: Any, data: Path, frame: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ask", str(data), QUESTION, "--base-url", sim.base_url, "--model", "sim-1"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    step_lines = [i for i, line in enumerate(lines) if "step " in line]
    answer_line = next(i for i, line in enumerate(lines) if line.startswith("Answer:"))
    assert len(step_lines) == 5 and max(step_lines) < answer_line
    assert lines[answer_line] == f"Answer: {_truth(frame)}"
    assert any(line.startswith("Usage:") and "largest prompt" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["MISSING"], "not found"),
        (["DATA", "--text-column", "nope"], "text column"),
        (["DATA", "--max-steps", "0"], "max-steps"),
        (["DATA", "--max-depth", "-1"], "max-depth"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    sim: Any,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    first = str(tmp_path / "missing.parquet") if args[0] == "MISSING" else str(data)
    code = main(["ask", first, QUESTION, *args[1:], "--base-url", sim.base_url])
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


def test_runtime_failures_exit_1(sim: Any, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(
        [
            "ask",
            str(data),
            QUESTION,
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--max-retries",
            "0",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 1 and err.startswith("rlm-pipeline: error:")
    # a model that never answers: the run ends at --max-steps and the command fails
    code = main(
        [
            "ask",
            str(data),
            QUESTION + " [adversarial:forever]",
            "--base-url",
            sim.base_url,
            "--max-steps",
            "3",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["value"] is None
    assert "no answer" in err
    # a budget hit is a runtime failure too
    code = main(["ask", str(data), QUESTION, "--base-url", sim.base_url, "--max-calls", "2"])
    _, err = capsys.readouterr()
    assert code == 1 and "budget exceeded: calls" in err


def test_console_script_runs_end_to_end(sim: Any, data: Path, frame: pl.DataFrame) -> None:
    exe = Path(sys.executable).parent / "rlm-pipeline"
    proc = subprocess.run(
        [str(exe), "ask", str(data), QUESTION, "--base-url", sim.base_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["value"] == _truth(frame)
