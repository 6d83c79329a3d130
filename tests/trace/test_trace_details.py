"""What a real run records for the page (model text, actions, row samples, models, timeline
offsets), how the page / tree / diff show it, and hostile model text shown as text."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from rich.console import Console
from trace_runs import HOSTILE_TICKET

from rlm_pipeline.cli.main import main
from rlm_pipeline.trace import TraceRecord, TraceWriter, read_trace
from rlm_pipeline.trace.diff import compare
from rlm_pipeline.trace.figures import cost_by_model, timeline
from rlm_pipeline.trace.html import render_html
from rlm_pipeline.trace.show import render_tree

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "trace.schema.json")
                    .read_text(encoding="utf-8"))


@pytest.fixture
def run_file(real_run_file: Path) -> Path:
    return real_run_file


def test_run_records_text_actions_samples_models(run_file: Path) -> None:
    records = read_trace(run_file)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for record in records:
        validator.validate(record)
    turns = [r for r in records if r["kind"] == "model"]
    assert turns and all(r["extra"]["text"] and r["extra"]["actions"] for r in turns)
    first = turns[0]["extra"]
    assert first["protocol"] == "text" and first["actions"][0]["tool"] == "peek"
    assert json.loads(first["actions"][0]["arguments"]) == {"view": "context", "n": 3}
    samples = {r["path"]: r["extra"]["sample"] for r in records if r.get("tool") == "classify"}
    assert set(samples) == {"root/per_user=12345", "root/per_user=67890"}
    mine = samples["root/per_user=12345"]
    assert [row["text"] for row in mine["rows"]][0] == HOSTILE_TICKET
    assert len(mine["rows"][2]["text"]) <= 300 and mine["rows"][2]["text"].endswith("…")
    other = samples["root/per_user=67890"]
    assert other["failed"] == [{"text": "   ", "answer": None, "error": "empty_input"}]
    assert other["rows_total"] == 3 and other["failed_total"] == 1
    assert records[0]["extra"]["models"] == {
        "root": {"model": "gpt-4.1-mini", "price": [0.4, 1.6]},
        "sub": {"model": "gpt-4.1-nano", "price": [0.1, 0.4]},
    }
    ats = [r["extra"]["at"] for r in records]
    assert ats == sorted(ats)  # written in order, offsets from the run's start


def test_cost_by_model_adds_up_to_the_run(run_file: Path) -> None:
    records = read_trace(run_file)
    usage = records[-1]["extra"]["usage"]
    root, sub = cost_by_model(records)
    assert (root.role, root.model, sub.role, sub.model) == ("root", "gpt-4.1-mini", "sub",
                                                            "gpt-4.1-nano")
    assert root.calls == 5 and root.calls + sub.calls == usage["calls"]
    assert root.input_tokens + sub.input_tokens == usage["input_tokens"]
    assert root.output_tokens + sub.output_tokens == usage["output_tokens"]
    assert root.cost_usd is not None and sub.cost_usd is not None
    assert root.cost_usd + sub.cost_usd == pytest.approx(usage["cost_usd"], rel=1e-6)
    # the split follows the list prices: the root (gpt-4.1-mini) costs 4x the sub per token
    root_list = (root.input_tokens * 0.4 + root.output_tokens * 1.6) / 1e6
    sub_list = (sub.input_tokens * 0.1 + sub.output_tokens * 0.4) / 1e6
    assert root.cost_usd / sub.cost_usd == pytest.approx(root_list / sub_list, rel=1e-6)


def test_timeline_nests_sub_run_steps_inside_recurse(run_file: Path) -> None:
    bars = timeline(read_trace(run_file))
    recurse = next(b for b in bars if b.label == "recurse")
    inner = [b for b in bars if b.depth == 1]
    assert inner and all(b.path.startswith("root/per_user=") for b in inner)
    for bar in inner:  # every sub-run step lies within the recurse step (clock rounding aside)
        assert recurse.start - 0.01 <= bar.start
        assert bar.start + bar.seconds <= recurse.start + recurse.seconds + 0.01


def test_verbose_tree_shows_model_text_and_samples(run_file: Path) -> None:
    console = Console(width=200, record=True, color_system=None)
    with console.capture() as capture:
        console.print(render_tree(read_trace(run_file), verbose=True))
    out = capture.get()
    assert "model turn [text]" in out and "I will look at the data step by step." in out
    assert '→ peek {"view":"context","n":3}' in out
    assert "label=billing  Refund the double charge on my card" in out
    assert "label=null (empty_input)" in out
    assert "\u2028" not in out  # control characters are shown, not sent to the terminal
    with console.capture() as capture:
        console.print(render_tree(read_trace(run_file)))
    assert "label=billing" not in capture.get()  # only with --verbose


def _model_records(text: str) -> list[TraceRecord]:
    return [
        TraceRecord(run_id="h", seq=0, depth=0, path="root", kind="run_start",
                    extra={"question": "q"}),
        TraceRecord(run_id="h", seq=1, depth=0, path="root", kind="model",
                    extra={"protocol": "text", "text": text,
                           "actions": [{"tool": text[:60], "arguments": text[:600]}]}),
        TraceRecord(run_id="h", seq=2, depth=0, path="root", kind="tool", tool="classify",
                    extra={"sample": {"column": text, "answer_column": text,
                                      "rows": [{"text": text, "answer": text, "error": text}]}}),
    ]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


def test_hostile_model_text_is_text_on_the_page() -> None:
    harmless = render_html(_model_records("plain words"))
    evil = "</pre></details><script>alert(1)</script><img src=x onerror=alert(2)>\u2028\x1b[2J"
    page = render_html(_model_records(evil))
    assert "<script>" not in page and "<img" not in page
    expected, got = _Tags(), _Tags()
    expected.feed(harmless)
    got.feed(page)
    assert got.tags == expected.tags  # no element came from the model's text
    assert evil in got.text


def test_trace_diff_cli(run_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.jsonl"
    records = read_trace(run_file)
    with TraceWriter(other) as writer:  # the same run, but its sql step failed once
        for record in records:
            data: dict[str, Any] = dict(record, run_id="other-run")
            if record["kind"] == "tool" and record["tool"] == "sql" and record["depth"] == 0:
                writer.write(TraceRecord.from_dict(dict(data, kind="error", error="bad SQL")))
            writer.write(TraceRecord.from_dict(data))
    assert main(["trace", "diff", str(run_file), str(other)]) == 0
    out = capsys.readouterr().out
    assert "other-run" in out and "model calls" in out and "tokens in" in out
    assert "gpt-4.1-mini" in out and "gpt-4.1-nano" in out
    diff = compare(records, read_trace(other))
    assert diff.same_question
    marks = [p.mark for p in diff.steps]
    assert marks.count("+") == 1 and set(marks) == {"=", "+"}
    assert dict((n, (a, b)) for n, a, b in diff.facts)["errors"] == ("0", "1")


def test_trace_diff_of_an_empty_file_is_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["trace", "diff", str(empty), str(empty)]) == 2
    err = capsys.readouterr().err
    assert "trace A holds no run" in err and "Traceback" not in err


def test_trace_show_verbose_cli(run_file: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.html"
    assert main(["trace", "show", str(run_file), "--verbose", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "I will look at the data step by step." in out and "label=null (empty_input)" in out
    assert page.is_file() and "sample: failed rows" in page.read_text(encoding="utf-8")
    assert main(["trace", "show", str(run_file)]) == 0
    assert "label=null (empty_input)" not in capsys.readouterr().out  # samples: --verbose only


def test_extract_step_records_a_row_sample(sim: Any) -> None:
    import rlm_pipeline as rp
    from rlm_pipeline.datasets import tickets

    llm = rp.LLM(model="sim", base_url=sim.base_url, api_key="x", max_retries=0)
    res = rp.RLM(llm, max_steps=12).run("What is the total refund amount?", tickets(60, seed=1),
                                        text_column="question")
    step = next(r for r in res.trace if r["kind"] == "tool" and r["tool"] == "extract")
    sample = step["extra"]["sample"]
    assert (sample["answer_column"], sample["error_column"]) == ("refund_amount", "extract_error")
    assert len(sample["rows"]) == 5 and sample["rows_total"] == 60
    assert any(isinstance(row["answer"], float) for row in sample["rows"])  # an amount read
    page = render_html(res.trace)
    assert "<th>refund_amount</th><th>extract_error</th>" in page


def test_aggregate_step_records_groups_and_failed_calls(aggregate_run: list[dict[str, Any]]) -> None:
    from trace_runs import HOSTILE_TEAM

    validator = jsonschema.Draft202012Validator(SCHEMA)
    for record in aggregate_run:
        validator.validate(record)
    healthy, down = (r for r in aggregate_run if r.get("tool") == "aggregate")
    sample = healthy["extra"]["sample"]
    assert (sample["kind"], sample["by"], sample["groups_total"]) == ("groups", ["team"], 3)
    groups = {g["group"]: g for g in sample["groups"]}
    assert set(groups) == {"team=billing desk", f"team={HOSTILE_TEAM}", "team=web"}
    # a blank ticket is counted in its group's rows but has nothing to summarise
    assert (groups["team=billing desk"]["rows"], groups["team=billing desk"]["rows_summarised"]) \
        == (3, 2)
    assert sum(g["rows"] for g in groups.values()) == sample["rows_total"] == 8
    assert all(g["summary"] and g["error"] is None for g in groups.values())
    assert "failed_calls" not in sample and healthy["sub_calls"] == 3  # one leaf per group
    failed = down["extra"]["sample"]
    assert failed["failed_groups_total"] == 3 and failed["failed_calls_total"] == 3
    assert [c["call"] for c in failed["failed_calls"]] == ["leaf"] * 3
    assert all(c["error"].startswith("api_error: 500") for c in failed["failed_calls"])
    assert sum(c["rows"] for c in failed["failed_calls"]) == 7  # every non-blank row, once
    assert all(g["summary"] is None and g["error"].startswith("api_error: ")
               for g in failed["groups"])
    assert down["sub_calls"] == 3 and "3 sub-calls, 3 failed" in down["result_summary"]


def test_aggregate_sample_on_the_page_and_in_the_verbose_tree(
    aggregate_run: list[dict[str, Any]],
) -> None:
    from trace_runs import HOSTILE_TEAM

    page = render_html(aggregate_run)
    assert "<th>team</th><th>rows summarised</th><th>summary</th><th>summary_error</th>" in page
    assert "sample: first groups (3 of 3)" in page
    assert "sample: first groups (3 of 3; 3 missing rows in their summary)" in page
    assert "sample: failed calls (3 of 3): their rows are not in the summary" in page
    assert "<th>team</th><th>call</th><th>rows</th><th>reason</th>" in page
    assert "<script>" not in page and "team=ops &lt;script&gt;" in page
    console = Console(width=250, record=True, color_system=None)
    with console.capture() as capture:
        console.print(render_tree(aggregate_run, verbose=True))
    out = capture.get()
    assert "[team=billing desk] 2/3 rows: billing: 1, technical: 0, account: 1, other: 0" in out
    assert f"[team={HOSTILE_TEAM}] 3/3 rows:" in out  # shown as text
    assert "[team=web] 0/2 rows: null (api_error: 2 of 2 rows not in the summary" in out
    assert "✗ leaf of [team=web], 2 rows: api_error: 500" in out
    with console.capture() as capture:
        console.print(render_tree(aggregate_run))
    assert "✗ leaf of" not in capture.get()  # samples: --verbose only
