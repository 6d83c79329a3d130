"""SELECT queries give identical rows on Polars, Spark and DuckDB."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from tests.expr.helpers import assert_same_rows

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def tables(typed_table: pa.Table) -> dict[str, pa.Table]:
    users = pa.table(
        {
            "user_id": pa.array([1, 2, 3, 9], pa.int64()),
            "name": pa.array(["Ann", "Bob", None, "Zoë"], pa.string()),
            "score": pa.array([1.5, None, 3.0, -1.0], pa.float64()),
        }
    )
    tickets = pa.table(
        {
            "id": pa.array([10, 11, 12, 13, 14, 15], pa.int64()),
            "user_id": pa.array([1, 1, 2, None, 3, 7], pa.int64()),
            "label": pa.array(["billing", "tech", "billing", "other", None, "tech"], pa.string()),
        }
    )
    return {"t": typed_table, "users": users, "tickets": tickets}


QUERIES = [
    "SELECT * FROM t",
    "SELECT id, n * 2 AS n2, s FROM t WHERE n > 0 OR s IS NULL",
    "SELECT b, count(*) AS c, count(n) AS cn, sum(n) AS total, avg(x) AS mean FROM t GROUP BY b",
    "SELECT count(*) AS c, sum(n) AS total, min(s) AS lo, max(d) AS hi FROM t WHERE n > 1000",
    "SELECT extract(year FROM d) AS y, count(DISTINCT b) AS kinds FROM t GROUP BY 1 HAVING count(*) >= 1",
    "SELECT lower(s) AS ls FROM t ORDER BY ls LIMIT 3",
    "SELECT id FROM t ORDER BY n DESC NULLS LAST, id LIMIT 4",
    "SELECT id, n FROM t ORDER BY n LIMIT 2",
    "SELECT DISTINCT b FROM t",
    "SELECT label, count(*) AS n FROM tickets GROUP BY label ORDER BY n DESC, label LIMIT 2",
    "SELECT u.name, k.label FROM tickets AS k JOIN users AS u ON k.user_id = u.user_id",
    "SELECT k.id, u.name FROM tickets k LEFT JOIN users u ON u.user_id = k.user_id",
    "SELECT k.id, u.user_id FROM tickets k RIGHT JOIN users u ON u.user_id = k.user_id",
    "SELECT k.id, u.user_id FROM tickets k FULL JOIN users u ON u.user_id = k.user_id",
    "SELECT u.name, count(k.id) AS tickets FROM users u LEFT JOIN tickets k "
    "ON k.user_id = u.user_id GROUP BY u.name",
    "WITH billing AS (SELECT user_id FROM tickets WHERE label = 'billing') "
    "SELECT u.name FROM users u JOIN billing b ON b.user_id = u.user_id",
    "SELECT user_id FROM users UNION ALL SELECT user_id FROM tickets",
    "SELECT user_id FROM users UNION SELECT user_id FROM tickets ORDER BY 1 LIMIT 3",
    "SELECT x.label FROM (SELECT label, count(*) AS c FROM tickets GROUP BY label) AS x WHERE x.c > 1",
    "SELECT CASE WHEN score > 1 THEN 'hi' WHEN score IS NULL THEN 'none' ELSE 'lo' END AS band, "
    "count(*) AS c FROM users GROUP BY CASE WHEN score > 1 THEN 'hi' WHEN score IS NULL THEN 'none' ELSE 'lo' END",
    "SELECT 'k' AS k, 1 AS one, user_id FROM users",
    "SELECT id, s FROM t WHERE s LIKE '%\\_%' OR regexp_like(s, '^[A-Z]')",
    "SELECT sum(x) / count(*) AS m, sum(n) % 5 AS r FROM t",
    "SELECT user_id, coalesce(name, 'anon') AS who FROM users ORDER BY score DESC LIMIT 2 OFFSET 1",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_select_agrees(spark: Any, tables: dict[str, pa.Table], sql: str) -> None:
    rows = assert_same_rows(spark, tables, sql, kind="select")
    assert isinstance(rows, list)


def test_select_results_are_the_expected_ones(spark: Any, tables: dict[str, pa.Table]) -> None:
    rows = assert_same_rows(
        spark,
        tables,
        "SELECT label, count(*) AS n FROM tickets WHERE label IS NOT NULL GROUP BY label",
        kind="select",
    )
    assert rows == [("billing", 2.0), ("other", 1.0), ("tech", 2.0)]
    rows = assert_same_rows(spark, tables, "SELECT id FROM t ORDER BY n LIMIT 2", kind="select")
    assert rows == [(1.0,), (4.0,)]  # NULL sorts first ascending, then -7
