"""jobs/daily_tickets.py: three days arrive one by one, the run crashes in the
middle of day two, and the final output equals one clean run, row for row."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from rlm_pipeline.datasets import tickets

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "jobs" / "daily_tickets.py"
LABELS = "billing,technical,account,other"
DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(3)]


def _days(rows_per_day: int) -> dict[dt.date, pl.DataFrame]:
    df = tickets(rows_per_day * 3, seed=11).with_columns(
        date=pl.Series([DAYS[i % 3] for i in range(rows_per_day * 3)], dtype=pl.Date)
    )
    return {day: df.filter(pl.col("date") == day) for day in DAYS}


def _arrive(raw: Path, day: dt.date, frame: pl.DataFrame) -> None:
    folder = raw / f"date={day.isoformat()}"
    folder.mkdir(parents=True)
    frame.write_parquet(folder / "part-0.parquet")


def _cmd(
    raw: Path, out: Path, cache: Path, base_url: str, concurrency: int = 8, labels: str = LABELS
) -> list[str]:
    return [
        sys.executable, str(JOB), "--input", str(raw), "--output", str(out),
        "--labels", labels, "--id-column", "ticket_id", "--base-url", base_url,
        "--model", "sim", "--cache", str(cache), "--batch-size", "4",
        "--concurrency", str(concurrency),
    ]  # fmt: skip


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def _read(out: Path) -> pl.DataFrame:
    files = sorted(out.glob("date=*/part-0.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("ticket_id")


def test_three_days_with_a_crash_equal_one_clean_run(tmp_path: Path, sim_factory: Any) -> None:
    days = _days(rows_per_day=300)
    sim = sim_factory(latency_ms=150)  # slow enough that the kill lands inside day two
    raw, out, cache = tmp_path / "raw", tmp_path / "out", tmp_path / "cache.sqlite"

    _arrive(raw, DAYS[0], days[DAYS[0]])
    first = _run(_cmd(raw, out, cache, sim.base_url))
    assert first.returncode == 0, first.stderr
    assert (out / f"date={DAYS[0]}" / "_SUCCESS").is_file()

    # Day two arrives; the run is killed (SIGKILL, no clean-up) half way through it.
    _arrive(raw, DAYS[1], days[DAYS[1]])
    sim.reset_stats()
    proc = subprocess.Popen(_cmd(raw, out, cache, sim.base_url, concurrency=2))
    deadline = time.monotonic() + 120
    while sim.stats()["ok"] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sent_before_crash = sim.stats()["ok"]
    assert sent_before_crash >= 20
    assert not (out / f"date={DAYS[1]}" / "_SUCCESS").exists()

    # Day three arrives; the next run cleans up, finishes day two and does day three.
    _arrive(raw, DAYS[2], days[DAYS[2]])
    sim.reset_stats()
    resumed = _run(_cmd(raw, out, cache, sim.base_url))
    assert resumed.returncode == 0, resumed.stderr
    resumed_calls = sim.stats()["ok"]
    assert not list(out.glob(".tmp-*"))
    for day in DAYS:
        marker = json.loads((out / f"date={day}" / "_SUCCESS").read_text())
        assert marker["rows"] == days[day].height

    # Idempotent: a second run changes nothing and sends no model calls.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    sim.reset_stats()
    again = _run(_cmd(raw, out, cache, sim.base_url))
    assert again.returncode == 0, again.stderr
    assert sim.stats()["requests"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    # One clean run over all three days, fresh output and fresh cache.
    clean_out, clean_cache = tmp_path / "clean", tmp_path / "clean.sqlite"
    sim.reset_stats()
    clean = _run(_cmd(raw, clean_out, clean_cache, sim.base_url))
    assert clean.returncode == 0, clean.stderr
    clean_calls = sim.stats()["ok"]

    got, want = _read(out), _read(clean_out)
    assert got.height == sum(f.height for f in days.values())
    assert got["ticket_id"].is_unique().all()
    assert got.equals(want)
    # The resumed run re-used what the crashed run had answered for day two.
    # (days are the same size, so days two and three cost about 2/3 of the clean run;
    # a call or two in flight at the kill may have been lost before it was cached).
    days_two_three_calls = clean_calls * 2 / 3
    assert resumed_calls <= days_two_three_calls - sent_before_crash + 10


def test_missing_input_folder_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run(_cmd(tmp_path / "nope", tmp_path / "out", tmp_path / "c.sqlite", "http://127.0.0.1:9/v1"))
    assert proc.returncode == 2
    assert "input folder not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_changed_settings_redo_finished_days_and_runs_do_not_overlap(
    tmp_path: Path, sim_factory: Any
) -> None:
    import fcntl

    sim = sim_factory()
    raw, out, cache = tmp_path / "raw", tmp_path / "out", tmp_path / "cache.sqlite"
    _arrive(raw, DAYS[0], _days(rows_per_day=40)[DAYS[0]])
    assert _run(_cmd(raw, out, cache, sim.base_url)).returncode == 0
    first = json.loads((out / f"date={DAYS[0]}" / "_SUCCESS").read_text())

    other = _run(_cmd(raw, out, cache, sim.base_url, labels="billing,other"))
    assert other.returncode == 0, other.stderr
    assert "done (40 rows)" in other.stdout  # not "skipped": the labels changed
    second = json.loads((out / f"date={DAYS[0]}" / "_SUCCESS").read_text())
    assert second["labels"] == ["billing", "other"] and second["settings"] != first["settings"]
    labels = set(pl.read_parquet(out / f"date={DAYS[0]}" / "part-0.parquet")["label"].to_list())
    assert labels <= {"billing", "other"}

    # A second run while the first holds the lock stops at once with a clear message.
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        blocked = _run(_cmd(raw, out, cache, sim.base_url))
    assert blocked.returncode == 1
    assert "another run is writing" in blocked.stderr
    assert "Traceback" not in blocked.stderr


def test_endpoint_down_stops_at_once_and_touches_no_partition(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = _days(rows_per_day=200)
    for day in DAYS[:2]:
        _arrive(raw, day, days[day])
    # Start-up (Python and imports) measured on a run refused before any call, and taken off:
    # what is left (reading the days, the breaker) took 3 s idle, 15 s at load 16 on 2 cores;
    # without the circuit breaker the retries alone take over 60 s.
    started = time.monotonic()
    refused = _run(_cmd(raw, out, tmp_path / "c.sqlite", closed, labels="a,a"))
    startup = time.monotonic() - started
    assert refused.returncode == 2, refused.stderr
    started = time.monotonic()
    proc = _run(_cmd(raw, out, tmp_path / "c.sqlite", closed))
    assert time.monotonic() - started - startup < 30, (time.monotonic() - started, startup)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("daily_tickets: error:")]
    assert len(errors) == 1 and "connection refused" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list(out.glob("date=*")) and not list(out.glob(".tmp-*"))


def test_output_inside_input_is_refused_and_labels_file(tmp_path: Path, sim_factory: Any) -> None:
    sim = sim_factory()
    raw = tmp_path / "raw"
    _arrive(raw, DAYS[0], _days(rows_per_day=20)[DAYS[0]])
    inside = _run(_cmd(raw, raw / "curated", tmp_path / "c.sqlite", sim.base_url))
    assert inside.returncode == 2 and "overlaps the input" in inside.stderr
    assert not (raw / "curated").exists() and sim.stats()["requests"] == 0
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("billing\ntechnical, hardware\naccount\nother\n", encoding="utf-8")
    cmd = _cmd(raw, tmp_path / "out", tmp_path / "c.sqlite", sim.base_url)
    at = cmd.index("--labels")
    cmd[at : at + 2] = ["--labels-file", str(labels_file)]
    done = _run(cmd)
    assert done.returncode == 0, done.stderr
    marker = json.loads((tmp_path / "out" / f"date={DAYS[0]}" / "_SUCCESS").read_text())
    assert marker["labels"] == ["billing", "technical, hardware", "account", "other"]
