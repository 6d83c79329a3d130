"""The jobs refuse an output in which no row got a label, as the CLI does: exit 1, one line.

Every reply is malformed (``fault_malformed=1.0``) and there are too few calls
for the reply breaker (2 non-blank rows, one per call: 4 calls), so the run
ends normally with every non-blank row ``parse_error``; before, both jobs
published it (daily_tickets even marked the day done).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2024, 3, 1)
ROWS = pl.DataFrame(
    {
        "ticket_id": [1, 2, 3],
        "question": ["Where is my invoice for March?", "The app crashes on start", " "],
        "date": [DAY] * 3,
    }
)


def test_daily_tickets_writes_no_partition_without_a_label(
    tmp_path: Path, sim_factory: Any
) -> None:
    sim = sim_factory(fault_malformed=1.0)
    raw, out = tmp_path / "raw", tmp_path / "out"
    (raw / f"date={DAY}").mkdir(parents=True)
    ROWS.drop("date").write_parquet(raw / f"date={DAY}" / "part-0.parquet")
    cmd = [
        sys.executable, str(ROOT / "jobs" / "daily_tickets.py"), "--input", str(raw),
        "--output", str(out), "--labels", "billing,technical", "--base-url", sim.base_url,
        "--model", "sim", "--batch-size", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [f"date={DAY}: failed (3 rows)"]
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, proc.stderr
    assert "no row got a label (2 non-blank rows failed: parse_error 2)" in errors[0]
    assert not list(out.glob("date=*")) and not list(out.glob(".tmp-*"))
    assert "Traceback" not in proc.stderr


@pytest.mark.spark
def test_classify_spark_refuses_and_writes_nothing(
    tmp_path: Path, sim_factory: Any, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = sim_factory(fault_malformed=1.0)
    inp, out = tmp_path / "in.parquet", tmp_path / "out"
    ROWS.write_parquet(inp)
    spec = importlib.util.spec_from_file_location(
        "classify_spark_job", ROOT / "jobs" / "classify_spark.py"
    )
    assert spec is not None and spec.loader is not None
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    argv = [
        "--input", str(inp), "--output", str(out), "--column", "question",
        "--labels", "billing,technical", "--model", "sim", "--base-url", sim.base_url,
        "--batch-size", "1", "--concurrency", "2",
    ]  # fmt: skip
    mode = spark.conf.get("spark.sql.sources.partitionOverwriteMode")
    try:
        code = job.main(argv)
    finally:
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", mode)
    err = capsys.readouterr().err
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("classify_spark: error:")]
    assert errors == [
        "classify_spark: error: no row got a label (2 non-blank rows failed); nothing written "
        "— pass --allow-errors to write it anyway"
    ]
    assert not out.exists()
