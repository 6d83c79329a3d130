"""What the library reads for itself is not the model's 20-row, 200-character preview.

``recurse`` must answer every partition (up to ``MAX_RECURSE_PARTITIONS``) and match
long keys exactly; ``classify``'s tool result must count every label.  Root runs are
driven by the simulator's scripted planner (``[plan:recurse]``, ``labels: …``).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.rlm.recurse import MAX_RECURSE_PARTITIONS
from rlm_pipeline.rlm.render import MAX_RESULT_CHARS

TOTAL_Q = "How many questions are about billing? [plan:recurse]"

ENGINES = [
    pytest.param("polars", id="polars"),
    pytest.param("spark", id="spark", marks=pytest.mark.spark),
]


def _users(frame: pl.DataFrame, n: int, min_rows: int = 1) -> pl.DataFrame:
    """The rows of the ``n`` users with the fewest tickets (at least ``min_rows``; ties by
    id), hidden label kept."""
    sizes = frame.group_by("user_id").len().filter(pl.col("len") >= min_rows)
    sizes = sizes.sort(["len", "user_id"])
    chosen = sizes["user_id"].head(n).to_list()
    assert len(chosen) == n
    return frame.filter(pl.col("user_id").is_in(chosen))


def _billing(frame: pl.DataFrame) -> int:
    return frame.filter(pl.col("true_label") == "billing").height


def _run(
    llm: LLM, frame: pl.DataFrame, question: str, engine: str, spark: Any, max_depth: int = 1
) -> Any:
    rlm = rp.RLM(llm, engine=engine, spark=spark, max_depth=max_depth)
    return rlm.run(question, frame.drop("true_label"), text_column="question")


def _spark(engine: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("spark") if engine == "spark" else None


def _recurse_record(res: Any) -> dict[str, Any]:
    return next(r for r in res.trace if r["tool"] == "recurse" and r["kind"] != "error")


def _plain_records(res: Any) -> list[dict[str, Any]]:
    return [r for r in res.trace if r["kind"] == "model" and r["extra"].get("plain")]


@pytest.mark.parametrize(
    "engine,n",
    [
        pytest.param("polars", 30, id="polars-30"),
        pytest.param("polars", 64, id="polars-64"),
        pytest.param("spark", 30, id="spark-30", marks=pytest.mark.spark),
    ],
)
def test_recurse_answers_every_partition(
    sim_llm: LLM,
    ticket_frame: pl.DataFrame,
    request: pytest.FixtureRequest,
    engine: str,
    n: int,
) -> None:
    frame = _users(ticket_frame, n)
    res = _run(sim_llm, frame, TOTAL_Q, engine, _spark(engine, request))
    record = _recurse_record(res)
    assert record["rows_out"] == n
    assert record["rows_in"] == frame.height
    assert record["result_summary"].startswith(f"{n} partitions answered")
    plain = _plain_records(res)
    assert sorted(r["path"].split("=", 1)[1] for r in plain) == sorted(
        str(u) for u in frame["user_id"].unique()
    )
    assert res.value == _billing(frame)


def test_recurse_over_its_maximum_is_a_tool_error_before_any_sub_call(
    module_sim: Any, sim_llm: LLM, ticket_frame: pl.DataFrame
) -> None:
    n = MAX_RECURSE_PARTITIONS + 1
    frame = _users(ticket_frame, n)
    module_sim.reset_stats()
    res = _run(sim_llm, frame, TOTAL_Q, "polars", None)
    errors = [r for r in res.trace if r["kind"] == "error" and r["tool"] == "recurse"]
    assert errors
    message = errors[0]["error"]
    assert f"has {n} partitions" in message
    assert f"at most {MAX_RECURSE_PARTITIONS}" in message
    assert "n=" in message  # tells the model how to make fewer partitions
    assert not _plain_records(res)
    assert module_sim.stats()["by_kind"].get("plain", 0) == 0


def _long_key_frame(ticket_frame: pl.DataFrame) -> pl.DataFrame:
    """Four users with 1,000-character ids (equal over their first 300 characters, with a
    quote and a backslash), and some rows with a null user."""
    frame = _users(ticket_frame, 5, min_rows=8)
    ids = sorted(frame["user_id"].unique().to_list())
    common = "O'Brien \\ user " + "k" * 285
    long_ids = {u: (common + f"-{i}-").ljust(1000, "z") for i, u in enumerate(ids[:4])}
    mapping = {**{str(u): v for u, v in long_ids.items()}, str(ids[4]): None}
    assert all(len(v) == 1000 for v in long_ids.values())
    return frame.with_columns(
        pl.col("user_id").cast(pl.String).replace_strict(mapping, return_dtype=pl.String)
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_recurse_matches_long_keys_and_nulls(
    sim_llm: LLM, ticket_frame: pl.DataFrame, request: pytest.FixtureRequest, engine: str
) -> None:
    frame = _long_key_frame(ticket_frame)
    assert frame["user_id"].null_count() > 0 and _billing(frame) > 0
    res = _run(sim_llm, frame, TOTAL_Q, engine, _spark(engine, request))
    record = _recurse_record(res)
    assert record["rows_out"] == 5  # four long keys and the null key
    # every partition got its own rows: no key lost its rows to a cut
    assert sum(r["rows_in"] for r in _plain_records(res)) == frame.height
    assert all(r["rows_in"] > 0 for r in _plain_records(res))
    assert res.value == _billing(frame)


def test_sub_runs_over_long_keys_see_their_own_rows(
    sim_llm: LLM, ticket_frame: pl.DataFrame
) -> None:
    # max_depth=2: each partition is the `context` of a sub-RLM (Polars: a lazy filter)
    frame = _long_key_frame(ticket_frame)
    res = _run(sim_llm, frame, TOTAL_Q, "polars", None, max_depth=2)
    assert _recurse_record(res)["rows_out"] == 5
    starts = [r for r in res.trace if r["kind"] == "run_start" and r["depth"] == 1]
    assert len(starts) == 5
    assert res.value == _billing(frame)


def _labelled_frame(labels: list[str]) -> pl.DataFrame:
    """Rows whose text names one label; label i gets ``i % 3 + 1`` rows."""
    texts = [
        f"please help me with {label.split()[0]} today"
        for i, label in enumerate(labels)
        for _ in range(i % 3 + 1)
    ]
    return pl.DataFrame({"user_id": list(range(len(texts))), "question": texts})


def test_classify_counts_every_one_of_50_labels(sim_llm: LLM) -> None:
    labels = [f"lab{i:02d}" for i in range(50)]
    frame = _labelled_frame(labels)
    text = _classify_directly(sim_llm, frame, labels)
    assert len(text) <= MAX_RESULT_CHARS
    assert f"{frame.height} rows labelled" in text
    for i, label in enumerate(labels):
        assert re.search(rf"\b{label}: {i % 3 + 1}\b", text), label
    assert "more labels" not in text


def test_classify_counts_say_how_many_labels_did_not_fit(sim_llm: LLM) -> None:
    # 50 labels of ~90 characters cannot all be shown in ~2,000 characters: the text says
    # how many were left out instead of dropping them silently.  (The planner reads only
    # one-word labels from a question, so the tool is called directly.)
    labels = [f"lab{i:02d} " + "x" * 85 for i in range(50)]
    text = _classify_directly(sim_llm, _labelled_frame(labels), labels)
    assert len(text) <= MAX_RESULT_CHARS
    shown = sum(1 for label in labels if f"{label}: " in text)
    assert 0 < shown < 50
    assert f"… and {50 - shown} more labels" in text


def test_tool_results_count_failed_rows_by_reason(sim_llm: LLM) -> None:
    frame = pl.DataFrame(
        {"question": ["refund my invoice", None, "app crashes", "", None], "n": range(5)}
    )
    labels = ["billing", "technical"]
    text = _classify_directly(sim_llm, frame, labels)
    assert "label counts: null: 3, billing: 1, technical: 1;" in text
    assert "; 3 rows failed (label null, reason in `label_error`: empty_input 3)" in text
    args = {"view": "context", "column": "question", "instruction": "Its topic?", "name": "m"}
    text = _dispatch(sim_llm, frame, "llm_map", args)
    assert "3 rows failed (value null, reason in `value_error`: empty_input 3)" in text


def _classify_directly(llm: LLM, frame: pl.DataFrame, labels: list[str]) -> str:
    """One `classify` tool call over ``frame`` in a hand-built root scope."""
    args = {"view": "context", "column": "question", "labels": labels, "name": "lab"}
    return _dispatch(llm, frame, "classify", args)


def _dispatch(llm: LLM, frame: pl.DataFrame, tool: str, args: dict[str, Any]) -> str:
    """One call of ``tool`` over ``frame`` in a hand-built root scope; its result text."""
    import asyncio
    import json

    from rlm_pipeline.engines import open_engine
    from rlm_pipeline.llm.client import LLMClient
    from rlm_pipeline.llm.config import Budget
    from rlm_pipeline.llm.usage import UsageMeter
    from rlm_pipeline.rlm.loop import run_loop
    from rlm_pipeline.rlm.scope import RunState, Scope
    from rlm_pipeline.rlm.steps import StepLog
    from rlm_pipeline.rlm.tools import dispatch

    async def go() -> str:
        meter, budget = UsageMeter(), Budget()
        client = LLMClient(llm, meter=meter, budget=budget)
        state = RunState(
            run_id="test",
            root_client=client,
            sub_client=client,
            sub_llm=llm,
            meter=meter,
            budget=budget,
            max_steps=5,
            max_depth=1,
            sub_prompt_tokens=8000,
            max_parallel=4,
            steps=StepLog("test", None, None),
            run_loop=run_loop,
        )
        engine = open_engine(frame, "polars")
        scope = Scope(state, engine, 0, "root", "question", client=client, llm=llm)
        try:
            outcome = await dispatch(tool, json.dumps(args), scope)
        finally:
            await client.aclose()
            state.steps.close()
        assert outcome.error is None, outcome.text
        return str(outcome.text)

    return asyncio.run(go())
