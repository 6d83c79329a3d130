"""TraceRecord: fields, bounds, validation and round trips."""

from __future__ import annotations

import dataclasses

import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.trace import MAX_SUMMARY_CHARS, TraceRecord, summarize


def test_record_is_frozen_and_round_trips() -> None:
    rec = TraceRecord(run_id="r", seq=3, depth=1, path="root/p3", kind="tool", tool="peek",
                      arguments={"view": "context", "n": 5}, rows_in=10, rows_out=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.seq = 4  # type: ignore[misc]
    data = rec.to_dict()
    assert data["path"] == "root/p3" and data["arguments"] == {"view": "context", "n": 5}
    assert data["extra"] == {} and data["sub_calls"] == 0 and data["error"] is None
    assert TraceRecord.from_dict(data) == rec


def test_field_names_are_the_contract() -> None:
    names = [f.name for f in dataclasses.fields(TraceRecord)]
    assert names == ["run_id", "seq", "depth", "path", "kind", "tool", "arguments",
                     "result_summary", "rows_in", "rows_out", "sub_calls", "input_tokens",
                     "output_tokens", "seconds", "error", "extra"]


def test_result_summary_and_error_are_bounded() -> None:
    long = "row " * 1000
    rec = TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="tool", tool="sql",
                      result_summary=long, error="e" * 5000)
    assert rec.result_summary is not None and len(rec.result_summary) <= MAX_SUMMARY_CHARS
    assert rec.result_summary.startswith("row row") and "chars]" in rec.result_summary
    assert rec.error is not None and len(rec.error) <= 1000
    assert summarize("abc") == "abc" and summarize(None) is None


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"kind": "thinking"}, "kind"),
        ({"path": "p3"}, "path"),
        ({"path": "root/"}, "path"),
        ({"seq": -1}, "seq"),
        ({"input_tokens": -5}, "input_tokens"),
        ({"seconds": -0.1}, "seconds"),
    ],
)
def test_bad_records_raise_input_error(changes: dict[str, object], fragment: str) -> None:
    fields: dict[str, object] = {"run_id": "r", "seq": 0, "depth": 0, "path": "root",
                                 "kind": "tool"}
    fields.update(changes)
    with pytest.raises(InputError, match=fragment):
        TraceRecord(**fields)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_and_missing_fields() -> None:
    good = TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="run_end").to_dict()
    with pytest.raises(InputError, match="unknown fields: colour"):
        TraceRecord.from_dict({**good, "colour": "red"})
    del good["seq"]
    with pytest.raises(InputError, match="incomplete"):
        TraceRecord.from_dict(good)
