"""A real RLM run over the simulator (real HTTP) writes a trace that validates
against schemas/trace.schema.json and renders as a tree and a page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
from rich.console import Console

import rlm_pipeline as rp
from rlm_pipeline.trace import read_trace
from rlm_pipeline.trace.html import render_html
from rlm_pipeline.trace.show import render_tree

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "trace.schema.json")
                    .read_text(encoding="utf-8"))
QUESTION = "Among users 7 and 9, how many questions are about billing?"


def test_real_run_trace_validates_and_renders(sim: Any, tmp_path: Path) -> None:
    frame = pl.DataFrame({
        "user_id": [7, 9, 7, 3, 9, 3],
        "question": ["Refund my invoice please", "The app crashes on start",
                     "I was charged twice", "Reset my password", "Where is my invoice?",
                     "Loved your podcast"],
    })
    path = tmp_path / "run.jsonl"
    llm = rp.LLM(model="sim", base_url=sim.base_url, api_key="x", max_retries=0)
    res = rp.RLM(llm, max_steps=12).run(QUESTION, frame, text_column="question",
                                        trace_path=str(path))
    lines = read_trace(path)
    assert lines, "no trace written"
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for line in lines:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(line)]
        assert not errors, (line, errors)
    assert [line["seq"] for line in lines] == list(range(len(lines)))
    assert lines[0]["kind"] == "run_start" and lines[-1]["kind"] == "run_end"
    assert lines[0]["extra"]["question"] == QUESTION
    assert lines == res.trace  # the file and RLMResult.trace hold the same records
    assert {line["tool"] for line in lines if line["kind"] == "tool"} >= {"peek", "filter"}

    console = Console(width=160, record=True, color_system=None)
    with console.capture() as capture:
        console.print(render_tree(lines))
    text = capture.get()
    assert QUESTION in text and "peek" in text and "filter" in text
    page = render_html(lines)
    assert QUESTION in page and "<script" not in page
