"""Each check function on its own fixture cases (no engine needed)."""

from __future__ import annotations

import re

import pytest
import sqlglot

from rlm_pipeline.errors import ExpressionError, UnsupportedExpressionError
from rlm_pipeline.expr import DEFAULT_LIMITS, Limits, compile_key, compile_select, compile_where
from rlm_pipeline.expr.check import (
    TREE_CHECKS,
    check_depth,
    check_in_lists,
    check_no_file_access,
    check_statement,
)
from rlm_pipeline.expr.scalar import FUNCTION_NAMES
from tests.expr.test_select_engines import QUERIES
from tests.expr.test_where_engines import SCALARS

SCHEMA = {"n": "int64", "x": "float64", "s": "string", "b": "bool", "d": "date"}

CHECK_CASES = {
    check_statement: (
        [("where", "n > 1"), ("select", "SELECT 1 AS a FROM t"), ("key", "lower(s)")],
        [("where", "DROP TABLE t"), ("select", "n > 1"), ("where", "SELECT 1"), ("select", "VALUES (1)")],
    ),
    check_no_file_access: (
        [("select", "SELECT * FROM t"), ("where", "readable = 1")],
        [("select", "SELECT * FROM read_parquet('x')"), ("where", "read_text('/etc/x') = ''"),
         ("select", "SELECT * FROM generate_series(1, 2)"), ("select", "SELECT 1 INTO x FROM t")],
    ),
    check_depth: (
        [("where", "n > 1 AND n < 5")],
        [("where", " + ".join(["n"] * 100) + " > 1")],
    ),
    check_in_lists: (
        [("where", "n IN (1, 2, 3)")],
        [("where", "n IN (" + ", ".join(["1"] * 1001) + ")")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("check", TREE_CHECKS, ids=lambda c: c.__name__)
def test_each_tree_check_has_cases(check: object) -> None:
    good, bad = CHECK_CASES[check]  # type: ignore[index]
    for kind, sql in good:
        check(sqlglot.parse_one(sql), kind, DEFAULT_LIMITS)  # type: ignore[operator]
    for kind, sql in bad:
        with pytest.raises(ExpressionError):
            check(sqlglot.parse_one(sql), kind, DEFAULT_LIMITS)  # type: ignore[operator]


def test_limits_are_configurable() -> None:
    small = Limits(max_in_items=2, max_sql_chars=30)
    compile_where("n IN (1, 2)", SCHEMA, limits=small)
    with pytest.raises(ExpressionError, match="the limit is 2"):
        compile_where("n IN (1, 2, 3)", SCHEMA, limits=small)
    with pytest.raises(ExpressionError, match="characters long"):
        compile_where("n > 1 AND n < 100000 AND n <> 77", SCHEMA, limits=small)


TYPES = [
    ("n + 1", "int64"), ("n + x", "float64"), ("n / 2", "float64"), ("n % 2", "int64"),
    ("length(s)", "int64"), ("concat(s, 'a')", "string"), ("extract(year FROM d)", "int64"),
    ("round(x, 1)", "float64"), ("round(n)", "int64"), ("floor(x)", "float64"),
    ("CASE WHEN b THEN n ELSE x END", "float64"), ("coalesce(NULL, s)", "string"),
    ("CAST(n AS VARCHAR)", "string"), ("n::double", "float64"), ("d", "date"), ("b", "bool"),
    ("DATE '2024-01-01'", "date"), ("nullif(n, 0)", "int64"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "dtype"), TYPES)
def test_key_types(sql: str, dtype: str) -> None:
    assert compile_key(sql, SCHEMA).dtype == dtype


def test_checking_does_not_modify_input_and_records_columns() -> None:
    checked = compile_where("N > 1 AND lower(S) = 'x' AND n < 9", SCHEMA)
    assert checked.columns == ("n", "s")
    assert checked.sql == "N > 1 AND lower(S) = 'x' AND n < 9"
    assert checked.kind == "where"


def test_case_insensitive_match_only_when_unique() -> None:
    both = {"aa": "int64", "AA": "int64"}
    assert compile_where("AA = 1", both).columns == ("AA",)  # exact match first
    with pytest.raises(ExpressionError, match="unknown column 'Aa'"):
        compile_where("Aa = 1", both)  # two case-insensitive matches: refuse to guess
    with pytest.raises(ExpressionError, match="unknown column 'COUNTRY'"):
        compile_where('"COUNTRY" = 1', {"country": "int64"})  # quoted names are exact
    assert compile_where("COUNTRY = 'x'", {"country": "string"}).columns == ("country",)
    with pytest.raises(ExpressionError, match="ambiguous"):
        compile_select("SELECT user_id FROM a JOIN b ON a.user_id = b.user_id",
                       {"a": {"user_id": "int64"}, "b": {"user_id": "int64"}})  # fmt: skip


def test_select_schema_and_views_used() -> None:
    q = compile_select(
        "WITH c AS (SELECT s, n FROM t WHERE b) "
        "SELECT c.s, count(*) AS k, sum(c.n) AS total FROM c JOIN u ON u.s = c.s GROUP BY c.s",
        {"t": SCHEMA, "u": {"s": "string"}, "unused": {"z": "int64"}},
    )
    assert q.views_used == ("t", "u")
    assert dict(q.schema) == {"s": "string", "k": "int64", "total": "int64"}
    assert q.columns == ("s", "k", "total")


def test_star_expands_in_schema_order() -> None:
    q = compile_select("SELECT * FROM t", {"t": SCHEMA})
    assert q.columns == tuple(SCHEMA)


def test_every_allowed_function_is_tested_on_all_engines() -> None:
    corpus = " ".join(SCALARS + QUERIES).lower()
    missing = [f for f in FUNCTION_NAMES if not re.search(rf"\b{f}\s*\(", corpus)]
    assert missing == [], f"allow-listed but not tested on every engine: {missing}"


@pytest.mark.parametrize(
    "sql",
    ["s LIKE 'a%' ESCAPE 'ab'", "regexp_like(s, s)", "replace(s, '', 'x') = ''",
     "strpos(s, '') = 1", "trim(LEADING 'x' FROM s) = ''", "round(x, n) > 1",
     "substring(s, n) = ''", "sum(DISTINCT n) > 1", "count(DISTINCT n, x) > 1"],
)  # fmt: skip
def test_argument_rules(sql: str) -> None:
    with pytest.raises((ExpressionError, UnsupportedExpressionError)):
        compile_where(sql, SCHEMA)
