"""Property test: expressions generated from the allow list give the same value
on Polars, Spark and DuckDB, row by row, over a table with NULLs, non-ASCII
text, quotes, backslashes and newlines."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.expr.conftest import make_typed_table
from tests.expr.helpers import assert_same_values

pytestmark = pytest.mark.spark

EXAMPLES = int(os.environ.get("RLM_EXPR_EXAMPLES", "60"))
PER_EXAMPLE = 4  # expressions evaluated together in one query per engine

Strat = st.SearchStrategy[str]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


TEXTS = ["", "a", "A", "it's", "é", "日本", "a_b", "%", "\\", "Apple", " pad "]
LIKE_PIECES = ["a", "A", "%", "_", "\\_", "\\%", "é", "日", "'", "b", "\\\\"]
REGEXPS = [
    "^a",
    "b$",
    "a.b",
    "[a-z]+",
    "[^a-z]",
    "\\d",
    "\\s",
    "\\w+$",
    "(?:an)+",
    "ä|é|日",
    "^.{3,5}$",
    "p{2}",
    "\\.",
    "'",
]


def ints(depth: int) -> Strat:
    leaf = st.one_of(
        st.sampled_from(["n", "id"]),
        st.integers(-10, 10).map(str),
    )
    if depth <= 0:
        return leaf
    sub, fl, s, b, d = (
        ints(depth - 1),
        floats(depth - 1),
        strings(depth - 1),
        bools(depth - 1),
        dates(),
    )
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "%"]), sub).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        sub.map(lambda e: f"abs({e})"),
        sub.map(lambda e: f"-({e})"),
        s.map(lambda e: f"length({e})"),
        st.tuples(s, st.sampled_from(["a", "日", "'", "p"])).map(
            lambda t: f"strpos({t[0]}, {_quote(t[1])})"
        ),
        d.map(lambda e: f"extract(year FROM {e})"),
        d.map(lambda e: f"date_part('month', {e})"),
        st.tuples(sub, sub).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"nullif({t[0]}, {t[1]})"),
        st.tuples(b, sub, sub).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
        fl.map(lambda e: f"CAST({e} AS BIGINT)"),
        b.map(lambda e: f"CAST({e} AS BIGINT)"),
    )


def floats(depth: int) -> Strat:
    leaf = st.one_of(st.just("x"), st.sampled_from(["2.5", "-0.5", "0.25", "1e2"]))
    if depth <= 0:
        return leaf
    sub, i = floats(depth - 1), ints(depth - 1)
    number = st.one_of(sub, i)
    return st.one_of(
        leaf,
        st.tuples(number, st.sampled_from(["+", "-", "*", "/"]), sub).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(i, i).map(lambda t: f"({t[0]} / {t[1]})"),
        st.sampled_from(["round(x)", "round(x, 1)", "floor(x)", "ceil(x)", "abs(x)", "x % 2"]),
        i.map(lambda e: f"CAST({e} AS DOUBLE)"),
        st.tuples(sub, i).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
    )


def strings(depth: int) -> Strat:
    leaf = st.one_of(st.just("s"), st.sampled_from(TEXTS).map(_quote))
    if depth <= 0:
        return leaf
    sub, i = strings(depth - 1), ints(depth - 1)
    return st.one_of(
        leaf,
        sub.map(lambda e: f"lower({e})"),
        sub.map(lambda e: f"upper({e})"),
        sub.map(lambda e: f"trim({e})"),
        st.tuples(sub, st.integers(1, 4), st.integers(0, 3)).map(
            lambda t: f"substring({t[0]}, {t[1]}, {t[2]})"
        ),
        st.tuples(sub, st.integers(1, 4)).map(lambda t: f"substr({t[0]}, {t[1]})"),
        st.tuples(sub, st.sampled_from(["a", "'", "日"]), st.sampled_from(["", "XY", "é"])).map(
            lambda t: f"replace({t[0]}, {_quote(t[1])}, {_quote(t[2])})"
        ),
        st.tuples(sub, sub).map(lambda t: f"concat({t[0]}, {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"({t[0]} || {t[1]})"),
        st.tuples(sub, sub).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        i.map(lambda e: f"CAST({e} AS VARCHAR)"),
        st.just("CAST(d AS VARCHAR)"),
        st.just("CAST(b AS VARCHAR)"),
    )


def dates() -> Strat:
    return st.one_of(st.just("d"), st.sampled_from(["DATE '2024-01-31'", "DATE '1999-12-31'"]))


def bools(depth: int) -> Strat:
    leaf = st.one_of(st.just("b"), st.sampled_from(["TRUE", "FALSE", "(NULL = 1)"]))
    if depth <= 0:
        return leaf
    sub, i, f, s = bools(depth - 1), ints(depth - 1), floats(depth - 1), strings(depth - 1)
    cmp = st.sampled_from(["=", "<>", "<", "<=", ">", ">=", "IS DISTINCT FROM"])
    like = st.lists(st.sampled_from(LIKE_PIECES), min_size=0, max_size=4).map("".join)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["AND", "OR"]), sub).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        sub.map(lambda e: f"NOT ({e})"),
        st.tuples(i, cmp, st.one_of(i, f)).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(s, cmp, s).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(dates(), cmp, st.sampled_from(["'2024-01-01'", "DATE '2023-12-01'", "d"])).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}"
        ),
        st.one_of(i, s, dates()).map(lambda e: f"{e} IS NULL"),
        st.tuples(
            i,
            st.sampled_from(["IN", "NOT IN"]),
            st.lists(
                st.one_of(st.integers(-8, 12).map(str), st.just("NULL")), min_size=1, max_size=4
            ),
        ).map(lambda t: f"{t[0]} {t[1]} ({', '.join(t[2])})"),
        st.tuples(s, st.lists(st.sampled_from(TEXTS).map(_quote), min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} IN ({', '.join(t[1])})"
        ),
        st.tuples(i, i, i).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
        st.tuples(s, st.sampled_from(["LIKE", "ILIKE", "NOT LIKE"]), like).map(
            lambda t: f"{t[0]} {t[1]} {_quote(t[2])}"
        ),
        st.tuples(s, st.sampled_from(REGEXPS)).map(
            lambda t: f"regexp_like({t[0]}, {_quote(t[1])})"
        ),
    )


TABLE: pa.Table = make_typed_table()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(bools(2), ints(2), floats(2), strings(2)),
        min_size=PER_EXAMPLE,
        max_size=PER_EXAMPLE,
    )
)
def test_generated_expressions_agree(spark: Any, expressions: list[str]) -> None:
    out = assert_same_values(spark, TABLE, expressions, key="id")
    assert len(out["duckdb"]) == TABLE.num_rows
