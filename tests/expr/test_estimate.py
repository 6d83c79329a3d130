"""Join probes count exactly the rows of each join; plan scans count expanded view reads."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import open_engine
from rlm_pipeline.errors import ResourceLimitError
from rlm_pipeline.expr import compile_select, to_polars_query, to_spark_sql
from rlm_pipeline.expr.estimate import PROBE_LIMITS, join_probes, plan_scans

T = pl.DataFrame(
    {
        "k": [1, 1, 2, 3, None, 3, 3],
        "g": ["a", "b", "a", "a", "b", None, "b"],
        "v": [10, 20, 30, 40, 50, 60, 70],
    }
)
U = pl.DataFrame({"k": [1, 3, 3, None, 4], "w": ["x", "y", "z", "n", "q"]})
SCHEMAS = {"t": {"k": "int64", "g": "string", "v": "int64"}, "u": {"k": "int64", "w": "string"}}

QUERIES = [
    "SELECT t.v FROM t JOIN u ON t.k = u.k",
    "SELECT t.v FROM t LEFT JOIN u ON t.k = u.k",
    "SELECT t.v FROM t RIGHT JOIN u ON t.k = u.k",
    "SELECT t.v FROM t FULL JOIN u ON t.k = u.k",
    "SELECT a.v FROM t a JOIN t b ON a.g = b.g AND a.k = b.k",
    "SELECT a.v FROM t a JOIN t b ON a.g = b.g JOIN u ON b.k = u.k",
    "SELECT a.v FROM t a JOIN (SELECT k + 1 AS k FROM u) s ON a.k = s.k",
    "WITH c AS (SELECT k, g FROM t WHERE v > 15) SELECT c.g FROM c JOIN t ON c.k = t.k",
]


def _polars_probe(sql: str) -> float:
    frames = {"t": T.lazy(), "u": U.lazy()}
    probe = join_probes(compile_select(sql, SCHEMAS))[-1]
    plan = to_polars_query(compile_select(probe.sql, SCHEMAS, limits=PROBE_LIMITS), frames)
    return float(plan.collect().item() or 0)


@pytest.mark.parametrize("sql", QUERIES)
def test_the_last_probe_is_the_exact_row_count_of_a_join_without_where(sql: str) -> None:
    actual = to_polars_query(compile_select(sql, SCHEMAS), {"t": T.lazy(), "u": U.lazy()})
    assert _polars_probe(sql) == actual.collect().height


@pytest.mark.spark
def test_spark_probes_agree_with_polars(spark: Any) -> None:
    for name, frame in (("t", T), ("u", U)):
        spark.createDataFrame(frame.to_arrow()).createOrReplaceTempView(f"est_{name}")
    names = {"t": "est_t", "u": "est_u"}
    for sql in QUERIES:
        probe = join_probes(compile_select(sql, SCHEMAS))[-1]
        text = to_spark_sql(compile_select(probe.sql, SCHEMAS, limits=PROBE_LIMITS), names)
        assert float(spark.sql(text).collect()[0][0] or 0) == _polars_probe(sql), sql


def test_one_sided_where_conditions_shrink_the_sides_of_inner_joins() -> None:
    sql = "SELECT a.v FROM t a JOIN t b ON a.g = b.g WHERE a.v > 25 AND b.k = 3 AND a.k < b.k"
    probe = join_probes(compile_select(sql, SCHEMAS))[0]
    assert '"a"."v" > 25' in probe.sql and '"b"."k" = 3' in probe.sql
    assert '"a"."k" < "b"."k"' not in probe.sql  # both sides: left out (an upper bound)
    # g = 'a' rows with v > 25: 2; g = 'b' rows with v > 25: 2; with k = 3: a 1, b 1
    assert _polars_probe(sql) == 2 * 1 + 2 * 1


def test_plan_scans_expand_ctes_and_view_weights() -> None:
    ctes = ["c1 AS (SELECT k FROM t)"] + [
        f"c{i} AS (SELECT k FROM c{i - 1} UNION ALL SELECT k FROM c{i - 1})" for i in range(2, 31)
    ]
    doubling = compile_select("WITH " + ", ".join(ctes) + " SELECT k FROM c30", SCHEMAS)
    assert plan_scans(doubling, {"t": 1}) == 2**29
    linear = ["c1 AS (SELECT k FROM t)"] + [
        f"c{i} AS (SELECT k FROM c{i - 1})" for i in range(2, 31)
    ]
    assert (
        plan_scans(
            compile_select("WITH " + ", ".join(linear) + " SELECT k FROM c30", SCHEMAS), {"t": 1}
        )
        == 1
    )
    join = compile_select("SELECT t.v FROM t JOIN u ON t.k = u.k", SCHEMAS)
    assert plan_scans(join, {"t": 5, "u": 1}) == 6


def test_engine_refuses_a_big_join_and_a_big_view_but_runs_a_small_one() -> None:
    rows = 3000
    frame = pl.DataFrame({"k": [i % 3 for i in range(rows)], "v": list(range(rows))})
    engine = open_engine(frame)
    with pytest.raises(
        ResourceLimitError, match=r"about 3,000,000 rows .* max_view_rows = 1,000,000"
    ):
        engine.sql("SELECT a.v FROM context a JOIN context b ON a.k = b.k", "big")
    assert engine.sql("SELECT a.v FROM context a JOIN context b ON a.v = b.v", "same") == rows
    assert "big" not in engine.views()
