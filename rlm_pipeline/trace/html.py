"""Render a trace as one self-contained HTML page a person can read.

Per run: the question and answer, totals, the cost by model (root vs sub), a
timeline of the steps (seconds and tokens), then every step.  A model turn
shows which protocol carried it, the model's own text and the actions read from
it (folded with ``<details>``); a classify / llm_map / extract step shows its
sample of rows with their answers and error reasons, an ``aggregate`` step its
first groups with their summaries and row counts and its failed leaf / fold
calls with their reasons; a ``recurse`` step holds its sub-RLM runs, folded,
nested by depth.

The page has inline CSS only: no scripts, no external assets, and it works
without JavaScript (everything folds with ``<details>``).  Everything taken
from the trace is model output and therefore untrusted: it is escaped with
:func:`html.escape`, and a Content-Security-Policy that forbids scripts,
images and connections guards the page a second time.

Examples
--------
>>> from rlm_pipeline.trace.html import render_html
>>> page = render_html([{"run_id": "r", "seq": 0, "path": "root", "kind": "run_start",
...                      "extra": {"question": "<b>How many?</b>"}}])
>>> "&lt;b&gt;How many?&lt;/b&gt;" in page and "<b>How" not in page
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from rlm_pipeline.errors import InputError
from rlm_pipeline.trace.figures import MAX_TIMELINE_BARS, cost_by_model, timeline
from rlm_pipeline.trace.outline import (
    PathNode,
    RunOutline,
    argument_summary,
    build_outline,
    format_value,
    step_numbers,
)
from rlm_pipeline.trace.records import TraceRecord

__all__ = ["render_html", "write_html"]

logger = logging.getLogger(__name__)

_CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#dde2ea;--bg:#f6f7f9;--card:#fff;
--accent:#2457c5;--ok:#1c7c3a;--err:#b3261e;--errbg:#fdecea;--sub:#7a3fb0}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 10px;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
.meta{color:var(--muted);font-size:13px}
.qa{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 18px;
margin:14px 0}
.qa dt{font-weight:600;color:var(--muted);font-size:13px;text-transform:uppercase}
.qa dd{margin:2px 0 10px;font-size:17px;white-space:pre-wrap;word-break:break-word}
.qa dd.answer{color:var(--ok);font-weight:600;font-size:20px}
.qa dd.none{color:var(--muted);font-style:italic}
.qa dd.error{color:var(--err);font-weight:600}
.totals{display:flex;flex-wrap:wrap;gap:10px;margin:0;padding:0;list-style:none}
.totals li{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:8px 14px;min-width:120px}
.totals b{display:block;font-size:18px}
.totals span{color:var(--muted);font-size:12px}
ol.steps{list-style:none;margin:0;padding:0;counter-reset:step}
ol.steps>li{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--accent);
border-radius:6px;margin:8px 0;padding:8px 12px}
ol.steps>li.model{border-left-color:var(--line);color:var(--muted);padding:4px 12px}
ol.steps>li.answer{border-left-color:var(--ok)}
ol.steps>li.failed{border-left-color:var(--err);background:var(--errbg)}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 12px}
.name{font-weight:700}
.answer .name{color:var(--ok)}
.failed .name{color:var(--err)}
.args{font:13px/1.4 ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:#244;
background:#eef2f8;border-radius:4px;padding:1px 6px;word-break:break-word}
.nums{margin-left:auto;color:var(--muted);font-size:13px;white-space:nowrap}
pre{margin:6px 0 0;padding:6px 8px;background:#f3f4f6;border-radius:4px;white-space:pre-wrap;
word-break:break-word;font:12.5px/1.45 ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace}
.error{color:var(--err);font-weight:600;margin-top:4px;white-space:pre-wrap;word-break:break-word}
details{margin:8px 0 4px;border:1px solid #e3d7f0;border-radius:6px;background:#fbf8fe}
summary{cursor:pointer;padding:6px 10px;color:var(--sub);font-weight:600}
summary .meta{font-weight:400}
details>ol.steps{padding:0 10px 6px}
details.turn{border:none;background:none;margin:2px 0 0}
details.turn>summary{color:var(--muted);font-weight:400;padding:2px 0}
details.turn>summary b{color:var(--fg)}
.proto{font:11px/1.6 ui-monospace,Menlo,Consolas,monospace;border:1px solid var(--line);
border-radius:3px;padding:0 5px;color:#36465c;background:#f0f3f8}
.said{border-left:3px solid #c9d3e3;background:#f8fafc;color:var(--fg)}
ul.actions{margin:6px 0 2px;padding-left:18px;font-size:13px}
ul.actions code{word-break:break-word}
table{border-collapse:collapse;margin:8px 0 2px;width:100%;font-size:13px;table-layout:fixed}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top;
word-break:break-word;white-space:pre-wrap}
th{background:#f0f3f8;font-weight:600;color:#36465c}
td.reason{color:var(--err)}
td.label{font-weight:600}
td.num{text-align:right;white-space:nowrap}
.caption{color:var(--muted);font-size:12px;margin-top:6px}
table.cost{width:auto;min-width:520px}
table.cost td,table.cost th{white-space:nowrap}
.timeline{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.bar-row{display:grid;grid-template-columns:230px 1fr 150px;gap:8px;align-items:center;
font-size:12px;line-height:18px}
.bar-label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.track{position:relative;height:12px;background:#f1f3f6;border-radius:3px}
.bar{position:absolute;top:0;height:12px;min-width:2px;border-radius:3px;background:var(--accent)}
.bar.model{background:#8a9ab3}
.bar.sub{background:var(--sub)}
.bar.failed{background:var(--err)}
.bar-num{color:var(--muted);text-align:right;white-space:nowrap}
details.sub{border-left:4px solid #c7b3de}
details.sub.d2{border-left-color:#9fc3e8;background:#f7fbfe}
details.sub.d3{border-left-color:#b8d9b0;background:#f8fcf7}
.empty{color:var(--muted);font-style:italic}
footer{margin-top:32px;color:var(--muted);font-size:12px}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'"


def render_html(
    records: Iterable[Mapping[str, Any] | TraceRecord], *, title: str = "RLM trace"
) -> str:
    """The whole page for a trace, as a string.

    Parameters
    ----------
    records
        Trace records (dicts as read by :func:`~rlm_pipeline.trace.read_trace`,
        ``RLMResult.trace``, or :class:`~rlm_pipeline.trace.TraceRecord`).
    title
        Page title.

    Returns
    -------
    str
        A complete HTML5 document with inline CSS and no scripts.
    """
    runs = build_outline(records)
    body = "\n".join(_run_section(run) for run in runs) or '<p class="empty">Empty trace.</p>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style></head>\n"
        f"<body><main>\n{body}\n"
        "<footer>Written by rlm_pipeline (<code>rlm-pipeline trace show --html</code>). "
        "Everything quoted from the model is shown as plain text.</footer>\n"
        "</main></body></html>\n"
    )


def write_html(
    records: Iterable[Mapping[str, Any] | TraceRecord], path: str | os.PathLike[str]
) -> Path:
    """Write :func:`render_html` output to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(records), encoding="utf-8")
    except OSError as exc:
        msg = f"cannot write HTML page {out}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    logger.debug("wrote trace page %s", out)
    return out


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _run_section(run: RunOutline) -> str:
    answered = run.answer is not None and format_value(run.answer) not in ("", "null")
    answer = format_value(run.answer, 2000) if answered else "(no answer)"
    qa = ['<dl class="qa">']
    qa.append(f"<dt>Question</dt><dd>{_e(run.question or '(not recorded)')}</dd>")
    css = "answer" if answered else "answer none"
    qa.append(f'<dt>Answer</dt><dd class="{css}">{_e(answer)}</dd>')
    if run.value is not None and format_value(run.value, 2000) != answer:
        qa.append(f"<dt>Value</dt><dd>{_e(format_value(run.value, 2000))}</dd>")
    if run.error:
        qa.append(f'<dt>Run ended with</dt><dd class="error">{_e(run.error)}</dd>')
    qa.append("</dl>")
    engine = f" · engine {_e(run.engine)}" if run.engine else ""
    return (
        f'<section class="run" id="run-{_e(run.run_id)}">\n'
        f"<h1>RLM run <code>{_e(run.run_id)}</code></h1>\n"
        f'<div class="meta">{run.records} records{engine}</div>\n'
        + "".join(qa)
        + "\n"
        + _totals(run)
        + _costs(run)
        + _timeline(run)
        + "\n<h2>Steps</h2>\n"
        + _steps(run.root)
        + "\n</section>"
    )


def _totals(run: RunOutline) -> str:
    usage = run.usage
    tokens_in = int(usage.get("input_tokens", 0) or 0)
    tokens_out = int(usage.get("output_tokens", 0) or 0)
    items: list[tuple[str, str]] = []
    if "calls" in usage:
        items.append((f"{int(usage['calls']):,}", "model calls"))
    items.append((f"{tokens_in + tokens_out:,}", f"tokens ({tokens_in:,} in / {tokens_out:,} out)"))
    if usage.get("max_prompt_tokens"):
        items.append((f"{int(usage['max_prompt_tokens']):,}", "largest prompt (tokens)"))
    if "cost_usd" in usage:
        items.append((f"${float(usage['cost_usd'] or 0):.4f}", "cost"))
    items.append((f"{float(run.seconds):.2f} s", "wall time"))
    errors = _count_errors(run.root)
    items.append((str(errors), "errors"))
    cells = "".join(f"<li><b>{_e(value)}</b><span>{_e(name)}</span></li>" for value, name in items)
    return f'<ul class="totals">{cells}</ul>'


def _costs(run: RunOutline) -> str:
    rows = cost_by_model(run.all_records)
    if not rows:
        return ""
    body = []
    for row in rows:
        cost = "no price" if row.cost_usd is None else f"${row.cost_usd:.4f}"
        body.append(
            f"<tr><td>{_e(row.role)}</td><td>{_e(row.model or '(not recorded)')}</td>"
            f"<td>{row.calls:,}</td><td>{row.input_tokens:,}</td><td>{row.output_tokens:,}</td>"
            f"<td>{_e(cost)}</td></tr>"
        )
    return (
        '\n<h2>Cost by model</h2>\n<table class="cost"><tr><th>role</th><th>model</th>'
        "<th>calls</th><th>tokens in</th><th>tokens out</th><th>cost</th></tr>"
        + "".join(body)
        + '</table><div class="caption">root: the root model\'s turns; sub: everything '
        "else (classify / llm_map fan-outs, sub-RLM turns).</div>"
    )


def _timeline(run: RunOutline) -> str:
    bars = timeline(run.all_records)
    if not bars:
        return ""
    origin = min(b.start for b in bars)
    span = max(b.start + b.seconds for b in bars) - origin or 1.0
    rows = []
    for bar in bars:
        left = 100.0 * (bar.start - origin) / span
        width = max(0.2, 100.0 * bar.seconds / span)
        css = "failed" if bar.failed else "model" if bar.kind == "model" else ""
        if bar.depth and not bar.failed:
            css = (css + " sub").strip()
        where = "" if bar.path == "root" else f" ({bar.path.split('/', 1)[1]})"
        numbers = f"{bar.seconds:.2f} s" + (f" · {bar.tokens:,} tok" if bar.tokens else "")
        rows.append(
            f'<div class="bar-row"><span class="bar-label" style="padding-left:{14 * bar.depth}px"'
            f' title="{_e(bar.label + where)}">{_e(bar.label)}{_e(where)}</span>'
            f'<span class="track"><span class="bar {css}" style="left:{left:.2f}%;'
            f'width:{min(width, 100.0 - left):.2f}%"></span></span>'
            f'<span class="bar-num">{_e(numbers)}</span></div>'
        )
    more = ""
    if len(bars) >= MAX_TIMELINE_BARS:
        more = f'<div class="caption">first {MAX_TIMELINE_BARS} steps shown.</div>'
    return (
        f'\n<h2>Timeline</h2>\n<div class="timeline" id="timeline">{"".join(rows)}{more}'
        f'<div class="caption">{span:.2f} s from the first step to the last; grey: model turns,'
        " blue: tools, purple: sub-RLM steps, red: failed.</div></div>"
    )


def _count_errors(node: PathNode) -> int:
    return node.error_count + sum(
        _count_errors(child) for step in node.steps for child in step.children
    )


def _steps(node: PathNode) -> str:
    if not node.steps:
        return '<p class="empty">No steps recorded.</p>'
    items = []
    for step in node.steps:
        inner = _step(step.record)
        opened = len(step.children) <= OPEN_SUB_RUNS
        for child in step.children:
            inner += _sub_path(child, opened=opened)
        kind = str(step.record.get("kind", ""))
        css = "failed" if step.record.get("error") else kind
        items.append(f'<li class="{_e(css)}">{inner}</li>')
    return '<ol class="steps">' + "".join(items) + "</ol>"


#: A step with at most this many sub-RLM runs shows them unfolded.
OPEN_SUB_RUNS = 3


def _sub_path(node: PathNode, *, opened: bool = False) -> str:
    answer = "" if node.answer is None else f" → {format_value(node.answer, 120)}"
    errors = f" · {_plural(node.error_count, 'error')}" if node.error_count else ""
    steps = _plural(len(node.steps), "step")
    return (
        f'<details class="sub d{min(int(node.depth), 3)}"{" open" if opened else ""}>'
        f"<summary>sub-RLM {_e(node.path)}"
        f'<span class="meta"> · depth {int(node.depth)} · {steps}{_e(errors)}'
        f"{_e(answer)}</span></summary>{_steps(node)}</details>"
    )


def _step(record: Mapping[str, Any]) -> str:
    kind = str(record.get("kind", "?"))
    if kind == "sub_paths":
        return '<div class="head"><span class="name">sub-RLMs</span></div>'
    if kind == "model":
        return _model_turn(record)
    if kind == "answer":
        value = (record.get("arguments") or {}).get("value", record.get("result_summary"))
        head = (
            '<div class="head"><span class="name">answer</span>'
            f'<span class="args">{_e(format_value(value, 500))}</span>{_nums(record)}</div>'
        )
        explanation = (record.get("arguments") or {}).get("explanation")
        return head + (f"<pre>{_e(format_value(explanation, 1000))}</pre>" if explanation else "")
    name = str(record.get("tool") or kind) + (" (error)" if kind == "error" else "")
    arguments = argument_summary(record.get("arguments"), limit=400)
    html = f'<div class="head"><span class="name">{_e(name)}</span>'
    if arguments:
        html += f'<span class="args">{_e(arguments)}</span>'
    html += _nums(record) + "</div>"
    if record.get("error"):
        html += f'<div class="error">✗ {_e(record["error"])}</div>'
    summary = record.get("result_summary")
    if summary and not (record.get("error") and str(record["error"]) in str(summary)):
        html += f"<pre>{_e(summary)}</pre>"
    sample = (record.get("extra") or {}).get("sample")
    if isinstance(sample, Mapping) and sample:
        html += _sample(sample)
    return html


#: Characters of a model turn's text shown (the recorder keeps at most 4,000).
MODEL_TEXT_CHARS = 4000


def _model_turn(record: Mapping[str, Any]) -> str:
    extra = record.get("extra") or {}
    protocol = extra.get("protocol")
    listed = extra.get("actions")
    actions: list[Any] = listed if isinstance(listed, list) else []
    names = [str(a.get("tool")) for a in actions if isinstance(a, Mapping)]
    label = "forced answer turn" if extra.get("forced") else "model turn"
    head = f"<b>{_e(label)}</b>"
    if protocol:
        head += f' <span class="proto">{_e(protocol)}</span>'
    if extra.get("switched_to"):
        head += f" switched to {_e(extra['switched_to'])}"
    if extra.get("switched_from"):
        head += f" switched from {_e(extra['switched_from'])}"
    head += " · " + (
        _e(f"{_plural(len(names), 'action')}: {', '.join(names)}") if names else "no action"
    )
    text = extra.get("text")
    if not isinstance(text, str):
        text = record.get("result_summary")  # older traces: the first 300 characters
    body = ""
    if text:
        shown = text if len(text) <= MODEL_TEXT_CHARS else text[: MODEL_TEXT_CHARS - 1] + "…"
        body += f'<pre class="said">{_e(shown)}</pre>'
    if actions:
        items = "".join(
            f"<li><b>{_e(a.get('tool'))}</b> <code>{_e(format_value(a.get('arguments'), 600))}"
            "</code></li>"
            for a in actions
            if isinstance(a, Mapping)
        )
        if extra.get("actions_not_shown"):
            items += f"<li>… {_e(extra['actions_not_shown'])} more</li>"
        body += f'<ul class="actions">{items}</ul>'
    if extra.get("switch_reason"):
        body += f'<div class="caption">{_e(extra["switch_reason"])}</div>'
    opened = " open" if int(record.get("depth") or 0) == 0 else ""
    if not body:
        return f'<div class="head"><span>{head}</span>{_nums(record)}</div>'
    return (
        f'<details class="turn"{opened}><summary><span class="head" style="display:inline-flex;'
        f'width:95%"><span>{head}</span>{_nums(record)}</span></summary>{body}</details>'
    )


def _cell(value: Any, limit: int = 300) -> str:
    """A sampled cell as written (spaces and line breaks kept), cut to ``limit`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else format_value(value, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample(sample: Mapping[str, Any]) -> str:
    if sample.get("kind") == "groups":
        return _group_sample(sample)
    column = str(sample.get("column") or "text")
    answer = str(sample.get("answer_column") or "answer")
    error = str(sample.get("error_column") or f"{answer}_error")
    html = ""
    for key, caption, total in (
        ("rows", "first rows", sample.get("rows_total")),
        ("failed", "failed rows", sample.get("failed_total")),
    ):
        rows = sample.get(key)
        if not isinstance(rows, list) or not rows:
            continue
        of = f" of {total:,}" if isinstance(total, int) else ""
        body = "".join(
            f"<tr><td>{_e(_cell(r.get('text')))}</td>"
            f'<td class="label">{_e(_cell(r.get("answer")) or "null")}</td>'
            f'<td class="reason">{_e(_cell(r.get("error")))}</td></tr>'
            for r in rows
            if isinstance(r, Mapping)
        )
        html += (
            f'<div class="caption">sample: {caption} ({len(rows)}{of})</div>'
            f'<table class="sample {key}"><colgroup><col style="width:58%">'
            f'<col style="width:16%"><col style="width:26%"></colgroup><tr><th>{_e(column)}</th><th>{_e(answer)}</th>'
            f"<th>{_e(error)}</th></tr>{body}</table>"
        )
    return html


def _group_sample(sample: Mapping[str, Any]) -> str:
    """An aggregate step's sample: groups with summaries and row counts, then failed calls."""
    by = sample.get("by")
    group = ", ".join(str(b) for b in by) if isinstance(by, list) and by else "group"
    html = ""
    groups = sample.get("groups")
    if isinstance(groups, list) and groups:
        total = sample.get("groups_total")
        of = f" of {total:,}" if isinstance(total, int) else ""
        missing = sample.get("failed_groups_total")
        if isinstance(missing, int) and missing:
            of += f"; {missing:,} missing rows in their summary"
        body = "".join(
            f"<tr><td>{_e(_cell(g.get('group')))}</td>"
            f'<td class="num">{_e(_cell(g.get("rows_summarised")))} / {_e(_cell(g.get("rows")))}'
            f'</td><td>{_e(_cell(g.get("summary")) or "null")}</td>'
            f'<td class="reason">{_e(_cell(g.get("error")))}</td></tr>'
            for g in groups
            if isinstance(g, Mapping)
        )
        html += (
            f'<div class="caption">sample: first groups ({len(groups)}{of})</div>'
            '<table class="sample groups"><colgroup><col style="width:18%">'
            '<col style="width:13%"><col style="width:45%"><col style="width:24%"></colgroup>'
            f"<tr><th>{_e(group)}</th><th>rows summarised</th><th>summary</th>"
            f"<th>summary_error</th></tr>{body}</table>"
        )
    failed = sample.get("failed_calls")
    if isinstance(failed, list) and failed:
        total = sample.get("failed_calls_total")
        of = f" of {total:,}" if isinstance(total, int) else ""
        body = "".join(
            f"<tr><td>{_e(_cell(f.get('group')))}</td><td>{_e(_cell(f.get('call')))}</td>"
            f'<td class="num">{_e(_cell(f.get("rows")))}</td>'
            f'<td class="reason">{_e(_cell(f.get("error")))}</td></tr>'
            for f in failed
            if isinstance(f, Mapping)
        )
        html += (
            f'<div class="caption">sample: failed calls ({len(failed)}{of}): their rows are '
            "not in the summary</div>"
            '<table class="sample failed_calls"><colgroup><col style="width:16%">'
            '<col style="width:14%"><col style="width:10%"><col style="width:60%"></colgroup>'
            f"<tr><th>{_e(group)}</th><th>call</th><th>rows</th><th>reason</th></tr>{body}</table>"
        )
    return html


def _nums(record: Mapping[str, Any]) -> str:
    parts = step_numbers(record)
    if isinstance(record.get("seq"), int):
        parts.append(f"#{record['seq']}")
    return f'<span class="nums">{_e(" · ".join(parts))}</span>' if parts else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
