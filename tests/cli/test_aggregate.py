"""``rlm-pipeline aggregate`` in-process through ``main``: real Parquet, the simulator over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.sim.folds import SUMMARY_LABELS, parse_summary, summary_counts
from tests.ops.tickets import tickets


@pytest.fixture
def src(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    df = pl.DataFrame({"user": [i % 3 for i in range(600)], "q": tickets(600, seed=12)})
    path = tmp_path / "in.parquet"
    df.write_parquet(path)
    return path, df


def _argv(sim: Any, src: Path, out: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["aggregate", str(src), "--column", "q", "--instruction", "main complaints",
            "--by", "user", "--output", str(out), "--base-url", sim.base_url,
            "--cache", str(tmp_path / "c.sqlite"), "--max-prompt-tokens", "800",
            "--summary-tokens", "48", *extra]


def test_writes_one_summary_per_group(sim: Any, src: Any, tmp_path: Path, capsys: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    path, df = src
    out = tmp_path / "out.parquet"
    assert main(_argv(sim, path, out, tmp_path)) == 0
    got = pl.read_parquet(out)
    assert got["user"].to_list() == [0, 1, 2]
    assert got["rows"].to_list() == got["rows_summarised"].to_list() == [200, 200, 200]
    for user, summary in got.select("user", "summary").iter_rows():
        texts = df.filter(pl.col("user") == user)["q"].to_list()
        assert parse_summary(summary, SUMMARY_LABELS) == summary_counts(texts)
    printed = capsys.readouterr().out
    assert "wrote 3 groups (600 rows)" in printed and "largest prompt" in printed
    sent = sim.stats()["requests"]
    again = tmp_path / "again.parquet"  # validated (built-in checks) before it is written
    assert main(_argv(sim, path, again, tmp_path)) == 0
    assert sim.stats()["requests"] == sent  # cached
    assert pl.read_parquet(again).equals(got)


def test_estimate_and_bad_input_send_nothing(sim: Any, src: Any, tmp_path: Path, capsys: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    path, _ = src
    out = tmp_path / "o.parquet"
    assert main(_argv(sim, path, out, tmp_path, "--estimate")) == 0
    assert "calls" in capsys.readouterr().out
    assert main(_argv(sim, path, out, tmp_path, "--by", "nope")) == 2
    assert "column 'nope' not found" in capsys.readouterr().err
    assert main(_argv(sim, path, path, tmp_path)) == 2
    assert main(_argv(sim, path, out, tmp_path, "--max-prompt-tokens", "50")) == 2
    assert sim.stats()["requests"] == 0 and not out.exists()


def test_missing_rows_exit_1_unless_allowed(sim: Any, src: Any, tmp_path: Path, capsys: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    path, _ = src
    out = tmp_path / "o.parquet"
    limit = ["--max-cost-usd", "0.0005", "--concurrency", "1", "--no-cache"]
    assert main(_argv(sim, path, out, tmp_path, *limit)) == 1
    err = capsys.readouterr().err
    assert "have rows missing from their summary" in err and "budget_exceeded" in err
    assert not out.exists()
    assert main(_argv(sim, path, out, tmp_path, *limit, "--allow-errors")) == 0
    got = pl.read_parquet(out)
    assert got["summary_error"].null_count() < 3
