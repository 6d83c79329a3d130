"""Checks on operator outputs: great-expectations, and the same expectations computed with Polars."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.validate import validate_output

BACKENDS = ["great_expectations", "builtin"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_good_output_passes(backend: Any) -> None:
    out = pl.DataFrame({"id": [1, 2, 3], "label": ["a", None, "b"],
                        "label_error": [None, "empty_input", None]})
    result = validate_output(out, input_rows=3, labels=["a", "b"], id_column="id", backend=backend)
    assert result.success and result.failed == []
    assert len(result.checked) == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_violation_is_named(backend: Any) -> None:
    out = pl.DataFrame({"id": [1, 1, None], "label": ["a", "zz", None],
                        "label_error": [None, None, None]}).lazy()
    result = validate_output(out, input_rows=4, labels=["a", "b"], id_column="id", backend=backend)
    assert not result.success
    failed = " ".join(result.failed)
    for name in ("expect_table_row_count_to_equal", "expect_column_values_to_be_in_set(label)",
                 "expect_column_values_to_not_be_null(label_error)",
                 "expect_column_values_to_be_unique(id)", "expect_column_values_to_not_be_null(id)"):
        assert name in failed


def test_both_backends_agree_line_for_line() -> None:
    out = pl.DataFrame({"id": [1, 1, 2, None, 5], "label": ["a", "zz", None, None, "b"],
                        "label_error": [None, None, "api_error: 500", None, None]})
    results = [validate_output(out, input_rows=6, labels=["a", "b"], id_column="id", backend=b)
               for b in BACKENDS]
    assert results[0] == results[1]


def test_spark_output_and_map_without_labels(spark: Any) -> None:
    df = spark.createDataFrame([(1, None, "parse_error: x"), (2, 5, None)], "id long, value long, value_error string")
    assert validate_output(df, input_rows=2, output_column="value", id_column="id").success


def test_missing_column_is_an_input_error() -> None:
    with pytest.raises(InputError):
        validate_output(pl.DataFrame({"x": [1]}), input_rows=1, labels=["a"])
    with pytest.raises(InputError):
        validate_output(pl.DataFrame({"label": ["a"], "label_error": [None]}), input_rows=1,
                        backend="pandas")  # type: ignore[arg-type]


def test_quiet_and_lazy_import() -> None:
    """builtin never imports great-expectations; the gx backend prints nothing on stderr."""
    code = (
        "import logging, sys, polars as pl\n"
        "logging.basicConfig(level=logging.WARNING)  # as the CLI does\n"
        "from rlm_pipeline.validate import validate_output\n"
        "out = pl.DataFrame({'label': ['a'], 'label_error': [None]})\n"
        "assert validate_output(out, input_rows=1, labels=['a'], backend='builtin').success\n"
        "print('great_expectations' in sys.modules)\n"
        "assert validate_output(out, input_rows=1, labels=['a']).success\n"
        "print('great_expectations' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
    assert done.stderr == ""  # no PySpark FutureWarning, no INFO line about a docs folder
