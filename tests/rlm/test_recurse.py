"""recurse: sub-runs per partition (depth+1) or plain calls at max depth, as a view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM

from .truth import USERS, label_count, per_user

PER_USER_Q = (
    "For each of users 12345, 67890 and 11111, how many questions are about billing? [plan:recurse]"
)
TOTAL_Q = "Among users 12345, 67890 and 11111, how many questions are about billing? [plan:recurse]"


@pytest.mark.parametrize("max_depth", [1, 2])
def test_recurse_per_user_matches_ground_truth(
    sim_llm: LLM, ticket_parquet: Path, ticket_frame: pl.DataFrame, max_depth: int
) -> None:
    res = rp.RLM(sim_llm, max_depth=max_depth).run(
        PER_USER_Q, str(ticket_parquet), text_column="question"
    )
    assert res.value == per_user(ticket_frame, "billing", USERS)
    recurse = next(r for r in res.trace if r["tool"] == "recurse")
    assert recurse["rows_out"] == len(USERS)
    sub_records = [r for r in res.trace if r["depth"] == 1]
    if max_depth == 1:  # answered by plain calls with the rows inlined
        plain = [r for r in sub_records if r["kind"] == "model" and r["extra"].get("plain")]
        assert len(plain) == len(USERS)
    else:  # one sub-RLM per user, each with its own loop and answer
        starts = [r for r in sub_records if r["kind"] == "run_start"]
        answers = [r for r in sub_records if r["kind"] == "answer"]
        assert len(starts) == len(answers) == len(USERS)
        assert {r["path"].split("=")[-1] for r in starts} == {str(u) for u in USERS}


def test_recurse_total_aggregates_the_answer_view(
    sim_llm: LLM, ticket_parquet: Path, ticket_frame: pl.DataFrame
) -> None:
    res = rp.RLM(sim_llm, max_depth=1).run(TOTAL_Q, str(ticket_parquet), text_column="question")
    assert res.value == label_count(ticket_frame, "billing", users=USERS)


def test_plain_calls_split_to_the_prompt_budget(
    module_sim: Any, sim_llm: LLM, ticket_frame: pl.DataFrame
) -> None:
    # One big partition (all of March) answered by plain calls with a small prompt budget:
    # the rows must be split into parts that fit, and the part answers combined.
    march = ticket_frame.filter(pl.col("date").dt.month() == 3).with_columns(
        pl.lit(1).alias("user_id")
    )
    module_sim.reset_stats()
    res = rp.RLM(sim_llm, max_depth=1, sub_prompt_tokens=1500).run(
        "For each of users 1, how many questions are about billing? [plan:recurse]",
        march.drop("true_label"),
        text_column="question",
    )
    assert res.value == {"1": march.filter(pl.col("true_label") == "billing").height}
    plain = [r for r in res.trace if r["kind"] == "model" and r["extra"].get("plain")]
    assert len(plain) == 1
    assert plain[0]["sub_calls"] > 3  # several parts + combining calls
    assert plain[0]["extra"]["max_prompt_tokens"] <= 1500
    assert module_sim.stats()["by_kind"]["plain"] == plain[0]["sub_calls"]


def test_too_many_partitions_is_a_tool_error(sim_llm: LLM, ticket_parquet: Path) -> None:
    # Without a user filter, recurse by user would fan out over hundreds of partitions.
    res = rp.RLM(sim_llm, max_depth=1).run(
        "For each user, how many questions are about billing? [plan:recurse]",
        str(ticket_parquet),
        text_column="question",
    )
    errors = [r for r in res.trace if r["kind"] == "error" and r["tool"] == "recurse"]
    assert errors and "at most 64" in errors[0]["error"]
    assert res.usage.calls < 10  # refused before any fan-out


def test_a_failed_partition_stops_its_siblings_before_the_error_leaves() -> None:
    """One sub-run failing (say, on the budget) must not leave others running on."""
    import asyncio

    from rlm_pipeline.errors import BudgetExceededError
    from rlm_pipeline.rlm.recurse import _gather_all_or_none

    after_error: list[str] = []

    async def fails() -> int:
        await asyncio.sleep(0.01)
        raise BudgetExceededError("calls", 3, 3)

    async def slow(name: str) -> int:
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            after_error.append(f"{name} cancelled")
            raise
        after_error.append(f"{name} wrote a record")
        return 1

    async def main() -> None:
        with pytest.raises(BudgetExceededError):
            await _gather_all_or_none([slow("a"), fails(), slow("b")])
        # by the time the error is seen, the siblings are done: nothing runs later
        seen = list(after_error)
        await asyncio.sleep(0.4)
        assert after_error == seen == ["a cancelled", "b cancelled"]

    asyncio.run(main())
    assert asyncio.run(_gather_all_or_none([asyncio.sleep(0, result=i) for i in range(3)])) \
        == [0, 1, 2]
