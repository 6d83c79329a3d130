"""The differential helper itself: it must be able to fail."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

import tests.expr.helpers as helpers
from tests.expr.helpers import assert_same_values, normalize_rows


def test_normalize_rows_sorts_with_nulls_and_rounds() -> None:
    rows = normalize_rows([(None, 1), (2, 0.1 + 0.2), (1, -0.0)])
    assert rows == [(1.0, 0.0), (2.0, 0.3), (None, 1.0)]


def test_helper_fails_when_an_engine_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    table = pa.table({"id": [1, 2], "x": [2.7, -7.0]})
    # pinned: truncating cast, dividend-signed remainder; agreement holds
    assert_same_values(None, table, ["CAST(x AS BIGINT)"], key="id", engines=("polars", "duckdb"))

    def unpinned(checked: Any, names: Any = None) -> str:
        tree: exp.Expr = checked.tree
        return tree.sql(dialect="duckdb")  # DuckDB's own cast rounds 2.7 to 3

    monkeypatch.setattr(helpers, "duckdb_sql", unpinned)
    with pytest.raises(AssertionError, match="CAST"):
        assert_same_values(
            None, table, ["CAST(x AS BIGINT)"], key="id", engines=("polars", "duckdb")
        )


@pytest.mark.spark
def test_special_case_mappings_agree_on_polars_and_spark(spark: Any) -> None:
    # Unicode full case mapping: DuckDB maps one character to one and differs here.
    table = pa.table({"id": [1, 2, 3], "s": ["straße", "İstanbul", "ǅ"]})
    out = assert_same_values(spark, table, ["upper(s)", "lower(s)", "length(lower(s))"],
                             key="id", engines=("polars", "spark"))  # fmt: skip
    assert out["polars"][0][1] == "STRASSE"
