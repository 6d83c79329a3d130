"""Adversarial inputs: each one gets the exact error it must get, or (for the
valid ones) the same rows on Polars, Spark and DuckDB."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from rlm_pipeline.errors import ExpressionError, UnsupportedExpressionError
from rlm_pipeline.expr import compile_key, compile_select, compile_where
from tests.expr.helpers import assert_same_rows

SCHEMA = {"id": "int64", "n": "int64", "x": "float64", "s": "string", "b": "bool", "d": "date"}
VIEWS = {"t": SCHEMA, "users": {"user_id": "int64", "name": "string"}}

U = UnsupportedExpressionError
E = ExpressionError

# (kind, sql, exact error type, fragment of the message)
REJECTED: list[tuple[str, str, type[Exception], str]] = [
    ("where", "1=1; DROP TABLE x", E, "only one statement"),
    ("where", "n = 1; SELECT * FROM t", E, "only one statement"),
    ("select", "SELECT * FROM t; DELETE FROM t", E, "only one statement"),
    ("where", "n = 1 -- ; DROP TABLE t", E, "comments are not allowed"),
    ("where", "n = 1 /* ; DROP TABLE t */", E, "comments are not allowed"),
    ("select", "SELECT * FROM t /* hidden */ ", E, "comments are not allowed"),
    ("select", "DROP TABLE t", U, "DROP statements are not allowed"),
    ("select", "CREATE TABLE x AS SELECT * FROM t", U, "CREATE statements are not allowed"),
    ("select", "INSERT INTO t SELECT * FROM t", U, "INSERT statements are not allowed"),
    ("select", "UPDATE t SET n = 1", U, "UPDATE statements are not allowed"),
    ("select", "DELETE FROM t", U, "DELETE statements are not allowed"),
    ("select", "COPY t TO '/tmp/x.csv'", U, "COPY statements are not allowed"),
    ("select", "ATTACH '/tmp/evil.db'", E, "syntax error"),
    ("select", "PRAGMA database_list", U, "PRAGMA statements are not allowed"),
    ("select", "SET threads = 1", U, "SET statements are not allowed"),
    ("select", "SELECT * INTO newtable FROM t", U, "SELECT INTO is not allowed"),
    ("select", "SELECT * FROM read_parquet('/etc/passwd')", U, "read_parquet() is not allowed"),
    ("select", "SELECT * FROM read_csv('/etc/passwd')", U, "read_csv() is not allowed"),
    ("select", "SELECT * FROM read_json_auto('x.json')", U, "is not allowed"),
    (
        "select",
        "SELECT * FROM t UNION ALL SELECT * FROM read_parquet('/etc/x')",
        U,
        "read_parquet() is not allowed",
    ),
    ("select", "SELECT * FROM generate_series(1, 10)", U, "table function"),
    ("select", "SELECT * FROM '/etc/passwd'", E, "unknown view '/etc/passwd'"),
    ("select", "SELECT * FROM secrets", E, "unknown view 'secrets'"),
    ("select", "SELECT * FROM main.t", U, "DB is not allowed"),
    ("select", "SELECT * FROM t WHERE n IN (SELECT user_id FROM users)", U, "IN (SELECT"),
    ("select", "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM users)", U, "EXISTS() is not allowed"),
    ("select", "SELECT (SELECT max(n) FROM t) AS m FROM users", U, "is not allowed"),
    ("select", "WITH RECURSIVE r AS (SELECT 1 AS a FROM t) SELECT * FROM r", U, "RECURSIVE"),
    ("select", "SELECT sum(n) OVER () AS w FROM t", U, "Window"),
    ("select", "SELECT * FROM t, users", U, "only [INNER|LEFT|RIGHT|FULL] JOIN ... ON"),
    ("select", "SELECT * FROM t JOIN users ON t.n > users.user_id", U, "must be equalities"),
    ("select", "SELECT n FROM t INTERSECT SELECT user_id FROM users", U, "INTERSECT/EXCEPT"),
    ("select", "SELECT s, count(*) AS c FROM t", E, "must be in GROUP BY"),
    ("select", "SELECT n, n FROM t", E, "duplicate output column 'n'"),
    (
        "select",
        "SELECT id FROM t JOIN users ON t.id = users.user_id JOIN users ON t.n = users.user_id",
        E,
        "used twice",
    ),
    (
        "select",
        "SELECT user_id FROM t JOIN users u ON t.id = u.user_id WHERE name = nme",
        E,
        "unknown column 'nme'",
    ),
    ("where", "pg_sleep(10) IS NULL", U, "pg_sleep() is not allowed"),
    ("where", "current_user() = 'x'", U, "is not allowed"),
    ("where", "version() = 'x'", U, "unknown function version()"),
    ("where", "my_udf(n) > 1", U, "unknown function my_udf()"),
    ("where", "random() > 0.5", U, "function RAND() is not allowed"),
    ("where", "now() > d", U, "unknown function now()"),
    ("where", "sum(n) > 1", U, "aggregate sum() is not allowed in a filter"),
    ("where", "n IN (SELECT 1)", U, "IN (SELECT"),
    ("where", "SELECT 1", U, "a query is not allowed here"),
    ("where", "amout > 1", E, "did you mean 'amount'"),
    ("where", "nn > 1", E, "unknown column 'nn'"),
    ("where", "t.n > 1", E, "qualified column"),
    ("where", "n", E, "must be a boolean condition"),
    ("where", "s > 1", E, "cannot compare string with int64"),
    ("where", "lower(n) = 'x'", E, "needs a string"),
    ("where", "d > 'yesterday'", E, "cannot compare date with string"),
    ("where", "d = DATE '2024-13-45'", E, "bad date literal"),
    ("where", "s LIKE '%a\\b%'", E, "must be followed by %, _"),
    ("where", "s LIKE n", E, "pattern must be a string literal"),
    ("where", "regexp_like(s, '(a+)+b')", E, "nested repetition"),
    ("where", "regexp_like(s, '(?i)abc')", E, "(? other than (?:"),
    ("where", "regexp_like(s, '\\bword')", E, "the escape \\b"),
    ("where", "regexp_like(s, '(a)\\1')", E, "back-references"),
    (
        "where",
        "substring(s, 0, 2) = 'x'",
        E,
        "substring start (1-based) must be an integer literal >= 1",
    ),
    ("where", "CAST(x AS VARCHAR) = '1.5'", E, "cannot CAST float64 to VARCHAR"),
    ("where", "CAST(s AS BLOB) = 'x'", E, "CAST to VARBINARY is not allowed"),
    ("where", "n = ", E, "SQL syntax error"),
    ("where", "s = 'unterminated", E, "cannot read the SQL"),
    ("where", "", E, "empty SQL"),
    ("where", "n IN (" + ", ".join(str(i) for i in range(1001)) + ")", E, "the limit is 1000"),
    ("where", "(" * 70 + "n > 1" + ")" * 70, E, "nested deeper than 32 parentheses"),
    ("where", "NOT " * 3000 + "b", E, "nested"),
    ("where", " OR ".join(f"n = {i}" for i in range(2000)), E, "characters long"),
    ("where", " + ".join(["n"] * 200) + " > 1", E, "nested deeper than 64 levels"),
    ("where", "n IN (n, 1)", E, "IN lists may only hold literal values"),
    ("key", "count(*)", U, "aggregate count() is not allowed in a partition key"),
]


def _compile(kind: str, sql: str) -> object:
    if kind == "where":
        return compile_where(sql, SCHEMA | {"amount": "int64"} if "amout" in sql else SCHEMA)
    if kind == "key":
        return compile_key(sql, SCHEMA)
    return compile_select(sql, VIEWS)


def test_there_are_at_least_thirty_adversarial_cases() -> None:
    assert len(REJECTED) >= 30


@pytest.mark.parametrize(
    ("kind", "sql", "error", "fragment"), REJECTED, ids=[f"{k}:{s[:40]}" for k, s, _, _ in REJECTED]
)
def test_rejected(kind: str, sql: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        _compile(kind, sql)
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert fragment in str(caught.value)
    assert caught.value.hint, "every rejection carries a hint the model can act on"


def test_unknown_column_lists_the_known_ones() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_where("stauts = 'open'", {"status": "string", "id": "int64"})
    assert "did you mean 'status'" in str(caught.value)
    assert caught.value.hint == "use one of: status, id"


def test_unknown_view_lists_the_views() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_select("SELECT * FROM contxt", {"context": {"a": "int64"}, "labelled": {}})
    assert "did you mean 'context'" in str(caught.value)
    assert caught.value.hint == "use one of: context, labelled"


def test_unsupported_is_an_expression_error() -> None:
    assert issubclass(UnsupportedExpressionError, ExpressionError)
    assert issubclass(ExpressionError, ValueError)


# ---- valid but tricky: same rows on every engine ------------------------------

VALID_WHERE = [
    ("s LIKE '%a\\_b%'", [3]),  # backslash escapes _, on every engine
    ("s LIKE '%\\%%'", [3]),
    ("s ILIKE 'apple'", [1]),
    ("s LIKE '%''%'", [6]),  # a quote inside a literal
    ("s LIKE '%\\\\%'", [7]),  # a literal backslash
    ("n NOT IN (3, NULL)", []),  # NULL in a NOT IN list: never true
    ("NOT (b AND n > 0)", [1, 2, 5, 7, 8]),  # NOT(NULL AND TRUE) is NULL, NOT(NULL AND FALSE) TRUE
    ("b IS NULL", [3, 7]),
    ("d = DATE '2024-02-29'", [4]),
    ("d > '2024-01-31'", [4, 8]),
    ("regexp_like(s, 'b$')", [8]),
    ("regexp_like(s, '^a.b$')", []),  # . never matches a newline
    ("s LIKE 'a_b'", [8]),  # _ does
    ("\"s\" = 'Ünïcödé 日本'", [5]),
    ("strpos(s, '日') = 9", [5]),  # positions count characters, not bytes
    ("length(s) = 10", [5, 7]),
]


@pytest.mark.spark
def test_tricky_valid_inputs_agree(spark: Any, typed_table: pa.Table) -> None:
    for where, ids in VALID_WHERE:
        rows = assert_same_rows(spark, {"t": typed_table}, where)
        assert sorted(int(r[0]) for r in rows) == ids, where


@pytest.mark.spark
def test_non_ascii_identifiers(spark: Any) -> None:
    table = pa.table({"città": ["Roma", "Milano", None], "größe": [3, 1, 2]})
    rows = assert_same_rows(spark, {"ort": table}, '"größe" > 1 AND "città" IS NOT NULL')
    assert rows == [("Roma", 3.0)]
    query = 'SELECT "città" AS c FROM ort ORDER BY "größe" DESC LIMIT 1'
    assert assert_same_rows(spark, {"ort": table}, query, kind="select") == [("Roma",)]


@pytest.mark.spark
def test_dollar_is_the_end_of_the_text(spark: Any) -> None:
    # Java's $ also matches before a final newline; the pinned meaning does not.
    table = pa.table({"s": ["ab\n", "ab", "a\r\nb"]})
    assert assert_same_rows(spark, {"t": table}, "regexp_like(s, 'b$')") == [
        ("a\r\nb",),
        ("ab",),
    ]
    assert assert_same_rows(spark, {"t": table}, "regexp_like(s, 'a.\\nb')") == [("a\r\nb",)]
