"""SQL text the library writes itself: identifiers and literals read back unchanged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.expr.sqltext import ident, sql_literal


def test_ident_quotes_only_when_needed() -> None:
    assert ident("user_id") == "user_id"
    assert ident('we"ird col') == '"we""ird col"'


@pytest.mark.parametrize(
    "value", ["it's", 'say "hi"', "back\\slash", 3, -2, 1.5, True, None, dt.date(2024, 2, 29)]
)
def test_literal_reads_back_as_the_value(value: Any) -> None:
    name = 'we"ird col'
    frame = pl.DataFrame({name: [1]})
    query = f"SELECT {sql_literal(value)} AS v, {ident(name)} AS c FROM t"
    out = pl.SQLContext(t=frame).execute(query, eager=True)
    assert out["v"].to_list() == [value]
    assert out["c"].to_list() == [1]
