"""WHERE conditions and scalar expressions give identical results on Polars,
Spark and DuckDB (one query per engine for the whole batch)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from tests.expr.helpers import assert_same_rows, assert_same_values

pytestmark = pytest.mark.spark

SCALARS = [
    # arithmetic: int/float promotion, pinned division and remainder
    "n + 1",
    "n - x",
    "n * 3",
    "n / 2",
    "n / 0",
    "x / n",
    "n % 3",
    "-n % 3",
    "n % -3",
    "n % 0",
    "x % 2",
    "-x",
    "abs(n)",
    "abs(x)",
    "round(x)",
    "round(x, 1)",
    "round(n)",
    "floor(x)",
    "ceil(x)",
    "floor(n)",
    # strings
    "lower(s)",
    "upper(s)",
    "length(s)",
    "trim('  ' || s || ' ')",
    "substring(s, 2, 3)",
    "substr(s, 3)",
    "substring(s, 1, 0)",
    "strpos(s, 'a')",
    "position('日' IN s)",
    "replace(s, 'a', 'AA')",
    "concat(s, '-', s)",
    "concat(s, NULL)",
    "s || '!'",
    "CAST(n AS VARCHAR)",
    "CAST(b AS VARCHAR)",
    "CAST(d AS VARCHAR)",
    "CAST(x AS BIGINT)",
    "CAST(n AS DOUBLE)",
    "CAST(CAST(n AS VARCHAR) AS BIGINT)",
    # NULLs and CASE
    "coalesce(n, -1)",
    "coalesce(x, n, 0)",
    "nullif(n, 0)",
    "nullif(s, 'Apple')",
    "CASE WHEN n > 0 THEN 'pos' WHEN n < 0 THEN 'neg' END",
    "CASE n WHEN 7 THEN x ELSE 0 END",
    "CASE WHEN b THEN n ELSE x END",
    # dates
    "extract(year FROM d)",
    "extract(month FROM d)",
    "date_part('day', d)",
    "year(d)",
    "month(d)",
    "day(d)",
    "d >= DATE '2024-01-01'",
    "d < '2024-02-01'",
    "d BETWEEN '2024-01-01' AND '2024-02-29'",
    # booleans with three-valued logic
    "b AND n > 0",
    "b OR n > 0",
    "NOT b",
    "b IS NULL",
    "n IS NOT NULL AND NOT b",
    "n IN (1, 3, 7)",
    "n NOT IN (1, 3, 7)",
    "n IN (3, NULL)",
    "n NOT IN (3, NULL)",
    "x IN (2.5, 3)",
    "s IN ('Apple', 'it''s')",
    "n BETWEEN -2 AND 7",
    "n <> 7",
    "n IS DISTINCT FROM 7",
    "n IS NOT DISTINCT FROM NULL",
    "x > n",
    "s > 'a'",
    # LIKE / ILIKE with the pinned backslash escape, regexp subset
    "s LIKE 'a%'",
    "s LIKE '%a\\_b%'",
    "s LIKE 'a_b%'",
    "s LIKE '%\\%%'",
    "s ILIKE 'APP%'",
    "s LIKE '%\\\\%'",
    "s LIKE 'a_b'",
    "s LIKE '%日%'",
    "s LIKE 'a!_b%' ESCAPE '!'",
    "s ILIKE '%ünï%'",
    "regexp_like(s, '^[a-z]+$')",
    "regexp_like(s, 'a.b')",
    "regexp_like(s, '\\d|\\s')",
    "regexp_like(s, '(?:an){2}')",
    "regexp_like(s, '^\\w+$')",
    "regexp_like(s, 'b$')",
    "s RLIKE '[^a-z]'",
    "regexp_like(s, '\\\\')",
]


def test_scalars_agree_on_all_engines(spark: Any, typed_table: pa.Table) -> None:
    out = assert_same_values(spark, typed_table, SCALARS, key="id")
    rows = {row[0]: row[1:] for row in out["polars"]}
    value = dict(zip(SCALARS, zip(*[rows[k] for k in sorted(rows)], strict=True), strict=True))
    # spot-check the pinned meanings, not only agreement
    assert value["n % 3"][0] == -1.0  # -7 % 3 takes the dividend's sign
    assert value["n / 0"] == (None,) * 8  # division by zero is NULL
    assert value["n / 2"][0] == -3.5  # / is never integer division
    assert value["round(x)"][:2] == (3.0, -3.0)  # half away from zero
    assert value["CAST(x AS BIGINT)"][:2] == (2.0, -2.0)  # truncation
    assert value["s LIKE '%a\\_b%'"][:3] == (False, False, True)  # backslash escapes _
    assert value["s LIKE 'a_b'"][7] is True  # _ matches a newline
    assert value["regexp_like(s, 'a.b')"][7] is False  # . does not
    assert value["n NOT IN (3, NULL)"][0] is None  # NOT IN with NULL is never true
    assert value["concat(s, NULL)"][3] == ""  # concat() skips NULLs
    assert value["s || '!'"][3] is None  # || propagates them


WHERES = [
    "n > 0 AND s LIKE '%a%'",
    "b IS NULL OR x < 0",
    "NOT (n IN (3, NULL))",
    "lower(s) = 'apple' OR d = DATE '2024-02-29'",
    "strpos(s, '本') > 0",
    "coalesce(b, FALSE) = FALSE",
]


@pytest.mark.parametrize("where", WHERES)
def test_where_rows_agree(spark: Any, typed_table: pa.Table, where: str) -> None:
    rows = assert_same_rows(spark, {"t": typed_table}, where)
    assert all(len(row) == typed_table.num_columns for row in rows)
