"""`rlm-pipeline trace show FILE.jsonl [--html OUT.html]` through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.trace import TraceRecord, TraceWriter


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    with TraceWriter(path) as writer:
        writer.write(TraceRecord(run_id="cli1", seq=0, depth=0, path="root", kind="run_start",
                                 extra={"question": "How many billing tickets from user 7?"}))
        writer.write(TraceRecord(run_id="cli1", seq=1, depth=0, path="root", kind="tool",
                                 tool="filter", arguments={"view": "context",
                                                           "where": "user_id = 7"},
                                 result_summary="<b>9 rows</b>", rows_in=500, rows_out=9))
        writer.write(TraceRecord(run_id="cli1", seq=2, depth=0, path="root", kind="error",
                                 tool="sql", error="UnsupportedExpressionError: read_csv"))
        writer.write(TraceRecord(run_id="cli1", seq=3, depth=0, path="root", kind="answer",
                                 tool="answer", arguments={"value": 4}))
        writer.write(TraceRecord(run_id="cli1", seq=4, depth=0, path="root", kind="run_end",
                                 extra={"answer": "4", "value": 4,
                                        "usage": {"calls": 3, "input_tokens": 900,
                                                  "output_tokens": 40}}))
    return path


def test_show_prints_the_tree(trace_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "show", str(trace_file)]) == 0
    out = capsys.readouterr().out
    assert "How many billing tickets from user 7?" in out
    assert "filter" in out and "user_id = 7" in out and "500 → 9" in out
    assert "read_csv" in out and "A: 4" in out and "3 calls" in out


def test_show_writes_html(trace_file: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out_html = tmp_path / "pages" / "run.html"
    assert main(["trace", "show", str(trace_file), "--html", str(out_html)]) == 0
    assert f"wrote {out_html}" in capsys.readouterr().out
    page = out_html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;b&gt;9 rows&lt;/b&gt;" in page and "<b>9 rows" not in page


def test_bad_files_exit_2_with_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text('{"run_id": "x"\n', encoding="utf-8")
    for target, message in ((tmp_path / "nope.jsonl", "trace file not found"),
                            (corrupt, "line 1 is not valid JSON")):
        proc = subprocess.run([sys.executable, "-m", "rlm_pipeline", "trace", "show",
                               str(target)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_show_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trace"])
    assert exc.value.code == 2
