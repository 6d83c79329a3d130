"""A realistic trace built through the public record API: peek, filter, a
rejected expression, classify, a recurse over two partitions (two sub-RLMs at
depth 1), sql, answer.  One result carries hostile HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.trace import TraceRecord, TraceWriter

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
QUESTION = "Among users 12345, 67890 and 11111, how many questions are about billing?"


def build_sample_records(run_id: str = "run-7f3a") -> list[TraceRecord]:
    """Records in the order a run writes them (sub-RLMs before their recurse step)."""
    seq = iter(range(1000))

    def rec(**kw: object) -> TraceRecord:
        kw.setdefault("depth", 0)
        kw.setdefault("path", "root")
        return TraceRecord(run_id=run_id, seq=next(seq), **kw)  # type: ignore[arg-type]

    records = [
        rec(kind="run_start", extra={"question": QUESTION, "engine": "polars",
                                     "views": {"context": 5000}}),
        rec(kind="model", input_tokens=812, output_tokens=31, seconds=0.05),
        rec(kind="tool", tool="peek", arguments={"view": "context", "n": 3},
            result_summary="user_id | question\n12345 | I was charged twice " + HOSTILE,
            rows_in=5000, rows_out=3, seconds=0.01),
        rec(kind="error", tool="filter", arguments={"view": "context", "where": "DROP TABLE x"},
            error="ExpressionError: DROP is not allowed | hint: use a boolean WHERE expression",
            seconds=0.002),
        rec(kind="tool", tool="filter",
            arguments={"view": "context", "where": "user_id IN (12345, 67890, 11111)",
                       "name": "users"},
            result_summary="view users: 41 rows", rows_in=5000, rows_out=41, seconds=0.02),
        rec(kind="tool", tool="partition", arguments={"view": "users", "by": "user_id",
                                                      "name": "parts"},
            result_summary="3 partitions: 12345=14, 67890=15, 11111=12", rows_in=41, rows_out=41),
    ]
    for part, answer in (("p0", 5), ("p1", 7)):
        path = f"root/{part}"
        records += [
            rec(kind="run_start", depth=1, path=path, extra={"question": "how many billing?"}),
            rec(kind="tool", depth=1, path=path, tool="classify",
                arguments={"view": "context", "column": "question",
                           "labels": ["billing", "technical", "account", "other"],
                           "name": "lab"},
                result_summary=f"billing={answer}, technical=6", rows_in=14, rows_out=14,
                sub_calls=4, input_tokens=900, output_tokens=80, seconds=0.3),
            rec(kind="answer", depth=1, path=path, tool="answer", arguments={"value": answer}),
            rec(kind="run_end", depth=1, path=path, seconds=0.4,
                extra={"answer": str(answer), "value": answer}),
        ]
    records += [
        rec(kind="tool", tool="recurse",
            arguments={"view": "parts", "partition_column": "partition",
                       "query": "how many billing?", "name": "per_user"},
            result_summary="view per_user: 2 rows", rows_in=41, rows_out=2, sub_calls=2,
            input_tokens=1800, output_tokens=160, seconds=0.8),
        rec(kind="tool", tool="sql", arguments={"query": "SELECT sum(answer) FROM per_user",
                                                "name": "total"},
            result_summary="sum=12", rows_in=2, rows_out=1, seconds=0.01),
        rec(kind="answer", tool="answer", arguments={"value": 12, "explanation": "5 + 7"}),
        rec(kind="run_end", seconds=1.2,
            extra={"answer": "12", "value": 12,
                   "usage": {"calls": 11, "input_tokens": 5210, "output_tokens": 400,
                             "cached_calls": 0, "cost_usd": 0.0027, "max_prompt_tokens": 1100}}),
    ]
    return records


@pytest.fixture
def hostile() -> str:
    """Model output that would run script if a page inserted it unescaped."""
    return HOSTILE


@pytest.fixture
def sample_records() -> list[TraceRecord]:
    return build_sample_records()


@pytest.fixture
def sample_trace_file(tmp_path: Path, sample_records: list[TraceRecord]) -> Path:
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as writer:
        for record in sample_records:
            writer.write(record)
    return path


@pytest.fixture(scope="session")
def real_run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trace of one real run over the simulator (tests/trace/trace_runs.py), made once."""
    from trace_runs import record_run

    path = tmp_path_factory.mktemp("real_run") / "run.jsonl"
    record_run(path)
    return path


@pytest.fixture(scope="session")
def aggregate_run() -> list[dict[str, Any]]:
    """The trace of two root ``aggregate`` tool calls over the simulator (trace_runs.py), made once."""
    from trace_runs import aggregate_records

    return aggregate_records()
