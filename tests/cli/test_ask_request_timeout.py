"""``ask --request-timeout``: the per-request limit reaches the model client (slow local models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets import write_tickets

QUESTION = "Among users 12345, 67890 and 11111, how many questions are about billing?"


def test_request_timeout_is_the_per_request_limit(sim_factory: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tickets(tmp_path / "t.parquet", 1000)
    sim = sim_factory(latency_ms=1500)
    args = ["ask", str(data), QUESTION, "--text-column", "question", "--base-url",
            sim.base_url, "--max-retries", "0", "--json"]
    assert main([*args, "--request-timeout", "0.3"]) == 1
    _, err = capsys.readouterr()
    assert "timeout" in err
    assert main([*args, "--request-timeout", "30", "--max-steps", "3"]) in (0, 1)
    _, err = capsys.readouterr()
    assert "timeout" not in err


def test_request_timeout_must_be_positive(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tickets(tmp_path / "t.parquet", 10)
    assert main(["ask", str(data), QUESTION, "--request-timeout", "0"]) == 2
    _, err = capsys.readouterr()
    assert err.strip() == "rlm-pipeline: error: timeout_s must be > 0, got 0.0"
