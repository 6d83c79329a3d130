from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rlm_pipeline.engines.sources import resolve_source
from rlm_pipeline.errors import InputError


def _write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"a": [1]}).write_parquet(path)
    return path


def test_directory_lists_data_files_sorted_and_skips_markers(tmp_path: Path) -> None:
    b = _write(tmp_path / "k=2" / "part-1.parquet")
    a = _write(tmp_path / "k=1" / "part-0.parquet")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".hidden.parquet").write_bytes(b"junk")
    (tmp_path / "_temporary" / "0").mkdir(parents=True)
    (tmp_path / "_temporary" / "0" / "x.parquet").write_bytes(b"junk")
    (tmp_path / "notes.md").write_text("not data")
    source = resolve_source(tmp_path)
    assert source.kind == "parquet" and source.is_dir
    assert source.files == (str(a), str(b))
    assert source.polars_location == [str(a), str(b)]


def test_glob_and_single_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.parquet")
    _write(tmp_path / "b.parquet")
    assert resolve_source(str(tmp_path / "*.parquet")).files == (
        str(a),
        str(tmp_path / "b.parquet"),
    )
    single = resolve_source(a)
    assert single.files == (str(a),) and not single.is_dir


def test_glob_with_mixed_kinds(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("a\n1\n")
    with pytest.raises(InputError, match="matches files of different kinds \\(csv, parquet\\)"):
        resolve_source(str(tmp_path / "*"))


@pytest.mark.parametrize(
    ("name", "kind"), [("x.CSV", "csv"), ("x.ndjson", "jsonl"), ("x.jsonl", "jsonl")]
)
def test_text_kinds(tmp_path: Path, name: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text('{"a": 1}\n' if kind == "jsonl" else "a\n1\n")
    assert resolve_source(path).kind == kind


def test_utf8_split_across_read_chunks_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    text = "a\n" + "é" * (1 << 20)  # a two-byte character straddles the 1 MiB chunk edge
    path.write_text(text + "\n", encoding="utf-8")
    assert resolve_source(path).kind == "csv"


def test_file_cut_inside_a_character(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_bytes("a\né".encode()[:-1])
    with pytest.raises(InputError, match="ends inside a UTF-8 character"):
        resolve_source(path)


def test_blank_jsonl_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text("\n\n  \n")
    with pytest.raises(InputError, match="JSON Lines file .*blank.jsonl is empty"):
        resolve_source(path)
