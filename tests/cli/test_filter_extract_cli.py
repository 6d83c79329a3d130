"""``rlm-pipeline filter`` and ``rlm-pipeline extract`` end to end (in-process CLI, simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets import write_tickets
from rlm_pipeline.sim.mapper import condition_holds, extract_fields


@pytest.fixture
def tickets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RLM_PIPELINE_CACHE", str(tmp_path / "cache.sqlite"))
    return write_tickets(tmp_path / "t.parquet", 200, seed=5)


def _args(sim: Any, *extra: str) -> list[str]:
    return [*extra, "--base-url", sim.base_url, "--model", "sim-1", "--max-retries", "0"]


def test_extract_writes_typed_columns(sim: Any, tickets_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.parquet"
    fields = "amount:number, topic:billing|technical|account|other, month:date"
    code = main(_args(sim, "extract", str(tickets_file), "--column", "question",
                      "--fields", fields, "--output", str(out)))
    assert code == 0, capsys.readouterr().err
    got = pl.read_parquet(out)
    source = pl.read_parquet(tickets_file)
    assert got["ticket_id"].to_list() == source["ticket_id"].to_list()
    assert got.schema["amount"] == pl.Float64 and got.schema["month"] == pl.Date
    spec = {"amount": "number", "topic": ["billing", "technical", "account", "other"]}
    for text, amount, topic in got.select("question", "amount", "topic").iter_rows():
        want = extract_fields(text, spec)
        assert (amount, topic) == (
            None if want["amount"] is None else float(want["amount"]),
            want["topic"],
        )
    assert "wrote 200 rows" in capsys.readouterr().out


def test_extract_refuses_bad_fields_with_exit_2(sim: Any, tickets_file: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.parquet"
    code = main(_args(sim, "extract", str(tickets_file), "--column", "question",
                      "--fields", "amount:float", "--output", str(out)))
    assert code == 2 and not out.exists()
    assert "type must be one of" in capsys.readouterr().err
    assert sim.stats()["requests"] == 0


def test_filter_on_error(sim_factory: Any, tickets_file: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    sim = sim_factory(fault_500=0.3, seed=9)
    out = tmp_path / "f.parquet"
    base = _args(sim, "filter", str(tickets_file), "--column", "question",
                 "--condition", "asks for a refund", "--output", str(out))
    assert main(base) == 1 and not out.exists()  # raise: nothing written
    err = capsys.readouterr().err
    assert "rows have no answer" in err and "api_error" in err and "--on-error" in err

    assert main([*base, "--on-error", "keep"]) == 0
    kept = pl.read_parquet(out)
    assert "filter_error" in kept.columns
    answered = kept.filter(pl.col("filter_error").is_null())
    assert all(condition_holds(t, "asks for a refund") for t in answered["question"])

    sim.set_config(fault_500=0.0)
    assert main(base) == 0  # the failed rows asked again; the rest from the cache
    got = pl.read_parquet(out)
    source = pl.read_parquet(tickets_file)
    want = [t for t in source["question"] if condition_holds(t, "asks for a refund")]
    assert got["question"].to_list() == want and got.columns == source.columns
    assert f"wrote {len(want)} of 200 rows" in capsys.readouterr().out


def test_filter_refuses_a_run_where_no_row_got_an_answer(
    sim: Any, tickets_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.parquet"
    base = _args(sim, "filter", str(tickets_file), "--column", "question",
                 "--condition", "asks for a refund", "--output", str(out), "--on-error", "drop",
                 "--price-input", "1", "--price-output", "1", "--max-cost-usd", "0.000001")
    assert main(base) == 1 and not out.exists()  # every row budget_exceeded: not a result
    err = capsys.readouterr().err
    assert "no row got an answer" in err and "budget_exceeded" in err
    assert main([*base, "--allow-errors"]) == 0  # the caller's explicit choice
    assert pl.read_parquet(out).height == 0
