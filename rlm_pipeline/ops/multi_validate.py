"""Data-quality checks on the outputs of aggregate, top_k and join (great-expectations 1.x).

Each check is a great-expectations expectation, named as there; with
``backend="builtin"`` the same checks are computed with Polars (milliseconds,
no great-expectations import), as :func:`rlm_pipeline.validate.validate_output` does.

- **aggregate**: one row per group (``groups`` when given); ``rows`` sums to
  the input's rows; ``rows >= rows_summarised >= 0``; a null ``summary`` has a
  reason; a summary missing rows has a reason (``summary_error`` not null
  where ``rows_summarised < rows`` and the group is not all blank).
- **top_k**: at most ``k`` rows; ``rank`` unique, 1..k, no nulls; ``score``
  0-100, no nulls.
- **join**: ``join_error`` is null or starts with a known reason kind.

Examples
--------
>>> import polars as pl
>>> out = pl.DataFrame({"summary": ["x", None], "rows": [3, 1], "rows_summarised": [3, 0],
...                     "summary_error": [None, "empty_input"]})
>>> validate_aggregate(out, input_rows=4, groups=2, backend="builtin").success
True
>>> validate_top_k(pl.DataFrame({"score": [90, 80], "rank": [1, 1]}), k=2, backend="builtin").failed
['expect_column_values_to_be_unique(rank): 2 unexpected']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from rlm_pipeline.errors import InputError
from rlm_pipeline.validate import Backend, ValidationResult

__all__ = ["validate_aggregate", "validate_join", "validate_top_k"]

_KINDS = ("api_error", "parse_error", "missing_in_reply", "budget_exceeded", "input_too_long")


@dataclass(frozen=True)
class _Check:
    """One expectation: its great-expectations class and kwargs, and the Polars count of rows breaking it."""

    kind: str
    column: str | None
    kwargs: dict[str, Any]
    unexpected: pl.Expr  # rows breaking it (or, for table checks, the observed value)
    expected: int | None = None  # table checks: the value it must equal
    condition: tuple[str, str] | None = None  # (column, "is_null" | "is_not_null"): rows checked


def _frame(output: Any, columns: list[str]) -> pl.DataFrame:
    from rlm_pipeline.validate import _to_arrow

    present = list(output.collect_schema().names()) if isinstance(output, pl.LazyFrame) else list(
        output.columns
    )
    missing = [c for c in columns if c not in present]
    if missing:
        msg = f"cannot validate: column(s) {missing} not in the output (columns: {present})"
        raise InputError(msg)
    table = pl.from_arrow(_to_arrow(output, columns))
    assert isinstance(table, pl.DataFrame)
    return table


def _builtin(frame: pl.DataFrame, checks: list[_Check]) -> ValidationResult:
    failed, checked = [], []
    values = frame.select([c.unexpected.alias(str(i)) for i, c in enumerate(checks)]).row(0)
    for check, value in zip(checks, values, strict=True):
        label = f"{check.kind}({check.column})" if check.column else check.kind
        checked.append(label)
        if check.expected is not None:
            if int(value) != check.expected:
                failed.append(f"{label}: observed {int(value)}")
        elif value:
            failed.append(f"{label}: {int(value)} unexpected")
    return ValidationResult(success=not failed, failed=failed, checked=checked)


def _great_expectations(frame: pl.DataFrame, checks: list[_Check]) -> ValidationResult:
    from rlm_pipeline.validate import _import_gx, _quiet_context

    _import_gx()
    safe = {c: f"c{i}" for i, c in enumerate(frame.columns)}
    pandas = frame.rename(safe).to_pandas()
    context = _quiet_context()
    import great_expectations as gx
    import great_expectations.expectations as gxe_module
    from great_expectations.expectations.row_conditions import Column

    gxe: Any = gxe_module
    source = context.data_sources.add_pandas("rlm_pipeline_multi_output")
    asset = source.add_dataframe_asset("output")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": pandas}
    )
    suite = gx.ExpectationSuite("rlm_pipeline_multi_output")
    for check in checks:
        kwargs = {k: safe.get(v, v) if k.startswith("column") else v
                  for k, v in check.kwargs.items()}
        if check.condition is not None:
            column, test = check.condition
            kwargs["row_condition"] = getattr(Column(safe[column]), test)()
        name = "Expect" + "".join(part.title() for part in check.kind.split("_")[1:])
        suite.add_expectation(getattr(gxe, name)(**kwargs))
    results = batch.validate(suite)
    names = {v: k for k, v in safe.items()}
    failed, checked = [], []
    for item in results.results:
        config = item.expectation_config
        column = config.kwargs.get("column") or config.kwargs.get("column_A")
        label = f"{config.type}({names.get(column, column)})" if column else str(config.type)
        checked.append(label)
        if not item.success:
            detail = item.result or {}
            count = detail.get("unexpected_count", detail.get("observed_value"))
            failed.append(f"{label}: {count} unexpected" if column else f"{label}: observed {count}")
    return ValidationResult(success=not failed, failed=failed, checked=checked)


def _run(output: Any, columns: list[str], checks: Callable[[], list[_Check]],
         backend: Backend) -> ValidationResult:
    if backend not in ("great_expectations", "builtin"):
        msg = f"backend must be 'great_expectations' or 'builtin', got {backend!r}"
        raise InputError(msg)
    frame = _frame(output, columns)
    if backend == "builtin":
        return _builtin(frame, checks())
    return _great_expectations(frame, checks())


def validate_aggregate(output: Any, *, input_rows: int, groups: int | None = None,
                       backend: Backend = "great_expectations") -> ValidationResult:
    """Check an :func:`~rlm_pipeline.ops.aggregate_op.aggregate` output (see the module docstring)."""
    rows, done = pl.col("rows"), pl.col("rows_summarised")
    error = pl.col("summary_error")

    def checks() -> list[_Check]:
        out = [
            _Check("expect_column_sum_to_be_between", "rows",
                   {"column": "rows", "min_value": input_rows, "max_value": input_rows},
                   rows.sum(), expected=input_rows),
            _Check("expect_column_pair_values_a_to_be_greater_than_b", "rows",
                   {"column_A": "rows", "column_B": "rows_summarised", "or_equal": True},
                   (rows < done).sum()),
            _Check("expect_column_values_to_be_between", "rows_summarised",
                   {"column": "rows_summarised", "min_value": 0}, (done < 0).sum()),
            _Check("expect_column_values_to_not_be_null", "summary_error",
                   {"column": "summary_error"},
                   (pl.col("summary").is_null() & error.is_null()).sum(),
                   condition=("summary", "is_null")),
        ]
        if groups is not None:
            out.insert(0, _Check("expect_table_row_count_to_equal", None, {"value": groups},
                                 pl.len(), expected=groups))
        return out

    # A summary missing rows must say so: checked here in Polars on both backends
    # (a row condition comparing two columns is not portable across gx versions).
    result = _run(output, ["summary", "rows", "rows_summarised", "summary_error"], checks, backend)
    frame = _frame(output, ["summary", "rows", "rows_summarised", "summary_error"])
    silent = frame.filter(
        (pl.col("rows_summarised") < pl.col("rows")) & pl.col("summary_error").is_null()
    ).height
    label = "rows_summarised_below_rows_has_summary_error"
    if silent:
        return ValidationResult(False, [*result.failed, f"{label}: {silent} unexpected"],
                                [*result.checked, label])
    return ValidationResult(result.success, result.failed, [*result.checked, label])


def validate_top_k(output: Any, *, k: int,
                   backend: Backend = "great_expectations") -> ValidationResult:
    """Check a :func:`~rlm_pipeline.ops.topk_op.top_k` output (see the module docstring)."""
    rank, score = pl.col("rank"), pl.col("score")

    def checks() -> list[_Check]:
        return [
            _Check("expect_table_row_count_to_be_between", None,
                   {"min_value": 0, "max_value": k}, (pl.len() > k).cast(pl.Int64)),
            _Check("expect_column_values_to_be_unique", "rank", {"column": "rank"},
                   rank.drop_nulls().is_duplicated().sum()),
            _Check("expect_column_values_to_be_between", "rank",
                   {"column": "rank", "min_value": 1, "max_value": k},
                   ((rank < 1) | (rank > k)).sum()),
            _Check("expect_column_values_to_not_be_null", "rank", {"column": "rank"},
                   rank.is_null().sum()),
            _Check("expect_column_values_to_be_between", "score",
                   {"column": "score", "min_value": 0, "max_value": 100},
                   ((score < 0) | (score > 100)).sum()),
            _Check("expect_column_values_to_not_be_null", "score", {"column": "score"},
                   score.is_null().sum()),
        ]

    return _run(output, ["rank", "score"], checks, backend)


def validate_join(output: Any, *, backend: Backend = "great_expectations") -> ValidationResult:
    """Check a :func:`~rlm_pipeline.ops.join_op.join` output (see the module docstring)."""
    pattern = "^(?:" + "|".join(_KINDS) + ")"
    error = pl.col("join_error")

    def checks() -> list[_Check]:
        return [
            _Check("expect_column_values_to_match_regex", "join_error",
                   {"column": "join_error", "regex": pattern},
                   (error.is_not_null() & ~error.str.contains(pattern)).sum()),
        ]

    return _run(output, ["join_error"], checks, backend)
