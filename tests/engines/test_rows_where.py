"""``Engine.rows_where`` (the filter's keep/drop) gives the same rows on both engines."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import Engine
from rlm_pipeline.errors import RLMPipelineError

from .data import rows_of

# id 1 failed, id 3 blank (never asked), ids 0 and 4 hold; "odd name" checks quoting.
ANSWERS = pl.DataFrame(
    {
        "id": [0, 1, 2, 3, 4, 5],
        "odd name": [True, None, False, None, True, None],
        "why": [None, "api_error: 500 after 3 tries", None, "empty_input", None, "parse_error: x"],
    }
)


def _rows(engine: Engine, frame: Any, name: str) -> list[tuple[Any, ...]]:
    engine.register(name, frame)
    return rows_of(engine.to_arrow(name))


@pytest.mark.parametrize(
    ("failed_rows", "want", "columns"),
    [
        ("drop", [(0,), (4,)], ["id"]),
        ("keep", [(0, None), (1, "api_error: 500 after 3 tries"), (4, None), (5, "parse_error: x")],
         ["id", "why"]),
    ],
)
def test_rows_where_keeps_or_drops_failed_rows(
    make_engine: Any, failed_rows: str, want: list[tuple[Any, ...]], columns: list[str]
) -> None:
    engine: Engine = make_engine(ANSWERS)
    out = engine.rows_where(engine.frame("context"), "odd name", failed="why",
                            failed_rows=failed_rows)  # type: ignore[arg-type]
    assert _rows(engine, out, "kept") == want
    assert engine.schema("kept") == {c: engine.schema("context")[c] for c in columns}


def test_rows_where_without_a_reason_column(make_engine: Any) -> None:
    engine: Engine = make_engine(ANSWERS)
    out = engine.rows_where(engine.frame("context"), "odd name")
    assert _rows(engine, out, "kept") == [(0, None), (4, None)]


def test_rows_where_raise_fails_when_evaluated_not_before(make_engine: Any) -> None:
    engine: Engine = make_engine(ANSWERS)
    message = "filter: a row has no answer: "
    planned = engine.rows_where(engine.frame("context"), "odd name", failed="why",
                                failed_rows="raise", message=message)
    engine.register("planned", planned)  # a plan: nothing evaluated yet
    with pytest.raises(RLMPipelineError, match="filter: a row has no answer: (api_error|parse_error)"):
        engine.to_arrow("planned")
    engine.register("clean", ANSWERS.filter(~pl.col("id").is_in([1, 5])).to_arrow())
    clean = engine.rows_where(engine.frame("clean"), "odd name", failed="why",
                              failed_rows="raise", message=message)
    assert _rows(engine, clean, "kept") == [(0,), (4,)]  # blank rows are not failed rows
