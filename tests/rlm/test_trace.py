"""The run's trace: records in order, JSONL on disk, valid against the trace schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import rlm_pipeline as rp
from rlm_pipeline.llm.config import LLM
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
