"""TraceWriter and read_trace on real files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from rlm_pipeline.errors import InputError
from rlm_pipeline.trace import TraceRecord, TraceWriter, read_trace


def _rec(seq: int, **kw: object) -> TraceRecord:
    return TraceRecord(run_id="r", seq=seq, depth=0, path="root", kind="tool",  # type: ignore[arg-type]
                       tool="peek", **kw)


def test_each_write_is_one_flushed_line(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "run.jsonl"
    writer = TraceWriter(path)
    writer.write(_rec(0, result_summary="naïve ✓"))
    # flushed before close: another reader sees the line already
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["result_summary"] == "naïve ✓"
    writer.write(_rec(1))
    writer.close()
    writer.close()
    assert [r["seq"] for r in read_trace(path)] == [0, 1]
    assert [r.seq for r in writer.records] == [0, 1]


def test_replace_or_append(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    for _ in range(2):
        with TraceWriter(path) as writer:
            writer.write(_rec(0))
    assert len(read_trace(path)) == 1
    with TraceWriter(path, append=True) as writer:
        writer.write(_rec(1))
    assert [r["seq"] for r in read_trace(path)] == [0, 1]


def test_memory_only_writer_keeps_records(tmp_path: Path) -> None:
    writer = TraceWriter(None)
    writer.write(_rec(0))
    assert writer.path is None and len(writer.records) == 1
    assert list(tmp_path.iterdir()) == []


def test_thread_safe_lines_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    big = "x" * 400
    with TraceWriter(path) as writer:
        def work(offset: int) -> None:
            for i in range(200):
                writer.write(_rec(offset + i, result_summary=big, arguments={"i": i}))

        threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = read_trace(path)
    assert len(records) == 1600
    assert sorted(r["seq"] for r in records) == sorted(k * 1000 + i for k in range(8)
                                                        for i in range(200))


def test_non_json_values_are_written_as_text(tmp_path: Path) -> None:
    import datetime as dt

    path = tmp_path / "run.jsonl"
    with TraceWriter(path) as writer:
        writer.write(_rec(0, extra={"day": dt.date(2022, 12, 12)}))
    assert read_trace(path)[0]["extra"] == {"day": "2022-12-12"}


def test_read_trace_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trace file not found"):
        read_trace(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="folder"):
        read_trace(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seq": 0}\n\n{"seq": 1, oops\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"line 3 is not valid JSON"):
        read_trace(bad)
    bad.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1 is not a JSON object"):
        read_trace(bad)
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not UTF-8"):
        read_trace(bad)


def test_unwritable_path_is_an_input_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write trace file"):
        TraceWriter(blocker / "run.jsonl")


def test_record_after_close_is_still_written(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path)
    writer.write(_rec(0))
    writer.close()
    with caplog.at_level("WARNING", logger="rlm_pipeline.trace.writer"):
        writer.write(_rec(1))
    assert "written after close" in caplog.text
    assert [r["seq"] for r in read_trace(path)] == [0, 1]


def test_line_separators_inside_text_survive_a_round_trip(tmp_path: Path) -> None:
    from rlm_pipeline.trace.records import TraceRecord
    from rlm_pipeline.trace.writer import TraceWriter, read_trace

    path = tmp_path / "t.jsonl"
    text = "first\u2028second\u2029third\u0085fourth"
    with TraceWriter(str(path)) as writer:
        writer.write(TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="tool",
                                 tool="peek", result_summary=text))
    (record,) = read_trace(str(path))
    assert record["result_summary"] == text
