"""A hostile root model (scripted in the simulator) cannot escape the views.

Each mode ends cleanly with its mistakes recorded as tool errors; the files it
names are never created or read, and the input table is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM

SECRET = "TOP-SECRET-7f3a9c"


@pytest.mark.parametrize(
    ("mode", "min_errors"),
    [("ddl", 10), ("files", 11), ("badjson", 8), ("unknown-tool", 6)],
)
def test_adversarial_mode_ends_cleanly_and_touches_nothing(
    sim_llm: LLM, ticket_parquet: Path, tmp_path: Path, mode: str, min_errors: int
) -> None:
    secret_file = tmp_path / "secret.csv"
    secret_file.write_text(f"secret\n{SECRET}\n")
    target = tmp_path / "out" / "stolen.parquet"
    before = pl.read_parquet(ticket_parquet)
    trace_file = tmp_path / "trace.jsonl"
    path = secret_file if mode in ("files", "unknown-tool") else target
    question = f"How many questions are about billing? [adversarial:{mode}] {path}"

    res = rp.RLM(sim_llm).run(question, str(ticket_parquet), trace_path=str(trace_file))

    assert res.stop_reason == "answer"
    assert res.value == "adversarial script finished"
    assert res.errors >= min_errors
    errors = [r for r in res.trace if r["kind"] == "error"]
    assert len(errors) == res.errors
    if mode == "badjson":  # peek n=5000 is cut to the most peek shows, with a note
        cut = [r for r in res.trace if r["kind"] == "tool" and r["tool"] == "peek"]
        assert len(cut) == 1 and "n = 5000 was cut to 20" in cut[0]["result_summary"]
    assert all(r["error"] for r in errors)
    # nothing outside the views was touched
    assert not target.exists() and not target.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["secret.csv", "trace.jsonl"])
    assert SECRET not in trace_file.read_text()
    assert SECRET not in json.dumps(res.trace)
    assert pl.read_parquet(ticket_parquet).equals(before)


def test_ddl_leaves_the_context_view_intact(sim_llm: LLM, ticket_parquet: Path) -> None:
    res = rp.RLM(sim_llm).run("count [adversarial:ddl]", str(ticket_parquet))
    peeks = [r for r in res.trace if r["kind"] == "tool" and r["tool"] == "peek"]
    assert peeks and "first 2 rows" in peeks[-1]["result_summary"]
    sql_errors = [r for r in res.trace if r["kind"] == "error" and r["tool"] == "sql"]
    assert len(sql_errors) == 9
