"""Real trace records validate against schemas/trace.schema.json; bad ones do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rlm_pipeline.trace import TraceRecord, read_trace

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "trace.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    assert cls is jsonschema.Draft202012Validator
    return cls(schema)


def test_written_records_validate(
    validator: Any, sample_trace_file: Path, sample_records: list[TraceRecord]
) -> None:
    lines = read_trace(sample_trace_file)
    assert len(lines) == len(sample_records)
    kinds = {line["kind"] for line in lines}
    assert kinds == {"run_start", "model", "tool", "error", "answer", "run_end"}
    for line in lines:
        validator.validate(line)


@pytest.mark.parametrize(
    ("change", "bad_path"),
    [
        ({"kind": "thought"}, "kind"),
        ({"seq": -1}, "seq"),
        ({"path": "/root"}, "path"),
        ({"result_summary": "x" * 501}, "result_summary"),
        ({"surprise": 1}, ""),
        ({"extra": {"engine": "polars"}}, "extra"),  # run_start without a question
    ],
)
def test_schema_rejects_broken_lines(
    validator: Any, sample_records: list[TraceRecord], change: dict[str, Any], bad_path: str
) -> None:
    line = {**sample_records[0].to_dict(), **change}
    errors = list(validator.iter_errors(line))
    assert errors, f"schema accepted {change}"
    if bad_path:
        assert any(bad_path in [str(p) for p in e.absolute_path] for e in errors)


def _line(**fields: Any) -> dict[str, Any]:
    base = TraceRecord(run_id="r", seq=1, depth=0, path="root", kind="tool", tool="classify")
    return {**base.to_dict(), **fields}


def test_schema_bounds_model_text_actions_and_row_samples(validator: Any) -> None:
    row = {"text": "Refund me", "answer": "billing", "error": None}
    sample = {"column": "q", "answer_column": "label", "rows_total": 9, "rows": [row],
              "failed_total": 0, "failed": []}
    turn = {"step": 1, "protocol": "text", "text": "I will peek.",
            "actions": [{"tool": "peek", "arguments": "{}"}]}
    assert validator.is_valid(_line(extra={"sample": sample}))
    assert validator.is_valid(_line(kind="model", tool=None, extra=turn))
    bad = [
        _line(extra={"sample": {**sample, "rows": [row] * 6}}),  # more than 5 rows
        _line(extra={"sample": {**sample, "rows": [{**row, "text": "x" * 301}]}}),
        _line(extra={"sample": {**sample, "rows": [{"text": "a", "answer": "b"}]}}),  # no error
        _line(kind="model", tool=None, extra={**turn, "text": "x" * 4001}),
        _line(kind="model", tool=None, extra={**turn, "actions": [{"tool": "peek"}]}),
        _line(kind="model", tool=None, extra={**turn, "actions": [turn["actions"][0]] * 9}),
        _line(kind="run_start", tool=None,
              extra={"question": "q", "models": {"root": {"model": "m", "price": [1.0]}}}),
    ]
    for line in bad:
        assert not validator.is_valid(line), line["extra"]
