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
