"""The real model (Qwen2.5-Coder-0.5B on llama.cpp) through the project's own paths.

Marked ``real_model``: ``make test-real`` runs these, ``make test`` deselects
them.  The server comes from the session fixture in ``conftest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.datasets import KNOWN_USERS, LABELS, tickets

pytestmark = pytest.mark.real_model

ROOT = Path(__file__).resolve().parents[2]
SEED_QUESTION = "Among users 12345, 67890 and 11111, how many questions are about billing?"
LABEL_GUIDE = (
    "billing: charges, payments, refunds, invoices, receipts, prices, subscriptions. "
    "technical: errors, crashes, bugs, slow or broken features, outages, the app or API. "
    "account: login, password, two-factor, email address, username, locked or deleted "
    "accounts, personal data. "
    "other: anything else (feedback, events, jobs, partnerships, general questions)."
)
DATA_TOOLS = {"peek", "filter", "partition", "sql", "classify", "llm_map", "recurse"}


def _models_answer(base_url: str) -> bool:
    # llama-cpp-python answers /v1/models between completions: wait for a busy server
    with urllib.request.urlopen(f"{base_url}/models", timeout=300) as resp:  # noqa: S310
        return bool(json.loads(resp.read()).get("data"))


@pytest.mark.timeout(900)
def test_classify_one_row_per_call(real_model: Any) -> None:
    frame = tickets(20, seed=11)
    llm = rp.LLM(model=real_model.model, base_url=real_model.base_url, api_key="local",
                 max_concurrency=1, timeout_s=120, max_retries=2)
    out = rp.classify(frame.drop("true_label"), "question", list(LABELS), llm,
                      instructions=LABEL_GUIDE, batch_size=1)
    # every row out exactly once, in order
    assert out["ticket_id"].to_list() == frame["ticket_id"].to_list()
    for label, reason in zip(out["label"].to_list(), out["label_error"].to_list(), strict=True):
        assert (label in LABELS and reason is None) or (label is None and reason), (label, reason)
    truth = frame["true_label"].to_list()
    right = sum(a == b for a, b in zip(out["label"].to_list(), truth, strict=True))
    accuracy = right / frame.height
    print(f"\nreal model, classify batch 1: {right}/{frame.height} right ({accuracy:.0%}); "
          f"nulls: {out['label'].null_count()}")
    assert accuracy >= 0.5, out.select("question", "label", "label_error").to_dicts()
    assert _models_answer(real_model.base_url)


@pytest.mark.timeout(960)
def test_ask_seed_question_over_2000_tickets(real_model: Any, tmp_path: Path) -> None:
    frame = tickets(2000, seed=0)
    data = tmp_path / "tickets.parquet"
    frame.drop("true_label").write_parquet(data)  # the model must not see the answers
    truth = frame.filter(pl.col("user_id").is_in(list(KNOWN_USERS))
                         & (pl.col("true_label") == "billing")).height
    trace = tmp_path / "trace.jsonl"
    exe = Path(sys.executable).parent / "rlm-pipeline"
    cmd = [str(exe), "ask", str(data), SEED_QUESTION, "--text-column", "question",
           "--base-url", real_model.base_url, "--model", real_model.model,
           "--protocol", "auto", "--trace", str(trace), "--json",
           "--max-steps", "12", "--max-calls", "200", "--max-retries", "1",
           "--request-timeout", "600", "--timeout", "840"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=870, check=False,
                          env={**os.environ, "OPENAI_API_KEY": "local"})
    records = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()
               if line.strip()] if trace.exists() else []
    root = [r for r in records if r["depth"] == 0]
    story = "\n".join(
        f"{r['seq']:>3} {r['kind']:<9} {r['tool'] or '':<9} "
        f"{json.dumps(r['arguments'])[:160] if r['arguments'] else ''} "
        f"-> {(r['error'] or r['result_summary'] or '')[:160]!r}"
        for r in root
    )
    print(f"\nreal model, ask over 2,000 tickets (truth {truth}); exit {proc.returncode}; "
          f"stdout: {proc.stdout.strip()[:300]}\n{story}")
    assert proc.returncode == 0, f"{proc.stderr.strip()[-1500:]}\n{story}"

    schema = jsonschema.Draft202012Validator(
        json.loads((ROOT / "schemas" / "trace.schema.json").read_text(encoding="utf-8")))
    for record in records:
        schema.validate(record)
    data_ok = [r for r in root if r["kind"] == "tool" and r["tool"] in DATA_TOOLS
               and r["error"] is None]
    assert len(data_ok) >= 2, story
    answers = [r for r in root if r["kind"] == "answer"]
    assert len(answers) == 1 and answers[0]["tool"] == "answer", story
    assert root[-1]["kind"] == "run_end" and root[-1]["extra"].get("answer"), story
    # the answer action came after the data tools, i.e. the run ended through it
    assert answers[0]["seq"] > max(r["seq"] for r in data_ok)
    out = json.loads(proc.stdout)
    assert out["answer"]
    print(f"answer: {out['answer']!r} value: {out['value']!r} truth: {truth}")
    # the server survived the whole run (no grammar crash)
    assert _models_answer(real_model.base_url)
