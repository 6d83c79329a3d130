"""``rlm-pipeline classify|filter --cascade-model ...`` end to end (in-process CLI, two simulators).

The proxy is a simulator in cheap mode (right 85% of the time, informative
log-probabilities), the oracle an always-right simulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets import write_tickets
from rlm_pipeline.sim import intended_label
from rlm_pipeline.sim.mapper import condition_holds

LABELS = ["billing", "technical", "account", "other"]


@pytest.fixture
def tickets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RLM_PIPELINE_CACHE", str(tmp_path / "cache.sqlite"))
    return write_tickets(tmp_path / "t.parquet", 600, seed=5)


def _args(oracle: Any, proxy: Any, command: str, *extra: str) -> list[str]:
    return [
        command,
        *extra,
        "--base-url",
        oracle.base_url,
        "--model",
        "gpt-4.1",
        "--max-retries",
        "0",
        "--cascade-model",
        "gpt-4.1-nano",
        "--cascade-base-url",
        proxy.base_url,
        "--cascade-sample",
        "150",
    ]


def test_classify_cascade_writes_source_and_confidence_and_prints_the_report(
    sim_factory: Any, tickets_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    out = tmp_path / "labels.parquet"
    code = main(
        _args(
            oracle,
            proxy,
            "classify",
            str(tickets_file),
            "--column",
            "question",
            "--labels",
            ",".join(LABELS),
            "--output",
            str(out),
            "--cascade-target",
            "0.9",
            "--cascade-confidence",
            "logprobs",
        )
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    got = pl.read_parquet(out)
    source = pl.read_parquet(tickets_file)
    assert got["ticket_id"].to_list() == source["ticket_id"].to_list()  # every row once
    assert got.columns[-4:] == ["label", "label_error", "label_source", "label_confidence"]
    assert got["label_error"].null_count() == got.height
    assert set(got["label_source"]) == {"proxy", "oracle"}
    oracle_rows = got.filter(pl.col("label_source") == "oracle")
    assert oracle_rows["label"].to_list() == [
        intended_label(q, LABELS) for q in oracle_rows["question"]
    ]
    assert got.filter(pl.col("label_source") == "proxy")["label_confidence"].null_count() == 0
    # the summary: escalated share, threshold, sample agreement and its bound, cost with vs without
    line = next(
        x for x in captured.out.splitlines() if x.startswith("cascade gpt-4.1-nano -> gpt-4.1")
    )
    escalated = oracle_rows.height
    assert f"{escalated:,} of 600 rows ({escalated / 600:.1%}) from the oracle" in line
    assert "threshold" in line and "lower bound" in line and ">= target 0.9" in line
    assert "all through the oracle" in line
    assert "wrote 600 rows" in captured.out
    assert 0 < oracle.stats()["requests"] and 0 < proxy.stats()["requests"]
    # streamed through scratch Parquet files next to the output, removed at the end
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".rlm-cascade-")]


def test_filter_cascade_keeps_the_right_rows(
    sim_factory: Any, tickets_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    out = tmp_path / "kept.parquet"
    condition = "asks for a refund"
    code = main(
        _args(
            oracle,
            proxy,
            "filter",
            str(tickets_file),
            "--column",
            "question",
            "--condition",
            condition,
            "--output",
            str(out),
        )
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    got = pl.read_parquet(out)
    assert {"filter_source", "filter_confidence"} <= set(got.columns)
    assert "filter" not in got.columns
    # rows the oracle judged are right; the proxy's kept rows passed the calibrated threshold
    judged_by_oracle = got.filter(pl.col("filter_source") == "oracle")["question"]
    assert all(condition_holds(t, condition) for t in judged_by_oracle)
    source = pl.read_parquet(tickets_file)
    assert got["ticket_id"].is_in(source["ticket_id"].implode()).all()
    assert got["ticket_id"].n_unique() == got.height
    assert any(x.startswith("cascade gpt-4.1-nano -> gpt-4.1") for x in captured.out.splitlines())
    assert f"wrote {got.height:,} of 600 rows" in captured.out


def test_cascade_estimate_calls_nothing(
    sim_factory: Any, tickets_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy, oracle = sim_factory(accuracy=0.85), sim_factory()
    out = tmp_path / "e.parquet"
    code = main(
        _args(
            oracle,
            proxy,
            "classify",
            str(tickets_file),
            "--column",
            "question",
            "--labels",
            ",".join(LABELS),
            "--output",
            str(out),
            "--estimate",
        )
    )
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "gpt-4.1-nano (proxy) answers every row" in text
    assert "oracle calls" in text and "cost (USD)" in text and "known only after the run" in text
    assert proxy.stats()["requests"] == oracle.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cascade-target", "0.9"], "--cascade-target needs --cascade-model"),
        (["--cascade-model", "m", "--cascade-target", "1.5"], "--cascade-target must be between"),
        (["--cascade-model", "m", "--cascade-sample", "0"], "--cascade-sample must be >= 1"),
        (["--cascade-model", "m", "--max-cost-usd", "1"], "no price for the proxy model m"),
    ],
)
def test_bad_cascade_flags_are_refused_before_any_call(
    sim: Any,
    tickets_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "x.parquet"
    code = main(
        [
            "classify",
            str(tickets_file),
            "--column",
            "question",
            "--labels",
            "a,b",
            "--output",
            str(out),
            "--base-url",
            sim.base_url,
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert message in err and "Traceback" not in err
    assert sim.stats()["requests"] == 0


def test_existing_source_column_is_refused(
    sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RLM_PIPELINE_CACHE", str(tmp_path / "cache.sqlite"))
    data = tmp_path / "in.parquet"
    pl.DataFrame({"q": ["refund please"], "label_source": ["x"]}).write_parquet(data)
    code = main(
        [
            "classify",
            str(data),
            "--column",
            "q",
            "--labels",
            "a,b",
            "--output",
            str(tmp_path / "o.parquet"),
            "--base-url",
            sim.base_url,
            "--cascade-model",
            "m",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "label_source" in err and "--overwrite-column" in err
    assert sim.stats()["requests"] == 0


def test_sigterm_stops_the_streamed_cascade_at_once(
    sim_factory: Any, tickets_file: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    # the proxy's pass: 38 calls of 16 rows, 2 at a time, 1 s each (about 19 s)
    proxy, oracle = sim_factory(accuracy=0.85, latency_ms=1000), sim_factory()
    out = tmp_path / "out" / "labels.parquet"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "rlm_pipeline", *_args(
        oracle, proxy, "classify", str(tickets_file), "--column", "question",
        "--labels", ",".join(LABELS), "--output", str(out), "--concurrency", "2",
    )]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while proxy.stats()["ok"] < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)  # not after the whole pass
    finally:
        proc.kill()
    assert proc.returncode != 0 and "interrupted" in err
    after = proxy.stats()["requests"]
    assert after < 38
    time.sleep(1.0)
    assert proxy.stats()["requests"] == after
    assert list(out.parent.iterdir()) == []  # no output, no scratch folder
