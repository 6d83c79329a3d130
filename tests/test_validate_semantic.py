"""Checks of filter / extract outputs: great-expectations and the builtin backend agree."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.semantic import FilterStats
from rlm_pipeline.validate_semantic import validate_extract, validate_filter

FIELDS = {"amount": "number", "topic": ["billing", "other"], "day": "date"}
GOOD = pl.DataFrame(
    {
        "id": [1, 2, 3],
        "amount": [19.0, None, None],
        "topic": ["billing", None, "other"],
        "day": [dt.date(2024, 1, 1), None, None],
        "extract_error": [None, "api_error: 500 after 7 tries", None],
    }
)
BAD = GOOD.with_columns(
    topic=pl.Series(["billing", "spam", "other"]),
    extract_error=pl.Series([None, "api_error: x", "no reason kind"]),
)


@pytest.mark.parametrize("backend", ["builtin", "great_expectations"])
def test_extract_checks(backend: str) -> None:
    good = validate_extract(GOOD, input_rows=3, fields=FIELDS, id_column="id", backend=backend)
    assert good.success, good.failed
    bad = validate_extract(BAD, input_rows=4, fields=FIELDS, backend=backend)  # type: ignore[arg-type]
    assert sorted(line.split(":")[0] for line in bad.failed) == [
        "expect_column_values_to_be_in_set(topic)",
        "expect_column_values_to_be_null(topic)",
        "expect_column_values_to_match_regex(extract_error)",
        "expect_table_row_count_to_equal",
    ]
    typed = validate_extract(GOOD.with_columns(pl.col("amount").cast(pl.String)), input_rows=3,
                             fields=FIELDS, backend="builtin")
    assert typed.failed == ["schema(amount): expected double, got string"]


@pytest.mark.parametrize("backend", ["builtin", "great_expectations"])
def test_filter_checks(backend: str) -> None:
    stats = FilterStats(rows=5, kept=1, dropped=3, failed=1, on_error="keep", returned=2)
    out = pl.DataFrame({"q": ["a", "b"], "filter_error": [None, "parse_error: x"]})
    assert validate_filter(out, stats, backend=backend).success  # type: ignore[arg-type]
    lost = FilterStats(rows=6, kept=1, dropped=3, failed=1, on_error="keep", returned=3)
    failed = validate_filter(out, lost, backend=backend).failed  # type: ignore[arg-type]
    assert [line.split(":")[0] for line in failed] == [
        "expect_table_row_count_to_equal",
        "stats",
    ]
    with pytest.raises(InputError, match="not in the output"):
        validate_extract(out, input_rows=2, fields={"amount": "number"}, backend=backend)  # type: ignore[arg-type]
