"""Real outputs validate against the JSON Schemas in schemas/ and the Arrow schemas in code."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets import TICKETS_SCHEMA, tickets
from rlm_pipeline.schemas import ERROR_KINDS, classified_schema

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
LABELS = ["billing", "technical", "account", "other"]


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())  # type: ignore[no-any-return]


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()}
        for row in frame.iter_rows(named=True)
    ]


def test_classified_output_matches_both_schemas(sim: Any) -> None:
    data = tickets(300, seed=2).drop("true_label").with_columns(
        question=pl.when(pl.col("ticket_id") % 50 == 0).then(None).otherwise(pl.col("question"))
    )
    llm = rp.LLM(model="sim-1", base_url=sim.base_url, api_key="x")
    out = rp.classify(data, column="question", labels=LABELS, llm=llm)
    input_schema = pa_schema_without(TICKETS_SCHEMA, "true_label")
    expected = pl.from_arrow(classified_schema(input_schema).empty_table())
    assert isinstance(expected, pl.DataFrame)
    assert out.schema == expected.schema
    validator = jsonschema.Draft202012Validator(_schema("classified.schema.json"))
    rows = _json_rows(out)
    for row in rows:
        validator.validate(row)
    assert sum(row["label"] is None for row in rows) == 6  # the null questions, with a reason


def test_classified_schema_rejects_a_null_label_without_reason() -> None:
    validator = jsonschema.Draft202012Validator(_schema("classified.schema.json"))
    row = {"ticket_id": 1, "date": "2024-01-01", "user_id": 1, "question": "q"}
    assert not validator.is_valid({**row, "label": None, "label_error": None})
    assert not validator.is_valid({**row, "label": None, "label_error": "made_up"})
    assert validator.is_valid({**row, "label": None, "label_error": "api_error: 500 after 7 tries"})


def test_error_reasons_in_json_schema_match_the_code() -> None:
    pattern = _schema("classified.schema.json")["properties"]["label_error"]["pattern"]
    assert pattern == "^(" + "|".join(ERROR_KINDS) + ")"


def test_ask_json_output_matches_answer_schema(sim: Any, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "t.parquet"
    tickets(500, seed=1).write_parquet(path)
    code = main(["ask", str(path), "How many questions are about billing?", "--text-column",
                 "question", "--base-url", sim.base_url, "--model", "sim-1", "--json",
                 "--trace", str(tmp_path / "trace.jsonl")])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, _schema("answer.schema.json"))
    trace_schema = jsonschema.Draft202012Validator(_schema("trace.schema.json"))
    lines = (tmp_path / "trace.jsonl").read_text().split("\n")
    for line in filter(None, lines):
        trace_schema.validate(json.loads(line))


def pa_schema_without(schema: Any, name: str) -> Any:
    return schema.remove(schema.get_field_index(name))
