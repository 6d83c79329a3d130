"""great-expectations checks on operator outputs."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.validate import validate_output


def test_good_output_passes() -> None:
    out = pl.DataFrame({"id": [1, 2, 3], "label": ["a", None, "b"],
                        "label_error": [None, "empty_input", None]})
    result = validate_output(out, input_rows=3, labels=["a", "b"], id_column="id")
    assert result.success and result.failed == []
    assert len(result.checked) == 5


def test_each_violation_is_named() -> None:
    out = pl.DataFrame({"id": [1, 1, None], "label": ["a", "zz", None],
                        "label_error": [None, None, None]}).lazy()
    result = validate_output(out, input_rows=4, labels=["a", "b"], id_column="id")
    assert not result.success
    failed = " ".join(result.failed)
    for name in ("expect_table_row_count_to_equal", "expect_column_values_to_be_in_set(label)",
                 "expect_column_values_to_not_be_null(label_error)",
                 "expect_column_values_to_be_unique(id)", "expect_column_values_to_not_be_null(id)"):
        assert name in failed


def test_spark_output_and_map_without_labels(spark: Any) -> None:
    df = spark.createDataFrame([(1, None, "parse_error: x"), (2, 5, None)], "id long, value long, value_error string")
    assert validate_output(df, input_rows=2, output_column="value", id_column="id").success


def test_missing_column_is_an_input_error() -> None:
    with pytest.raises(InputError):
        validate_output(pl.DataFrame({"x": [1]}), input_rows=1, labels=["a"])
