"""Data-quality checks on a classify / llm_map output, with great-expectations 1.x.

The checks (each a great-expectations expectation):

- ``expect_table_row_count_to_equal``: as many rows as the input;
- ``expect_column_values_to_be_in_set``: every non-null label is one of the labels;
- ``expect_column_values_to_not_be_null`` on ``<output_column>_error`` where the
  label is null: every missing label has a reason;
- ``expect_column_values_to_be_unique`` and ``expect_column_values_to_not_be_null``
  on the id column, when one is named.

great-expectations runs with an ephemeral context (nothing written to disk),
analytics off and no network; it is imported only when a check runs (the
import takes seconds).  Only the needed columns are converted to pandas, which
great-expectations validates.

Examples
--------
>>> import polars as pl
>>> out = pl.DataFrame({"label": ["a", None], "label_error": [None, "empty_input"]})
>>> result = validate_output(out, input_rows=2, labels=["a", "b"])  # doctest: +SKIP
>>> result.success, result.failed  # doctest: +SKIP
(True, [])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from rlm_pipeline.errors import InputError

__all__ = ["ValidationResult", "validate_output"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of :func:`validate_output`.

    Attributes
    ----------
    success
        True when every expectation held.
    failed
        One line per failed expectation: its type, column and how many rows broke it.
    checked
        Types of every expectation that ran.
    """

    success: bool
    failed: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def _to_arrow(output: Any, columns: list[str]) -> pa.Table:
    import polars as pl

    if isinstance(output, pl.LazyFrame):
        output = output.select(columns).collect()
    if isinstance(output, pl.DataFrame):
        return output.select(columns).to_arrow()
    if isinstance(output, pa.Table):
        return output.select(columns)
    if type(output).__module__.startswith("pyspark.sql"):
        return output.select(*[f"`{c}`" for c in columns]).toArrow()
    if type(output).__module__.startswith("pandas"):
        return pa.Table.from_pandas(output[columns], preserve_index=False)
    msg = f"cannot validate {type(output).__name__}"
    raise InputError(msg)


def _quiet_context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError, TypeError):  # older/newer layouts: bars stay on
        logger.debug("cannot turn great-expectations progress bars off")
    return context


def validate_output(
    output: Any,
    *,
    input_rows: int,
    labels: Sequence[str] | None = None,
    output_column: str = "label",
    id_column: str | None = None,
) -> ValidationResult:
    """Check an operator's output with great-expectations.

    Parameters
    ----------
    output
        Polars DataFrame/LazyFrame, Spark DataFrame, pyarrow Table or pandas DataFrame.
    input_rows
        Rows of the input (the output must have exactly as many).
    labels
        The label set (classify); None skips the set check (llm_map).
    output_column
        The value column; its reasons are in ``<output_column>_error``.
    id_column
        A column that must be unique and non-null, if any.

    Returns
    -------
    ValidationResult
        ``success`` and the failed expectations.

    Raises
    ------
    InputError
        A named column is missing.
    """
    error_column = f"{output_column}_error"
    columns = [output_column, error_column] + ([id_column] if id_column else [])
    present = _columns(output)
    missing = [c for c in columns if c not in present]
    if missing:
        msg = f"cannot validate: column(s) {missing} not in the output (columns: {present})"
        raise InputError(msg)
    frame = _to_arrow(output, columns).to_pandas()
    # Column names become pandas query identifiers in the row condition below.
    safe = {c: f"c{i}" for i, c in enumerate(columns)}
    frame = frame.rename(columns=safe)

    import great_expectations as gx
    import great_expectations.expectations as gxe_module

    gxe: Any = gxe_module  # its classes are not re-exported for type checkers

    context = _quiet_context()
    source = context.data_sources.add_pandas("rlm_pipeline_output")
    asset = source.add_dataframe_asset("output")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = gx.ExpectationSuite("rlm_pipeline_output")
    value, error = safe[output_column], safe[error_column]
    suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=input_rows))
    if labels is not None:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=value, value_set=list(labels)))
    suite.add_expectation(
        gxe.ExpectColumnValuesToNotBeNull(
            column=error, row_condition=f"{value}.isnull()", condition_parser="pandas"
        )
    )
    if id_column:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=safe[id_column]))
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=safe[id_column]))
    results = batch.validate(suite)
    names = {v: k for k, v in safe.items()}
    failed: list[str] = []
    checked: list[str] = []
    for item in results.results:
        config = item.expectation_config
        kind = str(config.type)
        column = config.kwargs.get("column")
        label = f"{kind}({names.get(column, column)})" if column else kind
        checked.append(label)
        if not item.success:
            detail = item.result or {}
            count = detail.get("unexpected_count", detail.get("observed_value"))
            failed.append(f"{label}: {count} unexpected" if column else f"{label}: observed {count}")
    return ValidationResult(success=not failed, failed=failed, checked=checked)


def _columns(output: Any) -> list[str]:
    import polars as pl

    if isinstance(output, pl.LazyFrame):
        return output.collect_schema().names()
    if isinstance(output, pa.Table):
        return list(output.column_names)
    return list(output.columns)
