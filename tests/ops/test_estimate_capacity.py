"""The estimate's capacity plan: wall time under concurrency, rpm and tpm (no traffic)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlm_pipeline as rp
from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets import tickets
from rlm_pipeline.ops.estimate import DEFAULT_CALL_LATENCY_S, estimate_texts
from rlm_pipeline.ops.spec import ClassifySpec

LABELS = ("billing", "technical", "account", "other")
TEXTS = tickets(1_600, seed=0)["question"].to_list()
SPEC = ClassifySpec("question", LABELS, batch_size=16)


def test_the_tightest_limit_sets_the_wall_time() -> None:
    base = rp.LLM(model="gpt-4.1-mini", base_url="http://127.0.0.1:9/v1", max_concurrency=8)
    est = estimate_texts(TEXTS, SPEC, base, latency_s=2.0)
    assert est.limited_by == "concurrency" and est.seconds_by_limit.keys() == {"concurrency"}
    assert est.wall_s == pytest.approx(est.calls * 2.0 / 8, abs=1e-3)
    tokens = est.input_tokens + est.output_tokens
    slow = rp.LLM(model="gpt-4.1-mini", base_url="http://127.0.0.1:9/v1", max_concurrency=8,
                  rpm=60, tpm=tokens)  # one call a second; all tokens in one minute
    est = estimate_texts(TEXTS, SPEC, slow, latency_s=2.0)
    assert est.seconds_by_limit == {"concurrency": pytest.approx(est.calls / 4),
                                    "rpm": pytest.approx(est.calls), "tpm": pytest.approx(60.0)}
    assert est.limited_by == "rpm" and est.wall_s == pytest.approx(est.calls)
    assert estimate_texts(TEXTS, SPEC, slow).latency_s == DEFAULT_CALL_LATENCY_S


def test_cli_estimate_prints_the_wall_time(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    source = tmp_path / "t.parquet"
    tickets(200, seed=0).write_parquet(source)
    code = main(["classify", str(source), "--column", "question", "--labels", ",".join(LABELS),
                 "--output", str(tmp_path / "o.parquet"), "--estimate", "--rpm", "10",
                 "--base-url", "http://127.0.0.1:9/v1", "--no-cache"])
    out = capsys.readouterr().out
    assert code == 0 and "wall time at least" in out and "limited by rpm" in out
