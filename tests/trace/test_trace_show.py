"""The rich tree: structure, numbers, errors in red, no markup injection."""

from __future__ import annotations

from rich.console import Console

from rlm_pipeline.trace import TraceRecord
from rlm_pipeline.trace.outline import build_outline
from rlm_pipeline.trace.show import render_tree


def _text(renderable: object, *, color: bool = False) -> str:
    console = Console(width=200, record=True, color_system="truecolor" if color else None,
                      force_terminal=color)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_tree_shows_steps_and_sub_paths_in_order(sample_records: list[TraceRecord]) -> None:
    text = _text(render_tree(sample_records))
    assert "Among users 12345, 67890 and 11111" in text
    assert "A: 12" in text
    order = [text.index(word) for word in
             ("peek", "filter (error)", "partition", "recurse", "sub-RLM root/p0",
              "sub-RLM root/p1", "sql", "answer 12")]
    assert order == sorted(order)
    # sub-RLM steps are nested deeper than the root steps
    recurse_line = next(line for line in text.splitlines() if "recurse" in line)
    classify_line = next(line for line in text.splitlines() if "classify" in line)
    assert classify_line.index("classify") > recurse_line.index("recurse") + 4
    assert "rows 5,000 → 41" in text and "4 sub-calls" in text and "1,960 tok" in text
    assert "11 calls" in text and "largest prompt 1,100" in text


def test_errors_are_red(sample_records: list[TraceRecord]) -> None:
    colored = _text(render_tree(sample_records), color=True)
    line = next(line for line in colored.splitlines() if "DROP is not allowed" in line)
    assert "\x1b[" in line and ("31m" in line or "38;2;" in line)


def test_markup_in_model_output_is_literal() -> None:
    records = [
        TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="run_start",
                    extra={"question": "[bold red]boom[/] [link=http://x]y[/link]"}),
        TraceRecord(run_id="r", seq=1, depth=0, path="root", kind="tool", tool="peek",
                    result_summary="[/]unbalanced"),
    ]
    text = _text(render_tree(records))
    assert "[bold red]boom[/] [link=http://x]y[/link]" in text
    assert "[/]unbalanced" in text


def test_several_runs_and_empty_trace() -> None:
    records = [
        TraceRecord(run_id=run, seq=0, depth=0, path="root", kind="run_start",
                    extra={"question": f"question of {run}"})
        for run in ("a1", "b2")
    ]
    text = _text(render_tree(records))
    assert "run a1" in text and "run b2" in text and "question of b2" in text
    assert "empty trace" in _text(render_tree([]))


def test_outline_attaches_orphan_and_trailing_paths() -> None:
    records = [
        {"run_id": "r", "seq": 0, "path": "root", "kind": "tool", "tool": "peek"},
        {"run_id": "r", "seq": 1, "path": "root/p0/p2", "depth": 2, "kind": "tool",
         "tool": "sql"},
    ]
    (run,) = build_outline(records)
    assert [s.record.get("kind") for s in run.root.steps] == ["tool", "sub_paths"]
    assert run.root.steps[-1].children[0].path == "root/p0/p2"
    assert run.usage == {"input_tokens": 0, "output_tokens": 0, "sub_calls": 0}


def test_run_end_error_is_shown_in_tree_and_page() -> None:
    from rlm_pipeline.trace.html import render_html

    records = [
        TraceRecord(run_id="r", seq=0, depth=0, path="root", kind="run_start",
                    extra={"question": "q?"}),
        TraceRecord(run_id="r", seq=1, depth=0, path="root", kind="run_end",
                    error="budget exceeded: calls spent 10 of 10", extra={"answer": None}),
    ]
    assert "run ended with: budget exceeded: calls spent 10 of 10" in _text(render_tree(records))
    assert "budget exceeded: calls spent 10 of 10</dd>" in render_html(records)


def test_plain_call_partition_shows_its_reply_as_answer() -> None:
    records = [
        {"run_id": "r", "seq": 0, "path": "root/user=5", "depth": 1, "kind": "model",
         "result_summary": "17", "rows_in": 40, "sub_calls": 1},
        {"run_id": "r", "seq": 1, "path": "root", "depth": 0, "kind": "tool", "tool": "recurse"},
    ]
    (run,) = build_outline(records)
    (child,) = run.root.steps[0].children
    assert child.answer == "17"
    assert "sub-RLM root/user=5" in _text(render_tree(records))
    assert "→ 17" in _text(render_tree(records))
