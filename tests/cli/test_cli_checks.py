"""Unit tests of the CLI's own checks: label forms, output paths, staged writes, failure reports."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from rlm_pipeline.cli.failures import FailureReport, rerun_command
from rlm_pipeline.cli.labels import labels_from_args, parse_labels, read_labels_file
from rlm_pipeline.cli.outputs import check_output_folder, check_output_path, staged_output
from rlm_pipeline.errors import InputError


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("a,b,c", ["a", "b", "c"]),
        (" a , b ,c,", ["a", "b", "c"]),
        ('billing,"technical, hardware",other', ["billing", "technical, hardware", "other"]),
        ('billing, "technical, hardware", other', ["billing", "technical, hardware", "other"]),
        ('say ""hi"",x', ['say ""hi""', "x"]),  # quotes inside an unquoted field stay as written
        ('"say ""hi""",x', ['say "hi"', "x"]),
    ],
)
def test_parse_labels(text: str, labels: list[str]) -> None:
    assert parse_labels(text) == labels


def test_parse_labels_refuses_an_open_quote_and_newlines() -> None:
    with pytest.raises(InputError, match="cannot read --labels"):
        parse_labels('a,"b')
    with pytest.raises(InputError, match="--labels-file"):
        parse_labels("a\nb")


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"labels": None, "labels_file": None, "label": None, **given})


def test_labels_from_args(tmp_path: Path) -> None:
    f = tmp_path / "l.txt"
    f.write_text("\ufeffa, b\n\n  c  \n", encoding="utf-8")
    assert read_labels_file(f) == ["a, b", "c"]
    assert labels_from_args(_args(labels_file=str(f))) == ["a, b", "c"]
    assert labels_from_args(_args(label=["x, y", "z"])) == ["x, y", "z"]
    # --label: as written apart from surrounding spaces (what cli/labels.py and docs/cli.md say)
    assert labels_from_args(_args(label=[' "q" ', "a,b "])) == ['"q"', "a,b"]
    with pytest.raises(InputError, match="exactly one"):
        labels_from_args(_args())
    with pytest.raises(InputError, match="got --labels and --labels-file"):
        labels_from_args(_args(labels="a", labels_file=str(f)))
    with pytest.raises(InputError, match="repeated in --labels: 'a'"):
        labels_from_args(_args(labels="a,b,a"))
    with pytest.raises(InputError, match="no labels"):
        labels_from_args(_args(labels=" , "))
    with pytest.raises(InputError, match="cannot read labels file"):
        labels_from_args(_args(labels_file=str(tmp_path / "missing.txt")))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_labels_file(tmp_path / "bad.txt")


def test_output_path_checks(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    src.write_bytes(b"x")
    link = tmp_path / "link.parquet"
    link.symlink_to(src)
    with pytest.raises(InputError, match="is the input file"):
        check_output_path(str(src), link)  # the same file through a symlink
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="inside the input directory"):
        check_output_path(str(folder), folder / "sub" / "o.parquet")
    with pytest.raises(InputError, match="matches the input glob"):
        check_output_path(f"{folder}/**/*.parquet", folder / "sub" / "new.parquet")
    with pytest.raises(InputError, match="is a directory"):
        check_output_path(str(src), folder)
    assert check_output_path(str(src), tmp_path / "out.parquet") == tmp_path / "out.parquet"
    assert check_output_path(object(), tmp_path / "o.parquet") == tmp_path / "o.parquet"


def test_output_folder_checks(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for out in (raw, raw / "curated", tmp_path):  # same, inside, or holding the input
        with pytest.raises(InputError, match="overlaps the input"):
            check_output_folder(str(raw), out)
    assert check_output_folder(str(raw), tmp_path / "curated") == tmp_path / "curated"


def test_staged_output_leaves_nothing_unless_committed(tmp_path: Path) -> None:
    final = tmp_path / "a" / "b" / "out.parquet"
    with staged_output(final) as staged:
        staged.tmp.write_bytes(b"partial")
        assert staged.tmp.parent == final.parent and staged.tmp.name.startswith(".out.parquet.")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), staged_output(final) as staged:
        raise RuntimeError("boom")
    assert not (tmp_path / "a").exists()
    old = os.umask(0o027)
    try:
        with staged_output(final) as staged:
            staged.tmp.write_bytes(b"done")
            staged.commit()
    finally:
        os.umask(old)
    assert final.read_bytes() == b"done" and final.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in final.parent.iterdir()) == ["out.parquet"]


def test_failure_report() -> None:
    report = FailureReport(rows=1000, errors={"api_error": 10, "budget_exceeded": 5, "empty_input": 3})
    assert report.failed == 18 and report.transient == 15
    assert not report.accepted(None) and not report.accepted(0.01) and report.accepted(0.015)
    assert FailureReport(rows=10, errors={"parse_error": 10}).accepted(None)
    assert report.lines()[0].startswith("  api_error: 10 (transient")
    assert rerun_command(["classify", "a b.parquet"]) == "rlm-pipeline classify 'a b.parquet'"


def test_umask_is_read_without_setting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting the umask to read it would change it for threads creating files meanwhile."""
    from rlm_pipeline.cli import outputs

    previous = os.umask(0o027)
    try:
        def no_set(mask: int) -> int:
            raise AssertionError("os.umask called while the CLI runs")

        monkeypatch.setattr(outputs.os, "umask", no_set)
        assert outputs._umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(previous)
