"""Data-quality checks on a classify / llm_map output, with great-expectations 1.x.

The checks (each a great-expectations expectation, named as in great-expectations):

- ``expect_table_row_count_to_equal``: as many rows as the input;
- ``expect_column_values_to_be_in_set``: every non-null label is one of the labels;
- ``expect_column_values_to_not_be_null`` on ``<output_column>_error`` where the
  label is null: every missing label has a reason;
- ``expect_column_values_to_be_unique`` and ``expect_column_values_to_not_be_null``
  on the id column, when one is named.

``backend="great_expectations"`` (the default) runs them as a
great-expectations suite: an ephemeral context (nothing written to disk, no
temporary docs folder), analytics off, no network, and stderr kept quiet (the
pandas ``FutureWarning`` PySpark raises while great-expectations imports it is
filtered for that import only; nothing in the caller's logging is changed).
great-expectations is imported only when such a check runs; the import takes
seconds.  Only the needed columns are converted to pandas, which
great-expectations validates.

``backend="builtin"`` computes the same expectations with Polars (same names,
same counts) in milliseconds, without importing great-expectations; the CLI
uses it unless given ``--great-expectations``.

Examples
--------
>>> import polars as pl
>>> out = pl.DataFrame({"label": ["a", None], "label_error": [None, "empty_input"]})
>>> result = validate_output(out, input_rows=2, labels=["a", "b"], backend="builtin")
>>> result.success, result.failed
(True, [])
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from rlm_pipeline.errors import InputError

__all__ = ["Backend", "ValidationResult", "validate_output"]

logger = logging.getLogger(__name__)

#: Who runs the checks: great-expectations, or the same expectations computed with Polars.
Backend = Literal["great_expectations", "builtin"]


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
    """``columns`` of ``output`` as Arrow, read by the output's own engine."""
    from rlm_pipeline.engines.load import open_engine
    from rlm_pipeline.engines.views import CONTEXT_VIEW

    if isinstance(output, pa.Table):
        return output.select(columns)
    engine = open_engine(output)
    try:
        return engine.to_arrow(CONTEXT_VIEW, columns)
    finally:
        engine.close()


def _import_gx() -> Any:
    """Import great-expectations with its known import-time noise filtered.

    It imports PySpark, which warns (``FutureWarning``) that pandas >= 3 is not
    fully supported; that warning is filtered for this import only.

    Raises
    ------
    MissingDependencyError
        great-expectations (the ``validate`` extra) is not installed, or pyspark is
        installed without its Spark Connect dependencies, with which the import
        fails (or exits the process under ``python -c``).
    """
    import importlib.util

    from rlm_pipeline._lazy import require

    feature = "Validation with great-expectations"
    if importlib.util.find_spec("pyspark") is not None:
        # great-expectations imports pyspark.sql.connect whenever pyspark is installed.
        require("grpc", extra="spark", feature=f"{feature} next to pyspark", package="grpcio")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"PySpark does not yet fully support pandas", category=FutureWarning
        )
        gx = require("great_expectations", extra="validate", feature=feature,
                     package="great-expectations")
        # loaded under the same filter
        require("great_expectations.expectations", extra="validate", feature=feature,
                package="great-expectations")
    return gx


def _quiet_context() -> Any:
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )

    # gx's default ephemeral config makes a temporary docs folder and logs it at INFO
    # (from a logger whose level it pins to INFO); an in-memory config without docs sites
    # makes neither.
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults())
    context = gx.get_context(project_config=config, mode="ephemeral")
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
    backend: Backend = "great_expectations",
) -> ValidationResult:
    """Check an operator's output with great-expectations (or the same checks in Polars).

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
    backend
        ``"great_expectations"`` runs a great-expectations suite; ``"builtin"``
        computes the same expectations with Polars (no great-expectations import).

    Returns
    -------
    ValidationResult
        ``success`` and the failed expectations.

    Raises
    ------
    InputError
        A named column is missing, or ``backend`` is unknown.
    """
    if backend not in ("great_expectations", "builtin"):
        msg = f"backend must be 'great_expectations' or 'builtin', got {backend!r}"
        raise InputError(msg)
    error_column = f"{output_column}_error"
    columns = [output_column, error_column] + ([id_column] if id_column else [])
    present = _columns(output)
    missing = [c for c in columns if c not in present]
    if missing:
        msg = f"cannot validate: column(s) {missing} not in the output (columns: {present})"
        raise InputError(msg)
    table = _to_arrow(output, columns)
    if backend == "builtin":
        return _validate_builtin(table, input_rows, labels, output_column, id_column)
    _import_gx()  # the install hint comes before pandas is needed
    frame = table.to_pandas()
    # Column names become pandas query identifiers in the row condition below.
    safe = {c: f"c{i}" for i, c in enumerate(columns)}
    frame = frame.rename(columns=safe)

    context = _quiet_context()
    import great_expectations as gx
    import great_expectations.expectations as gxe_module
    from great_expectations.expectations.row_conditions import Column

    gxe: Any = gxe_module  # its classes are not re-exported for type checkers

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
        gxe.ExpectColumnValuesToNotBeNull(column=error, row_condition=Column(value).is_null())
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
            failed.append(
                f"{label}: {count} unexpected" if column else f"{label}: observed {count}"
            )
    return ValidationResult(success=not failed, failed=failed, checked=checked)


def _validate_builtin(
    table: pa.Table,
    input_rows: int,
    labels: Sequence[str] | None,
    output_column: str,
    id_column: str | None,
) -> ValidationResult:
    """The same expectations as the great-expectations suite, computed with Polars."""
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    value, error = pl.col(output_column), pl.col(f"{output_column}_error")
    exprs = [
        value.is_null().and_(error.is_null()).sum().alias("no_reason"),
        pl.len().alias("rows"),
    ]
    if labels is not None:
        allowed = pl.lit(pl.Series(list(labels), dtype=pl.String)).implode()
        exprs.append(
            (value.is_not_null() & ~value.cast(pl.String).is_in(allowed)).sum().alias("not_in_set")
        )
    if id_column:
        ids = pl.col(id_column)
        exprs.append(ids.drop_nulls().is_duplicated().sum().alias("duplicated"))
        exprs.append(ids.is_null().sum().alias("id_nulls"))
    counts = frame.select(exprs).row(0, named=True)
    # (label, unexpected count or observed value, is a column expectation)
    results: list[tuple[str, int, bool]] = [
        ("expect_table_row_count_to_equal", int(counts["rows"]), False)
    ]
    if labels is not None:
        results.append(
            (f"expect_column_values_to_be_in_set({output_column})", int(counts["not_in_set"]), True)
        )
    results.append(
        (
            f"expect_column_values_to_not_be_null({output_column}_error)",
            int(counts["no_reason"]),
            True,
        )
    )
    if id_column:
        results.append(
            (f"expect_column_values_to_be_unique({id_column})", int(counts["duplicated"]), True)
        )
        results.append(
            (f"expect_column_values_to_not_be_null({id_column})", int(counts["id_nulls"]), True)
        )
    failed: list[str] = []
    for label, count, is_column in results:
        if is_column and count:
            failed.append(f"{label}: {count} unexpected")
        elif not is_column and count != input_rows:
            failed.append(f"{label}: observed {count}")
    return ValidationResult(
        success=not failed, failed=failed, checked=[label for label, _, _ in results]
    )


def _columns(output: Any) -> list[str]:
    import polars as pl

    if isinstance(output, pl.LazyFrame):
        return output.collect_schema().names()
    if isinstance(output, pa.Table):
        return list(output.column_names)
    return list(output.columns)
