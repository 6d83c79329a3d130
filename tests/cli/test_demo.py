"""``rlm-pipeline demo``: offline, correct against the hidden labels, fast."""

from __future__ import annotations

import re
import time
from pathlib import Path

import polars as pl
import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets.tickets import tickets


def test_demo_answers_the_ground_truth_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = main(["demo", "--out", str(tmp_path)])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert elapsed < 30
    frame = tickets(5000, seed=0)
    truth = frame.filter(
        pl.col("user_id").is_in([12345, 67890, 11111]) & (pl.col("true_label") == "billing")
    ).height
    answer = re.search(r"^Answer:\s+(\S+)$", out, re.MULTILINE)
    shown_truth = re.search(r"^Ground truth: (\d+) ", out, re.MULTILINE)
    assert answer and shown_truth
    assert int(answer.group(1)) == truth == int(shown_truth.group(1))
    assert "SIMULATOR" in out and "--base-url" in out and "OPENAI_BASE_URL" in out
    largest = re.search(r"largest prompt ([\d,]+) tokens", out)
    whole = re.search(r"one prompt would be ~([\d,]+) tokens", out)
    assert largest and whole
    assert int(largest.group(1).replace(",", "")) < 8000
    assert int(whole.group(1).replace(",", "")) > 50 * int(largest.group(1).replace(",", ""))
    # steps were printed as they happened, before the answer
    assert out.index("step 1") < out.index("step 5") < out.index("Answer:")
    # the model-visible Parquet has no hidden labels
    assert "true_label" not in pl.read_parquet_schema(tmp_path / "tickets.parquet")
    assert (tmp_path / "trace.jsonl").exists()
