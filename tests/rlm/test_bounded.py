"""The root context stays bounded: the largest prompt does not grow with the table."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets.tickets import tickets
from rlm_pipeline.llm.config import LLM

from .truth import USERS, label_count

DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    frame = tickets(1_000_000, seed=0)
    path = tmp_path_factory.mktemp("million") / "tickets.parquet"
    frame.drop("true_label").write_parquet(path)
    return frame, path


def _run(llm: LLM, path: Path) -> rp.RLMResult:
    return rp.RLM(llm).run(DEMO_Q, str(path), text_column="question")


@pytest.mark.slow
def test_largest_prompt_is_bounded_at_5k_and_1m_rows(
    sim_llm: LLM,
    ticket_parquet: Path,
    ticket_frame: pl.DataFrame,
    million: tuple[pl.DataFrame, Path],
) -> None:
    small = _run(sim_llm, ticket_parquet)
    big_frame, big_path = million
    big = _run(sim_llm, big_path)
    assert small.value == label_count(ticket_frame, "billing", users=USERS)
    assert big.value == label_count(big_frame, "billing", users=USERS)
    assert big.value > 10 * small.value  # the 1M question really reads ~200× more rows
    assert small.usage.max_prompt_tokens < 8000
    assert big.usage.max_prompt_tokens < 8000
    # 200× the rows, the same prompts (up to a few digits of row counts in the text)
    assert abs(big.usage.max_prompt_tokens - small.usage.max_prompt_tokens) <= 16
    rows_in = next(r["rows_in"] for r in big.trace if r["kind"] == "run_start")
    assert rows_in == 1_000_000
    print(
        f"\nlargest prompt: 5k rows {small.usage.max_prompt_tokens} tokens, "
        f"1M rows {big.usage.max_prompt_tokens} tokens; calls {small.usage.calls} vs "
        f"{big.usage.calls}"
    )
