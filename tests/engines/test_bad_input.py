"""Bad input gets one clear error (or a correct result), never a deep engine traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.engines import Engine, open_engine
from rlm_pipeline.errors import EngineError, InputError

from .data import TICKETS_SCHEMA, tickets

MakeEngine = Callable[[Any], Engine]


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert "Traceback" not in text and "at org.apache" not in text
    return text


def test_missing_file(make_engine: MakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(InputError, match="input not found: .*nope.parquet") as info:
        make_engine(path)
    _one_line(info.value)


def test_directory_without_parquet(make_engine: MakeEngine, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(InputError, match="no Parquet files in directory"):
        make_engine(tmp_path)


def test_glob_without_matches(make_engine: MakeEngine, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no files match .*\\*.parquet"):
        make_engine(str(tmp_path / "*.parquet"))


@pytest.mark.parametrize(
    "content",
    [b"", b"PAR1 this is not parquet", b"\x00" * 100],
    ids=["empty", "garbage", "zeros"],
)
def test_corrupt_parquet(make_engine: MakeEngine, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a readable Parquet file: .*bad.parquet") as info:
        make_engine(path)
    _one_line(info.value)


def test_truncated_parquet(make_engine: MakeEngine, tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    tickets().write_parquet(good)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="not a readable Parquet file: .*cut.parquet"):
        make_engine(cut)


def test_corrupt_parquet_in_a_directory(make_engine: MakeEngine, tmp_path: Path) -> None:
    tickets().write_parquet(tmp_path / "part-0.parquet")
    (tmp_path / "part-1.parquet").write_bytes(b"oops")
    with pytest.raises(InputError, match="not a readable Parquet file: .*part-1.parquet"):
        make_engine(tmp_path)


def test_parquet_files_with_different_schemas(make_engine: MakeEngine, tmp_path: Path) -> None:
    tickets().write_parquet(tmp_path / "part-0.parquet")
    pl.DataFrame({"other": [1]}).write_parquet(tmp_path / "part-1.parquet")
    with pytest.raises(InputError, match="Parquet files have different schemas"):
        make_engine(tmp_path)


def test_corrupt_data_page_is_an_engine_error(make_engine: MakeEngine, tmp_path: Path) -> None:
    """A valid footer over damaged pages passes the cheap check and fails on read: EngineError."""
    path = tmp_path / "pages.parquet"
    pl.DataFrame({"text": [f"row {i} " * 20 for i in range(2000)]}).write_parquet(
        path, compression="zstd"
    )
    data = bytearray(path.read_bytes())
    for i in range(200, len(data) // 2):
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))
    engine = make_engine(path)
    with pytest.raises(EngineError, match="could not collect view 'context'") as info:
        engine.to_arrow("context")
    _one_line(info.value)


@pytest.mark.parametrize("name", ["data.txt", "data.xlsx", "data.csv.gz", "data"])
def test_unknown_extension(make_engine: MakeEngine, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(InputError, match="unsupported input .*expected .parquet, .csv"):
        make_engine(path)


def test_unsupported_python_object(make_engine: MakeEngine) -> None:
    with pytest.raises(InputError, match="cannot read dict: expected a Polars DataFrame"):
        make_engine({"a": [1, 2]})


def test_unknown_engine_name() -> None:
    with pytest.raises(InputError, match="engine must be 'polars' or 'spark', got 'duckdb'"):
        open_engine(tickets(), "duckdb")


def test_spark_engine_without_a_session() -> None:
    code = textwrap.dedent(
        """
        import polars as pl, sys
        from rlm_pipeline.engines import open_engine
        from rlm_pipeline.errors import InputError
        try:
            open_engine(pl.DataFrame({"a": [1]}), "spark")
        except InputError as exc:
            print(exc)
        from pyspark import SparkContext
        print("jvm started:", SparkContext._jvm is not None)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "engine='spark' needs a SparkSession: pass spark=... or start one first" in out
    assert "jvm started: False" in out


def test_empty_csv(make_engine: MakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="CSV file .*empty.csv is empty"):
        make_engine(path)


def test_non_utf8_csv(make_engine: MakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,text\n1,ok\n2,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(
        InputError, match=r"CSV file .*latin1.csv is not valid UTF-8 \(at byte offset 18, line 3\)"
    ) as info:
        make_engine(path)
    _one_line(info.value)


def test_non_utf8_far_into_a_csv(make_engine: MakeEngine, tmp_path: Path) -> None:
    body = b"id,text\n" + b"".join(b"%d,caf\xc3\xa9\n" % i for i in range(300_000))
    path = tmp_path / "late.csv"
    path.write_bytes(body + b"300000,\xff\n")
    with pytest.raises(InputError, match=r"not valid UTF-8 \(at byte offset \d+, line 300002\)"):
        make_engine(path)


def test_json_array_is_not_json_lines(make_engine: MakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[{"a": 1}, {"a": 2}]')
    with pytest.raises(InputError, match="is not JSON Lines"):
        make_engine(path)


def test_csv_with_header_only_is_an_empty_table(make_engine: MakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("id,text\n")
    engine = make_engine(path)
    assert engine.count("context") == 0
    assert engine.head("context", 5).num_rows == 0


@pytest.mark.parametrize("source", ["frame", "parquet"])
def test_empty_table(make_engine: MakeEngine, tmp_path: Path, source: str) -> None:
    frame = tickets().head(0)
    data: Any = frame
    if source == "parquet":
        data = tmp_path / "empty.parquet"
        frame.write_parquet(data)
    engine = make_engine(data)
    assert engine.schema("context") == TICKETS_SCHEMA
    assert engine.count("context") == 0
    head = engine.head("context", 5)
    assert head.num_rows == 0 and head.column_names == list(TICKETS_SCHEMA)
    assert engine.to_arrow("context").num_rows == 0
    assert engine.filter("context", "user_id = 1", "none") == 0
    assert engine.partition("context", by="user_id", name="by_user") == {}
    assert engine.partition("context", n=3, name="chunks") == {}
    assert engine.sql("SELECT count(*) AS n FROM context", "n") == 1
    assert engine.to_arrow("n").column("n").to_pylist() == [0]


def test_text_column_with_nulls(make_engine: MakeEngine) -> None:
    frame = pl.DataFrame({"id": [1, 2, 3, 4], "text": ["a", None, "b", None]})
    engine = make_engine(frame)
    assert engine.schema("context") == {"id": "int64", "text": "string"}
    assert engine.head("context", 4).column("text").to_pylist() == ["a", None, "b", None]
    assert engine.filter("context", "text IS NULL", "missing") == 2
    assert engine.filter("context", "text <> 'a'", "not_a") == 1  # NULL <> 'a' is not true
    assert engine.partition("context", by="text", name="p") == {"(null)": 2, "a": 1, "b": 1}


def test_all_null_text_column(make_engine: MakeEngine) -> None:
    frame = pl.DataFrame(
        {"id": [1, 2], "text": [None, None]}, schema={"id": pl.Int64, "text": pl.String}
    )
    engine = make_engine(frame)
    assert engine.count("context") == 2
    assert engine.partition("context", by="text", name="p") == {"(null)": 2}


def test_csv_cell_with_a_newline_is_one_row(make_engine: MakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "multiline.csv"
    path.write_text('id,q\n1,"line one\nline two"\n2,plain\n', encoding="utf-8")
    engine = make_engine(path)
    assert engine.count("context") == 2
    assert engine.to_arrow("context").column("q").to_pylist() == ["line one\nline two", "plain"]
