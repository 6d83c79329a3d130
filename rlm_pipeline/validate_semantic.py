"""Data-quality checks on the outputs of :func:`rlm_pipeline.filter` and :func:`rlm_pipeline.extract`.

The same two backends as :func:`rlm_pipeline.validate.validate_output`:
``"great_expectations"`` runs the checks as a great-expectations suite (an
ephemeral, quiet context; nothing written, no network), ``"builtin"``
computes the same expectations with Polars in milliseconds.  Column types are
read from the output's Arrow schema by both (great-expectations sees pandas
types, which lose them: an integer column with nulls becomes floats).

extract:

- ``expect_table_row_count_to_equal``: every input row once;
- ``expect_column_values_to_match_regex(extract_error)``: every reason starts
  with a known kind (``empty_input``, ``parse_error``, ...);
- ``expect_column_values_to_be_null(<field>)`` where ``extract_error`` is set:
  a row with a reason has no values;
- ``expect_column_values_to_be_in_set(<field>)`` for enum fields;
- ``expect_column_values_to_be_unique`` / ``..._to_not_be_null`` on an id column;
- ``schema(<field>)``: the column's type is the field's (``number`` -> float64, ...).

filter:

- ``expect_table_row_count_to_equal``: the rows the stats say were returned;
- ``stats``: kept + dropped + failed equals the input rows;
- ``expect_column_values_to_match_regex(filter_error)`` when failed rows are kept.

Examples
--------
>>> import polars as pl
>>> out = pl.DataFrame({"amount": [19.0, None], "extract_error": [None, "empty_input"]})
>>> validate_extract(out, input_rows=2, fields={"amount": "number"}, backend="builtin").success
True
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from rlm_pipeline.errors import InputError
from rlm_pipeline.ops.extract_op import check_fields
from rlm_pipeline.ops.stats import ERROR_KINDS
from rlm_pipeline.validate import Backend, ValidationResult

__all__ = ["REASON_REGEX", "validate_extract", "validate_filter"]

#: What every reason in an error column matches.
REASON_REGEX = r"^(?:" + "|".join(ERROR_KINDS) + r")\b"

_ARROW: dict[str, tuple[pa.DataType, ...]] = {
    "string": (pa.string(), pa.large_string(), pa.string_view()),
    "integer": (pa.int64(),),
    "number": (pa.float64(),),
    "boolean": (pa.bool_(),),
    "date": (pa.date32(),),
}


def _table(output: Any, columns: list[str]) -> pa.Table:
    from rlm_pipeline.validate import _columns, _to_arrow

    present = _columns(output)
    missing = [c for c in columns if c not in present]
    if missing:
        msg = f"cannot validate: column(s) {missing} not in the output (columns: {present})"
        raise InputError(msg)
    return _to_arrow(output, columns)


def _check_backend(backend: str) -> None:
    if backend not in ("great_expectations", "builtin"):
        msg = f"backend must be 'great_expectations' or 'builtin', got {backend!r}"
        raise InputError(msg)


def _schema_failures(table: pa.Table, fields: Any) -> tuple[list[str], list[str]]:
    checked, failed = [], []
    for name, kind in fields:
        want = _ARROW["string" if isinstance(kind, tuple) else kind]
        got = table.schema.field(name).type
        checked.append(f"schema({name})")
        if not any(got.equals(t) for t in want):
            failed.append(f"schema({name}): expected {want[0]}, got {got}")
    return checked, failed


def validate_extract(
    output: Any,
    *,
    input_rows: int,
    fields: Any,
    error_column: str = "extract_error",
    id_column: str | None = None,
    backend: Backend = "great_expectations",
) -> ValidationResult:
    """Check an :func:`~rlm_pipeline.extract` output (see the module docstring).

    Parameters
    ----------
    output
        Polars DataFrame/LazyFrame, Spark DataFrame, pyarrow Table or pandas DataFrame.
    input_rows
        Rows of the input.
    fields
        The fields asked for (``{name: type}``, as given to extract).
    error_column, id_column
        The reason column; a column that must be unique and non-null, if any.
    backend
        ``"great_expectations"`` or ``"builtin"``.
    """
    _check_backend(backend)
    spec_fields = check_fields(fields)
    names = [name for name, _ in spec_fields]
    table = _table(output, [*names, error_column] + ([id_column] if id_column else []))
    checked, failed = _schema_failures(table, spec_fields)
    enums = {name: list(kind) for name, kind in spec_fields if isinstance(kind, tuple)}
    if backend == "builtin":
        results = _extract_builtin(table, input_rows, names, enums, error_column, id_column)
    else:
        results = _extract_gx(table, input_rows, names, enums, error_column, id_column)
    checked = [label for label, _ in results] + checked
    failed = [f"{label}: {problem}" for label, problem in results if problem] + failed
    return ValidationResult(success=not failed, failed=failed, checked=checked)


def _extract_builtin(
    table: pa.Table,
    input_rows: int,
    names: list[str],
    enums: dict[str, list[str]],
    error_column: str,
    id_column: str | None,
) -> list[tuple[str, str | None]]:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    error = pl.col(error_column)
    out: list[tuple[str, str | None]] = []
    rows = frame.height
    out.append(
        ("expect_table_row_count_to_equal", None if rows == input_rows else f"observed {rows}")
    )
    bad = frame.select((error.is_not_null() & ~error.str.contains(REASON_REGEX)).sum()).item()
    out.append((f"expect_column_values_to_match_regex({error_column})", _unexpected(bad)))
    for name in names:
        n = frame.select((error.is_not_null() & pl.col(name).is_not_null()).sum()).item()
        out.append((f"expect_column_values_to_be_null({name})", _unexpected(n)))
    for name, allowed in enums.items():
        values = pl.lit(pl.Series(allowed, dtype=pl.String)).implode()
        col = pl.col(name)
        n = frame.select((col.is_not_null() & ~col.cast(pl.String).is_in(values)).sum()).item()
        out.append((f"expect_column_values_to_be_in_set({name})", _unexpected(n)))
    if id_column:
        ids = pl.col(id_column)
        dup = frame.select(ids.drop_nulls().is_duplicated().sum()).item()
        out.append((f"expect_column_values_to_be_unique({id_column})", _unexpected(dup)))
        nulls = frame.select(ids.is_null().sum()).item()
        out.append((f"expect_column_values_to_not_be_null({id_column})", _unexpected(nulls)))
    return out


def _unexpected(count: int) -> str | None:
    return f"{count} unexpected" if count else None


def _suite(table: pa.Table, columns: list[str]) -> tuple[Any, Any, dict[str, str], Any]:
    """A great-expectations batch over ``columns`` (renamed to safe identifiers) and a suite."""
    from rlm_pipeline.validate import _import_gx, _quiet_context

    _import_gx()
    safe = {c: f"c{i}" for i, c in enumerate(columns)}
    frame = table.select(columns).to_pandas().rename(columns=safe)
    context = _quiet_context()
    import great_expectations as gx

    source = context.data_sources.add_pandas("rlm_pipeline_output")
    asset = source.add_dataframe_asset("output")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame}
    )
    return batch, gx.ExpectationSuite("rlm_pipeline_output"), safe, gx


def _run_suite(batch: Any, suite: Any, safe: dict[str, str]) -> list[tuple[str, str | None]]:
    names = {v: k for k, v in safe.items()}
    out: list[tuple[str, str | None]] = []
    for item in batch.validate(suite).results:
        config = item.expectation_config
        kind = str(config.type)
        column = config.kwargs.get("column")
        label = f"{kind}({names.get(column, column)})" if column else kind
        problem = None
        if not item.success:
            detail = item.result or {}
            if column:
                problem = f"{detail.get('unexpected_count')} unexpected"
            else:
                problem = f"observed {detail.get('observed_value')}"
        out.append((label, problem))
    return out


def _extract_gx(
    table: pa.Table,
    input_rows: int,
    names: list[str],
    enums: dict[str, list[str]],
    error_column: str,
    id_column: str | None,
) -> list[tuple[str, str | None]]:
    columns = [*names, error_column] + ([id_column] if id_column else [])
    batch, suite, safe, _ = _suite(table, columns)
    import great_expectations.expectations as gxe_module
    from great_expectations.expectations.row_conditions import Column

    gxe: Any = gxe_module
    error = safe[error_column]
    suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=input_rows))
    suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(column=error, regex=REASON_REGEX))
    for name in names:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeNull(
                column=safe[name], row_condition=Column(error).is_not_null()
            )
        )
    for name, allowed in enums.items():
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=safe[name], value_set=allowed))
    if id_column:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=safe[id_column]))
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=safe[id_column]))
    return _run_suite(batch, suite, safe)


def validate_filter(
    output: Any,
    stats: Any,
    *,
    error_column: str = "filter_error",
    backend: Backend = "great_expectations",
) -> ValidationResult:
    """Check a :func:`~rlm_pipeline.filter` output against its :class:`~rlm_pipeline.ops.semantic.FilterStats`.

    Examples
    --------
    >>> import polars as pl
    >>> from rlm_pipeline.ops.semantic import FilterStats
    >>> stats = FilterStats(rows=3, kept=1, dropped=2, failed=0, returned=1)
    >>> validate_filter(pl.DataFrame({"q": ["refund"]}), stats, backend="builtin").success
    True
    """
    _check_backend(backend)
    keeps_failed = stats.on_error == "keep"
    counted = stats.kept + stats.dropped + stats.failed
    accounted = (
        "stats: kept + dropped + failed == rows",
        None if counted == stats.rows else f"observed {counted} of {stats.rows}",
    )
    from rlm_pipeline.validate import _columns

    present = _columns(output)
    first = [c for c in present if c != error_column][:1] or present[:1]
    table = _table(output, first + ([error_column] if keeps_failed else []))
    if backend == "builtin":
        results: list[tuple[str, str | None]] = []
        rows = table.num_rows
        results.append(
            (
                "expect_table_row_count_to_equal",
                None if rows == stats.returned else f"observed {rows}",
            )
        )
        if keeps_failed:
            import polars as pl

            frame = pl.from_arrow(table.select([error_column]))
            assert isinstance(frame, pl.DataFrame)
            col = pl.col(error_column)
            bad = frame.select((col.is_not_null() & ~col.str.contains(REASON_REGEX)).sum()).item()
            results.append(
                (f"expect_column_values_to_match_regex({error_column})", _unexpected(bad))
            )
    else:
        batch, suite, safe, _ = _suite(table, table.column_names)
        import great_expectations.expectations as gxe_module

        gxe: Any = gxe_module
        suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=stats.returned))
        if keeps_failed:
            suite.add_expectation(
                gxe.ExpectColumnValuesToMatchRegex(column=safe[error_column], regex=REASON_REGEX)
            )
        results = _run_suite(batch, suite, safe)
    results.append(accounted)
    failed = [f"{label}: {problem}" for label, problem in results if problem]
    return ValidationResult(success=not failed, failed=failed, checked=[r[0] for r in results])
