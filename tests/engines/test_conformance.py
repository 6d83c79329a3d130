"""One suite for every engine: the same inputs, filters, partitions and SELECTs give the
same rows on Polars and Spark, and DuckDB (the oracle) agrees.

Known gaps are strict xfails per engine (``known_gap``), so a fix shows up as XPASS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm_pipeline.engines import Engine
from rlm_pipeline.engines.partitioning import MAX_HEAD_ROWS, chunk_label, chunk_sizes
from rlm_pipeline.engines.reads import MAX_VALUE_COUNTS
from rlm_pipeline.errors import ExpressionError, InputError

from .data import TICKETS_SCHEMA, norm, rows_of, sorted_rows, tickets, users

MakeEngine = Callable[[Any], Engine]

INPUT_KINDS = [
    "polars_df",
    "polars_lazy",
    "arrow",
    "pandas",
    "parquet",
    "dir",
    "glob",
    "csv",
    "jsonl",
    "spark_df",
]


def _input(kind: str, files: dict[str, Path], request: pytest.FixtureRequest) -> Any:
    frame = tickets()
    if kind == "polars_df":
        return frame
    if kind == "polars_lazy":
        return frame.lazy()
    if kind == "arrow":
        return frame.to_arrow()
    if kind == "pandas":
        return frame.to_pandas(use_pyarrow_extension_array=True)
    if kind == "spark_df":
        session = request.getfixturevalue("spark")
        return session.createDataFrame(frame.to_arrow())
    if kind in ("parquet", "dir", "csv", "jsonl"):
        return files[kind]
    return str(files["glob"])


def _expected(kind: str) -> pl.DataFrame:
    frame = tickets()
    if kind == "jsonl":  # JSON has no date type: both engines read the text
        return frame.with_columns(pl.col("day").cast(pl.String))
    return frame


@pytest.fixture
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    """DuckDB with the same tables registered as views ``context`` and ``users``."""
    con = duckdb.connect()
    context = tickets().to_arrow()
    people = users().to_arrow()
    con.register("context", context)
    con.register("users", people)
    yield con
    con.close()


def _duck_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in con.execute(sql).fetchall()]


# -- loading -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_load_schema_count_rows(
    kind: str,
    make_engine: MakeEngine,
    files: dict[str, Path],
    request: pytest.FixtureRequest,
    engine_name: str,
) -> None:
    engine = make_engine(_input(kind, files, request))
    expected = _expected(kind)
    assert engine.name == engine_name
    assert engine.views() == ["context"]
    schema = dict(TICKETS_SCHEMA, day="string") if kind == "jsonl" else TICKETS_SCHEMA
    assert engine.schema("context") == schema
    assert engine.count("context") == expected.height
    assert sorted_rows(rows_of(engine.to_arrow("context"))) == sorted_rows(rows_of(expected))


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_head_keeps_input_order(
    kind: str,
    make_engine: MakeEngine,
    files: dict[str, Path],
    request: pytest.FixtureRequest,
    known_gap: Callable[..., None],
) -> None:
    engine = make_engine(_input(kind, files, request))
    head = engine.head("context", 7)
    assert isinstance(head, pa.Table)
    assert head.column_names == list(TICKETS_SCHEMA)
    expected = rows_of(_expected(kind).head(7))
    got = rows_of(head)
    # row 6 holds a 450-character question: cut to 200 characters with a marker
    assert len(got[6][2]) == 200 and got[6][2].endswith("…")
    assert got[:6] == expected[:6]
    assert got[6][:2] == expected[6][:2] and got[6][3:] == expected[6][3:]


def test_head_is_bounded(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    assert engine.head("context", 500).num_rows == MAX_HEAD_ROWS
    assert engine.head("context", 0).num_rows == 0
    head = engine.head("context", 3, columns=["question", "ticket_id"])
    assert head.column_names == ["question", "ticket_id"]
    assert head.column("ticket_id").to_pylist() == [0, 1, 2]
    for bad in (-1, "3", 2.5, True):
        with pytest.raises(InputError, match="n must be a non-negative integer"):
            engine.head("context", bad)  # type: ignore[arg-type]


def test_head_unknown_column_or_view(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    with pytest.raises(
        InputError, match=r"unknown columns \['nope'\] in view 'context'; columns: "
    ):
        engine.head("context", 3, columns=["nope"])
    with pytest.raises(InputError, match="unknown view 'missing'; known views: context"):
        engine.head("missing", 3)
    with pytest.raises(InputError, match="unknown view"):
        engine.count("missing")


def test_register_more_views_and_names(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    engine.register("users", users().to_arrow())
    assert engine.views() == ["context", "users"]
    assert engine.schema("users") == {"user_id": "int64", "region": "string"}
    assert engine.count("users") == 10
    with pytest.raises(InputError, match="view 'users' exists already"):
        engine.register("users", users().to_arrow())
    engine.register("users", users().head(3).to_arrow(), replace=True)
    assert engine.count("users") == 3
    for bad in ("1abc", "a b", "x;drop", "", "a" * 65, "ü"):
        with pytest.raises(InputError, match="invalid view name"):
            engine.register(bad, users().to_arrow())
    with pytest.raises(InputError, match="differs from view 'users' only in case"):
        engine.register("USERS", users().to_arrow())


# -- partition into n chunks (needs no SQL) --------------------------------------------


def _chunked(expected: pl.DataFrame, n: int) -> list[tuple[Any, ...]]:
    """The expected rows of a partition into ``n`` chunks: row r -> chunk r*k//N."""
    rows = expected.height
    k = min(n, rows)
    labels = [chunk_label(r * k // rows, k) for r in range(rows)]
    return rows_of(expected.with_columns(partition=pl.Series(labels, dtype=pl.String)))


@pytest.mark.parametrize("n", [1, 3, 7, 64, 200])
def test_partition_into_chunks_from_frame(make_engine: MakeEngine, n: int) -> None:
    engine = make_engine(tickets())
    sizes = engine.partition("context", n=n, name="chunks")
    k = min(n, 64)
    assert list(sizes) == [chunk_label(i, k) for i in range(k)]
    assert sum(sizes.values()) == 64
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert engine.schema("chunks") == {**TICKETS_SCHEMA, "partition": "string"}
    assert rows_of(engine.to_arrow("chunks")) == _chunked(tickets(), n)


@pytest.fixture
def small_spark_splits(request: pytest.FixtureRequest, engine_name: str) -> Iterator[None]:
    """Make Spark split one small Parquet file into several partitions (one per row group)."""
    if engine_name != "spark":
        yield
        return
    session = request.getfixturevalue("spark")
    keys = ("spark.sql.files.maxPartitionBytes", "spark.sql.files.openCostInBytes")
    old = {k: session.conf.get(k) for k in keys}
    for key in keys:
        session.conf.set(key, "256")
    yield
    for key, value in old.items():
        session.conf.set(key, value)


@pytest.mark.usefixtures("small_spark_splits")
def test_partition_into_chunks_from_parquet_split_in_many_tasks(
    make_engine: MakeEngine, files: dict[str, Path], engine_name: str
) -> None:
    engine = make_engine(files["parquet"])
    if engine_name == "spark":  # the test means something only if Spark splits the file
        assert engine.frame("context").rdd.getNumPartitions() > 1
    sizes = engine.partition("context", n=5, name="chunks")
    assert sizes == {"0": 13, "1": 13, "2": 13, "3": 13, "4": 12}
    assert rows_of(engine.to_arrow("chunks")) == _chunked(tickets(), 5)


@pytest.mark.parametrize("layout", ["plain", "hive"])
def test_partition_into_chunks_follows_file_order(
    make_engine: MakeEngine, tmp_path: Path, layout: str
) -> None:
    # a small first file and a big second one: Spark alone would read the big one first
    frame = tickets()
    parts = [frame.head(5), frame.slice(5)]
    for i, part in enumerate(parts):
        folder = tmp_path / (f"k={i}" if layout == "hive" else "")
        folder.mkdir(exist_ok=True)
        part.write_parquet(folder / f"part-{i}.parquet")
    engine = make_engine(tmp_path)
    expected = frame
    if layout == "hive":
        expected = frame.with_columns(k=pl.Series([0] * 5 + [1] * 59, dtype=pl.Int64))
        assert engine.schema("context")["k"] == "int64"
    engine.partition("context", n=4, name="chunks")
    assert rows_of(engine.to_arrow("chunks")) == _chunked(expected, 4)


def test_partition_chunks_of_empty_table(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets().head(0))
    assert engine.partition("context", n=4, name="chunks") == {}
    assert engine.count("chunks") == 0
    assert engine.schema("chunks") == {**TICKETS_SCHEMA, "partition": "string"}


def test_partition_arguments_are_checked(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    with pytest.raises(InputError, match="either by .* or n .*, not both"):
        engine.partition("context", by="user_id", n=3, name="p")
    with pytest.raises(InputError, match="needs by"):
        engine.partition("context", name="p")
    for bad in (0, -2, 1001, 2.0, "3", True):
        with pytest.raises(InputError, match="n must be an integer from 1 to 1000"):
            engine.partition("context", n=bad, name="p")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="cannot be replaced"):
        engine.partition("context", n=2, name="context")
    with pytest.raises(InputError, match="invalid view name"):
        engine.partition("context", n=2, name="bad name")
    assert engine.views() == ["context"]


# -- chunks of views whose row order is not fixed (GROUP BY, DISTINCT, joins) ---------------
#
# A chunk partition numbers rows in their order.  A GROUP BY / DISTINCT / join view has no
# fixed order: each evaluation may give another one.  The partition view must fix the
# assignment once, so that filtering each chunk on its own (what ``recurse`` does) sees every
# row of the view exactly once.


def _many_tickets(rows: int = 12_000, people: int = 3_000) -> pl.DataFrame:
    ids = list(range(rows))
    return pl.DataFrame(
        {
            "ticket_id": ids,
            "user_id": [(i * 7919) % people for i in ids],
            "kind": [("billing", "technical", "account", None)[i % 4] for i in ids],
        },
        schema={"ticket_id": pl.Int64, "user_id": pl.Int64, "kind": pl.String},
    )


def _many_users(people: int = 3_000) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": list(range(people)),
            "region": [("eu", "us", "apac", None)[i % 4] for i in range(people)],
        },
        schema={"user_id": pl.Int64, "region": pl.String},
    )


UNORDERED_VIEWS = {
    "group_by": "SELECT user_id, count(*) AS n, min(ticket_id) AS first FROM context "
    "GROUP BY user_id",
    "distinct": "SELECT DISTINCT user_id, kind FROM context",
    "join": "SELECT c.ticket_id, c.user_id, u.region FROM context AS c "
    "JOIN people AS u ON c.user_id = u.user_id WHERE c.ticket_id % 3 = 0",
}


def _check_chunks_cover_view(engine: Engine, view: str, n: int) -> None:
    """Filter each chunk of ``view`` on its own; the chunks together are ``view`` exactly."""
    expected = sorted_rows(rows_of(engine.to_arrow(view)))
    sizes = engine.partition(view, n=n, name="chunks")
    k = min(n, len(expected))
    assert sizes == chunk_sizes(len(expected), k)
    seen: list[tuple[Any, ...]] = []
    for label, size in sizes.items():
        assert engine.filter("chunks", f"partition = '{label}'", "one") == size
        table = engine.to_arrow("one")
        assert table.column("partition").to_pylist() == [label] * size
        seen += rows_of(table.drop_columns(["partition"]))
    assert sorted_rows(seen) == expected  # every row once: none lost, none twice
    # the whole partition view, read again, gives the same labels
    again = rows_of(engine.to_arrow("chunks"))
    assert len(again) == len(expected)
    assert {label: sum(1 for r in again if r[-1] == label) for label in sizes} == sizes


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("kind", list(UNORDERED_VIEWS))
def test_chunks_of_unordered_sql_views_hold_every_row_once(
    make_engine: MakeEngine, kind: str, n: int
) -> None:
    engine = make_engine(_many_tickets())
    engine.register("people", _many_users().to_arrow())
    rows = engine.sql(UNORDERED_VIEWS[kind], "v")
    duck = duckdb.connect()
    try:
        duck.register("context", _many_tickets().to_arrow())
        duck.register("people", _many_users().to_arrow())
        oracle = sorted_rows(_duck_rows(duck, UNORDERED_VIEWS[kind]))
    finally:
        duck.close()
    assert rows == len(oracle) > 1000
    assert sorted_rows(rows_of(engine.to_arrow("v"))) == oracle
    _check_chunks_cover_view(engine, "v", n)


def _shuffled_each_time(
    engine_name: str, frame: pl.DataFrame, request: pytest.FixtureRequest
) -> Any:
    """``frame`` as a plan that returns its rows in a new random order at every evaluation."""
    if engine_name == "spark":
        from pyspark.sql import functions as F

        # current_timestamp() is fixed anew for every query run: each run sorts differently
        session = request.getfixturevalue("spark")
        base = session.createDataFrame(frame.to_arrow())
        return base.orderBy(F.xxhash64("ticket_id", F.current_timestamp()))
    return frame.lazy().map_batches(
        lambda df: df.sample(fraction=1.0, shuffle=True), schema=frame.schema
    )


def test_chunks_are_fixed_when_the_view_order_changes_at_every_evaluation(
    make_engine: MakeEngine, engine_name: str, request: pytest.FixtureRequest
) -> None:
    frame = _many_tickets(rows=3_000)
    engine = make_engine(_shuffled_each_time(engine_name, frame, request))
    # the input really changes order between two reads (the same order twice: odds ~ 1/3000!)
    # (read through fresh views: Spark runs a DataFrame it has run before with the same plan)
    engine.filter("context", "ticket_id >= 0", "read1")
    engine.filter("context", "ticket_id >= 0", "read2")
    assert rows_of(engine.to_arrow("read1")) != rows_of(engine.to_arrow("read2"))
    _check_chunks_cover_view(engine, "context", 5)
    assert sorted_rows(rows_of(engine.to_arrow("chunks").drop_columns(["partition"]))) == (
        sorted_rows(rows_of(frame))
    )


def test_chunks_of_a_keyed_partition_of_a_group_by_view(make_engine: MakeEngine) -> None:
    """Key partitions stay lazy: the key is a function of the row, so order does not matter."""
    engine = make_engine(_many_tickets())
    engine.sql("SELECT user_id, count(*) AS n FROM context GROUP BY user_id", "g")
    sizes = engine.partition("g", by="user_id % 5", name="parts")
    assert sizes == {str(i): 600 for i in range(5)}
    seen: list[tuple[Any, ...]] = []
    for label in sizes:
        engine.filter("parts", f"partition = '{label}'", "one")
        seen += rows_of(engine.to_arrow("one").drop_columns(["partition"]))
    assert sorted_rows(seen) == sorted_rows(rows_of(engine.to_arrow("g")))


# -- filter ----------------------------------------------------------------------------

WHERES = [
    "user_id IN (3, 5, 7)",
    "score > 0.5 AND urgent",
    "question IS NULL",
    "user_id IS NULL OR score IS NULL",
    "day >= DATE '2024-01-20'",
    "lower(question) LIKE '%refund%'",
    "NOT urgent AND ticket_id BETWEEN 10 AND 40",
    "length(question) > 100",
    "CASE WHEN score IS NULL THEN 0 ELSE score END < 0.3",
    "coalesce(user_id, -1) = -1",
    "user_id <> 3",
]


@pytest.mark.parametrize("where", WHERES)
def test_filter_matches_duckdb(
    make_engine: MakeEngine, duck: duckdb.DuckDBPyConnection, where: str
) -> None:
    engine = make_engine(tickets())
    count = engine.filter("context", where, "picked")
    expected = sorted_rows(_duck_rows(duck, f"SELECT * FROM context WHERE {where}"))
    assert count == len(expected)
    assert engine.count("picked") == count
    assert sorted_rows(rows_of(engine.to_arrow("picked"))) == expected
    assert engine.schema("picked") == TICKETS_SCHEMA


def test_filter_on_parquet_and_chained_views(
    make_engine: MakeEngine, files: dict[str, Path], duck: duckdb.DuckDBPyConnection
) -> None:
    engine = make_engine(files["parquet"])
    engine.filter("context", "urgent", "urgent_rows")
    n = engine.filter("urgent_rows", "user_id IN (0, 3, 6)", "mine")
    expected = _duck_rows(duck, "SELECT * FROM context WHERE urgent AND user_id IN (0, 3, 6)")
    assert n == len(expected) > 0
    assert sorted_rows(rows_of(engine.to_arrow("mine"))) == sorted_rows(expected)
    # reusing a model view name replaces it; views built on the old one keep working
    assert engine.filter("context", "ticket_id < 5", "urgent_rows") == 5
    assert engine.count("mine") == n
    assert engine.views() == ["context", "mine", "urgent_rows"]


def test_filter_rejects_bad_sql_and_names(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    with pytest.raises(ExpressionError, match="nope"):
        engine.filter("context", "nope = 1", "x")
    with pytest.raises(ExpressionError):
        engine.filter("context", "1 = 1; DROP TABLE context", "x")
    with pytest.raises(ExpressionError):
        engine.filter("context", "ticket_id IN (SELECT ticket_id FROM read_parquet('/etc'))", "x")
    with pytest.raises(InputError, match="cannot be replaced"):
        engine.filter("context", "urgent", "context")
    with pytest.raises(InputError, match="unknown view"):
        engine.filter("nope", "urgent", "x")
    assert engine.views() == ["context"]


# -- partition by key ----------------------------------------------------------------------

KEYS = [
    "user_id",
    "urgent",
    "day",
    "question",
    "CASE WHEN score >= 0.5 THEN 'high' WHEN score < 0.5 THEN 'low' END",
    "user_id % 3",
    "upper(substr(question, 1, 1))",
]


@pytest.mark.parametrize("by", KEYS)
def test_partition_by_key_matches_duckdb(
    make_engine: MakeEngine, duck: duckdb.DuckDBPyConnection, by: str
) -> None:
    engine = make_engine(tickets())
    sizes = engine.partition("context", by=by, name="parts")
    expected = _duck_rows(
        duck,
        f"SELECT coalesce(CAST(({by}) AS VARCHAR), '(null)') AS p, count(*) FROM context "
        "GROUP BY p ORDER BY p",
    )
    assert list(sizes.items()) == expected
    # the view holds every row, labelled with its partition
    labelled = engine.to_arrow("parts")
    assert labelled.num_rows == 64
    counts: dict[str, int] = {}
    for label in labelled.column("partition").to_pylist():
        counts[label] = counts.get(label, 0) + 1
    assert counts == sizes


def test_partition_by_key_caps_the_number_of_partitions(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets(1500))
    with pytest.raises(InputError, match="more than 1000 partitions"):
        engine.partition("context", by="ticket_id", name="p")
    assert engine.partition("context", by="ticket_id % 1000", name="p")["999"] == 1
    assert "p" in engine.views()


def test_partition_by_unknown_column(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    with pytest.raises(ExpressionError, match="nope"):
        engine.partition("context", by="nope", name="p")


# -- the library's own reads: value_counts / filter_value -------------------------------------
# Not the model's preview: no 20-row cap, no cut cells, exact (null-safe) matches.

VALUE_COLUMNS = ["user_id", "question", "score", "urgent", "day"]


@pytest.mark.parametrize("column", VALUE_COLUMNS)
def test_value_counts_matches_duckdb(
    make_engine: MakeEngine, duck: duckdb.DuckDBPyConnection, column: str
) -> None:
    engine = make_engine(tickets())
    counts = engine.value_counts("context", column, max_values=1000)
    expected = _duck_rows(
        duck,
        f"SELECT {column}, count(*) FROM context GROUP BY {column} "
        f"ORDER BY {column} ASC NULLS FIRST",
    )
    assert [(norm(v), n) for v, n in counts.pairs()] == [(norm(v), n) for v, n in expected]
    assert counts.complete and counts.distinct == len(expected)
    assert counts.rows == 64
    assert counts.values.type == engine.to_arrow("context").schema.field(column).type


def test_value_counts_beyond_its_maximum_still_counts_every_value(
    make_engine: MakeEngine, duck: duckdb.DuckDBPyConnection
) -> None:
    engine = make_engine(tickets())
    counts = engine.value_counts("context", "user_id", max_values=3)
    everything = _duck_rows(
        duck, "SELECT user_id, count(*) FROM context GROUP BY user_id ORDER BY user_id NULLS FIRST"
    )
    assert counts.pairs() == everything[:3]
    assert counts.pairs()[0][0] is None  # nulls first: always among the values read
    assert counts.distinct == len(everything) == 10
    assert not counts.complete


def test_value_counts_is_not_the_preview(make_engine: MakeEngine) -> None:
    # 30 distinct 1,000-character keys: all 30 come back, none cut (head gives 20, cut to 200)
    keys = [f'{i:02d} O\'Brien \\ "q" '.ljust(1000, "k") for i in range(30)]
    frame = pl.DataFrame({"key": [k for k in keys for _ in range(2)], "n": range(60)})
    engine = make_engine(frame)
    assert engine.head("context", 100).num_rows == MAX_HEAD_ROWS
    counts = engine.value_counts("context", "key", max_values=64)
    assert counts.pairs() == [(k, 2) for k in sorted(keys)]
    assert all(len(k) == 1000 for k in counts.values.to_pylist())


def test_value_counts_of_columns_named_like_its_count(make_engine: MakeEngine) -> None:
    frame = pl.DataFrame({"rows": [1, 1, 2], "rows_": ["a", "b", "b"], "count": [5, 5, 5]})
    engine = make_engine(frame)
    assert engine.value_counts("context", "rows", max_values=5).pairs() == [(1, 2), (2, 1)]
    assert engine.value_counts("context", "rows_", max_values=5).pairs() == [("a", 1), ("b", 2)]
    assert engine.value_counts("context", "count", max_values=5).pairs() == [(5, 3)]


def test_value_counts_of_an_empty_view(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    engine.filter("context", "ticket_id < 0", "none")
    counts = engine.value_counts("none", "question", max_values=5)
    assert counts.pairs() == [] and counts.distinct == 0 and counts.complete


def test_value_counts_arguments_are_checked(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    with pytest.raises(InputError, match=r"unknown columns \['nope'\]"):
        engine.value_counts("context", "nope", max_values=5)
    with pytest.raises(InputError, match="unknown view 'missing'"):
        engine.value_counts("missing", "user_id", max_values=5)
    for bad in (0, -1, True, "5", 2.0, MAX_VALUE_COUNTS + 1):
        with pytest.raises(InputError, match="max_values must be an integer"):
            engine.value_counts("context", "user_id", max_values=bad)  # type: ignore[arg-type]


def _awkward() -> pl.DataFrame:
    """Keys that SQL literals get wrong: long, quoted, backslashed, NaN, timestamps, null."""
    long_text = 'O\'Brien \\ said "hi"\n' + "z" * 990
    return pl.DataFrame(
        {
            "text": [long_text, long_text + "!", None, "", "é 退款", long_text, None],
            "ratio": [0.1, float("nan"), None, 1e-7, float("nan"), 0.1, 2.5],
            "at": [
                dt.datetime(2024, 1, 1, 12, 0, 0, 123456),
                dt.datetime(2024, 1, 1, 12, 0, 0, 123456),
                None,
                dt.datetime(1999, 12, 31, 23, 59, 59),
                dt.datetime(2024, 3, 1),
                dt.datetime(2024, 3, 1),
                dt.datetime(2024, 3, 1),
            ],
            "flag": [True, False, None, True, True, None, False],
            "id": list(range(7)),
        }
    )


@pytest.mark.parametrize("column", ["text", "ratio", "at", "flag", "id"])
def test_filter_value_selects_each_value_exactly(make_engine: MakeEngine, column: str) -> None:
    frame = _awkward()
    engine = make_engine(frame)
    counts = engine.value_counts("context", column, max_values=100)
    assert counts.rows == frame.height
    seen: list[int] = []
    for value, n in counts.pairs():
        engine.filter_value("context", column, value, "_rlm_one")
        ids = engine.to_arrow("_rlm_one").column("id").to_pylist()
        assert len(ids) == n == engine.count("_rlm_one"), value
        seen += ids
    assert sorted(seen) == list(range(frame.height))  # every row once, in one group


def test_filter_value_of_a_long_key_matches_its_rows(make_engine: MakeEngine) -> None:
    frame = _awkward()
    engine = make_engine(frame)
    long_text = frame["text"][0]
    assert len(long_text) > 1000
    engine.filter_value("context", "text", long_text, "mine")
    assert sorted(engine.to_arrow("mine").column("id").to_pylist()) == [0, 5]
    engine.filter_value("context", "text", None, "mine")
    assert sorted(engine.to_arrow("mine").column("id").to_pylist()) == [2, 6]
    engine.filter_value("context", "text", "absent", "mine")
    assert engine.count("mine") == 0


def test_filter_value_arguments_are_checked(make_engine: MakeEngine) -> None:
    engine = make_engine(tickets())
    with pytest.raises(InputError, match=r"unknown columns \['nope'\]"):
        engine.filter_value("context", "nope", 1, "x")
    with pytest.raises(InputError, match="unknown view 'missing'"):
        engine.filter_value("missing", "user_id", 1, "x")
    with pytest.raises(InputError, match="reserved|invalid|name"):
        engine.filter_value("context", "user_id", 1, "context")


# -- sql -------------------------------------------------------------------------------------

QUERIES = [
    "SELECT user_id, count(*) AS n FROM context GROUP BY user_id",
    "SELECT urgent, avg(score) AS s, min(day) AS first_day, max(ticket_id) AS last "
    "FROM context GROUP BY urgent",
    "SELECT u.region, count(*) AS n FROM context AS c JOIN users AS u ON c.user_id = u.user_id "
    "GROUP BY u.region",
    "WITH hot AS (SELECT * FROM context WHERE score > 0.5) "
    "SELECT u.region, count(DISTINCT hot.user_id) AS people FROM hot "
    "LEFT JOIN users AS u ON hot.user_id = u.user_id GROUP BY u.region HAVING count(*) > 1",
    "SELECT ticket_id, CASE WHEN urgent THEN 'now' ELSE 'later' END AS lane FROM context "
    "WHERE user_id IS NOT NULL",
    "SELECT DISTINCT user_id FROM context",
]

ORDERED_QUERIES = [
    "SELECT ticket_id, score FROM context WHERE score IS NOT NULL "
    "ORDER BY score DESC, ticket_id LIMIT 10",
    "SELECT user_id, count(*) AS n FROM context WHERE user_id IS NOT NULL "
    "GROUP BY user_id ORDER BY n DESC, user_id",
]


@pytest.fixture
def two_views(make_engine: MakeEngine) -> Engine:
    engine = make_engine(tickets())
    engine.register("users", users().to_arrow())
    return engine


@pytest.mark.parametrize("query", QUERIES)
def test_sql_matches_duckdb(two_views: Engine, duck: duckdb.DuckDBPyConnection, query: str) -> None:
    count = two_views.sql(query, "result")
    expected = sorted_rows(_duck_rows(duck, query))
    assert count == len(expected)
    assert sorted_rows(rows_of(two_views.to_arrow("result"))) == expected


@pytest.mark.parametrize("query", ORDERED_QUERIES)
def test_sql_order_by_matches_duckdb(
    two_views: Engine, duck: duckdb.DuckDBPyConnection, query: str
) -> None:
    two_views.sql(query, "result")
    expected = [tuple(norm(v) for v in row) for row in _duck_rows(duck, query)]
    assert rows_of(two_views.to_arrow("result")) == expected


def test_sql_over_model_views(two_views: Engine, duck: duckdb.DuckDBPyConnection) -> None:
    two_views.filter("context", "urgent", "urgent_rows")
    two_views.partition("urgent_rows", n=3, name="chunks")
    two_views.sql(
        "SELECT partition, count(*) AS n FROM chunks GROUP BY partition ORDER BY partition",
        "sizes",
    )
    expected_total = _duck_rows(duck, "SELECT count(*) FROM context WHERE urgent")[0][0]
    got = rows_of(two_views.to_arrow("sizes"))
    assert [p for p, _ in got] == ["0", "1", "2"]
    assert sum(n for _, n in got) == expected_total
    assert two_views.schema("sizes") == {"partition": "string", "n": "int64"}


def test_sql_reaches_only_registered_views(two_views: Engine) -> None:
    with pytest.raises(ExpressionError, match="secret"):
        two_views.sql("SELECT * FROM secret", "x")
    with pytest.raises(ExpressionError):
        two_views.sql("SELECT * FROM read_parquet('/etc/passwd')", "x")
    with pytest.raises(ExpressionError):
        two_views.sql("DROP TABLE context", "x")
    with pytest.raises(InputError, match="cannot be replaced"):
        two_views.sql("SELECT * FROM users", "context")
    assert two_views.views() == ["context", "users"]


# -- property: random WHERE conditions, every engine against DuckDB --------------------------

_ATOMS = st.one_of(
    st.builds(
        "{} {} {}".format,
        st.sampled_from(["user_id", "ticket_id"]),
        st.sampled_from(["=", "<>", "<", ">="]),
        st.integers(-2, 70),
    ),
    st.builds("{} IS NULL".format, st.sampled_from(["user_id", "score", "question"])),
    st.builds("score > {}".format, st.integers(0, 100).map(lambda v: v / 100)),
    st.just("urgent"),
    st.builds("question LIKE '%{}%'".format, st.sampled_from(["refund", "app", "é", "x", "?"])),
    st.builds(
        lambda ids: f"user_id IN ({', '.join(map(str, ids))})",
        st.lists(st.integers(0, 9), min_size=1, max_size=4),
    ),
    st.builds("day < DATE '2024-01-{:02d}'".format, st.integers(1, 31)),
)
WHERE_CONDITIONS = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.builds("({}) AND ({})".format, inner, inner),
        st.builds("({}) OR ({})".format, inner, inner),
        st.builds("NOT ({})".format, inner),
    ),
    max_leaves=5,
)


def test_random_filters_match_duckdb(
    make_engine: MakeEngine, duck: duckdb.DuckDBPyConnection, engine_name: str
) -> None:
    engine = make_engine(tickets())

    @settings(
        max_examples=40 if engine_name == "polars" else 10,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(WHERE_CONDITIONS)
    def check(where: str) -> None:
        count = engine.filter("context", where, "random")
        expected = sorted_rows(_duck_rows(duck, f"SELECT * FROM context WHERE {where}"))
        assert count == len(expected)
        assert sorted_rows(rows_of(engine.to_arrow("random"))) == expected

    check()
