"""The run's trace: records in order, JSONL on disk, valid against the trace schema."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import BudgetExceededError, LLMError
from rlm_pipeline.llm.config import LLM, Budget
from rlm_pipeline.trace.writer import read_trace

SCHEMA = Path(__file__).parents[2] / "schemas" / "trace.schema.json"
DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing? [plan:recurse]"


def test_trace_file_matches_result_and_schema(
    sim_llm: LLM, ticket_parquet: Path, tmp_path: Path
) -> None:
    seen: list[dict] = []
    path = tmp_path / "run.jsonl"
    res = rp.RLM(sim_llm, max_depth=2).run(
        DEMO_Q,
        str(ticket_parquet),
        text_column="question",
        trace_path=str(path),
        on_step=seen.append,
    )
    on_disk = read_trace(path)
    assert on_disk == json.loads(json.dumps(res.trace, default=str))
    assert [r["seq"] for r in on_disk] == list(range(len(on_disk)))
    assert seen == res.trace
    assert on_disk[0]["kind"] == "run_start" and on_disk[-1]["kind"] == "run_end"
    assert on_disk[-1]["extra"]["value"] == res.value
    assert on_disk[-1]["extra"]["usage"]["calls"] == res.usage.calls
    assert {r["depth"] for r in on_disk} == {0, 1}
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for record in on_disk:
        validator.validate(record)
    assert res.trace_path == str(path)


@pytest.mark.parametrize("failure", ["budget", "timeout", "root_model_error"])
def test_a_failed_run_still_ends_its_trace_file_with_run_end(
    failure: str,
    sim_factory: Callable[..., Any],
    ticket_parquet: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    knobs: dict[str, Any] = {"timeout": {"latency_ms": 400},
                             "root_model_error": {"fault_500": 1.0}}.get(failure, {})
    server = sim_factory(**knobs)
    llm = LLM(model="sim-1", base_url=server.base_url, api_key="sim", max_retries=0)
    rlm = rp.RLM(llm, budget=Budget(max_calls=3) if failure == "budget" else None,
                 timeout_s=1.0 if failure == "timeout" else None)
    path = tmp_path / "failed.jsonl"
    seen: list[dict[str, Any]] = []
    expected = LLMError if failure == "root_model_error" else BudgetExceededError
    with caplog.at_level(logging.WARNING, logger="rlm_pipeline.trace.writer"), \
            pytest.raises(expected) as info:
        rlm.run(DEMO_Q, str(ticket_parquet), text_column="question", trace_path=str(path),
                on_step=seen.append)
    assert "written after close" not in caplog.text
    on_disk = read_trace(path)
    assert on_disk == json.loads(json.dumps(seen, default=str))
    assert [r["seq"] for r in on_disk] == list(range(len(on_disk)))
    assert on_disk[0]["kind"] == "run_start"
    last = on_disk[-1]
    assert last["kind"] == "run_end" and last["extra"]["answer"] is None
    assert last["error"] and str(info.value)[:40] in last["error"]


def test_peek_and_filter_record_rows_in(sim_llm: LLM, ticket_parquet: Path) -> None:
    res = rp.RLM(sim_llm).run(
        "Among users 12345, 67890 and 11111, how many questions are about billing?",
        str(ticket_parquet), text_column="question",
    )
    tools = {r["tool"]: r for r in res.trace if r["kind"] == "tool"}
    total = res.trace[0]["rows_in"]
    assert total == 5000
    assert (tools["peek"]["rows_in"], tools["peek"]["rows_out"]) == (total, 3)
    subset = tools["filter"]["rows_out"]
    assert tools["filter"]["rows_in"] == total and 0 < subset < total
    assert tools["classify"]["rows_in"] == subset  # the filtered view went on to classify
