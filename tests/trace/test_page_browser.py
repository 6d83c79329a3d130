"""The trace page of a real run (recurse + classify, text protocol), loaded in headless Chromium.

What a person sees without clicking: the model's own text and actions with the
protocol, the classify steps' row samples with labels and error reasons, the
sub-runs nested under ``recurse``, the timeline and the cost by model, an
``aggregate`` step's groups (summaries, rows summarised) and failed calls; the
hostile tickets (HTML/JS, U+2028, a 6,000-character cell) are shown as text and
nothing from them runs.  Skipped where Chromium is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from trace_runs import HOSTILE_TEAM, IMG, SCRIPT

from rlm_pipeline.trace import read_trace
from rlm_pipeline.trace.html import write_html

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")


def _chromium(folder: Path, *args: str) -> str:
    if CHROMIUM is None:
        pytest.skip("chromium not installed; .ci/run installs it")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={folder / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          check=True).stdout


class _Seen(HTMLParser):
    """Text a person sees without clicking: nothing inside a closed <details> but its <summary>."""

    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.visible: list[str] = []
        self.all_text: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content but the summary)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attrs.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self._stack.append((tag, tag == "details" and "open" not in dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        tags = [t for t, _ in self._stack]
        if "title" in tags:
            self.title += data
        if {"style", "title", "script"} & set(tags):
            return
        self.all_text.append(data)
        hidden = False
        for index, (_tag, closed) in enumerate(self._stack):
            if closed and "summary" not in tags[index + 1:]:
                hidden = True
        if not hidden:
            self.visible.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.visible).split())


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, real_run_file: Path,
         aggregate_run: list[dict[str, Any]]) -> tuple[Path, list[dict[str, Any]]]:
    """The real run's page, followed on the same page by a run whose model wrote hostile text
    and by the root's two ``aggregate`` calls (trace_runs.aggregate_records)."""
    folder = tmp_path_factory.mktemp("page")
    records = read_trace(real_run_file)
    page = write_html([*records, *_hostile_run(), *aggregate_run], folder / "run.html")
    return page, records


#: What a model could write: markup that would run, a line separator, a 10,000-character line.
MODEL_SAID = (f"</pre></details>{SCRIPT}{IMG}<b>bold?</b>\u2028next line " + "x" * 10_000)


def _hostile_run() -> list[dict[str, Any]]:
    base = {"run_id": "hostile-run", "depth": 0, "path": "root", "tool": None,
            "arguments": None, "result_summary": None, "rows_in": None, "rows_out": None,
            "sub_calls": 0, "input_tokens": 0, "output_tokens": 0, "seconds": 0.1,
            "error": None}
    return [
        {**base, "seq": 0, "kind": "run_start", "extra": {"question": "hostile model text"}},
        {**base, "seq": 1, "kind": "model",
         "extra": {"protocol": "text", "text": MODEL_SAID,
                   "actions": [{"tool": SCRIPT, "arguments": IMG}]}},
    ]


@pytest.fixture(scope="module")
def loaded(page: tuple[Path, list[dict[str, Any]]]) -> tuple[_Seen, Path]:
    """One Chromium run: the DOM it built and a screenshot of the page."""
    path, _ = page
    shot = path.parent / "page.png"
    dom = _chromium(path.parent, "--dump-dom", f"--screenshot={shot}",
                    "--window-size=1200,1600", path.as_uri())
    parser = _Seen()
    parser.feed(dom)
    return parser, shot


@pytest.fixture(scope="module")
def seen(loaded: tuple[_Seen, Path]) -> _Seen:
    return loaded[0]


def test_person_sees_the_models_words_and_actions(seen: _Seen,
                                                  page: tuple[Path, list[dict[str, Any]]]) -> None:
    _, records = page
    root_turns = [r for r in records if r["kind"] == "model" and r["depth"] == 0]
    assert root_turns and all(r["extra"].get("text") for r in root_turns)
    first = " ".join(root_turns[0]["extra"]["text"].split())
    assert first in seen.text  # the model's own words, unfolded at the root
    assert "model turn text · 1 action: peek" in seen.text  # protocol and the actions read
    assert "recurse {" in seen.text and '"partition_column":"user_id"' in seen.text


def test_person_sees_row_samples_with_labels_and_reasons(seen: _Seen) -> None:
    text = seen.text
    assert "sample: first rows (3 of 3)" in text and "question label label_error" in text
    assert "Refund the double charge on my card billing" in text
    assert "The app crashes when I open the reports screen technical" in text
    assert "sample: failed rows (1 of 1)" in text and "empty_input" in text


def test_person_sees_aggregate_groups_and_failed_calls(seen: _Seen) -> None:
    text = seen.text
    assert "sample: first groups (3 of 3)" in text
    assert "team rows summarised summary summary_error" in text  # the table's header
    assert "team=billing desk 2 / 3 billing: 1, technical: 0, account: 1, other: 0" in text
    assert f"team={HOSTILE_TEAM} 3 / 3 billing: 1, technical: 1" in text  # a key, as text
    assert "sample: first groups (3 of 3; 3 missing rows in their summary)" in text
    assert "team=web 0 / 2 null api_error: 2 of 2 rows not in the summary" in text
    assert "sample: failed calls (3 of 3): their rows are not in the summary" in text
    assert "team call rows reason team=billing desk leaf 2 api_error: 500" in text


def test_person_sees_nested_sub_runs_and_the_timeline(seen: _Seen) -> None:
    text = seen.text
    for user in ("12345", "67890"):
        assert f"sub-RLM root/per_user={user} · depth 1 ·" in text
        assert f"classify (per_user={user})" in text  # a timeline bar of a sub-run step
    assert "Timeline" in text and "grey: model turns" in text
    bars = [a for t, a in seen.attrs if t == "span" and "bar" in (a.get("class") or "").split()]
    assert len(bars) >= 15
    assert any("sub" in (a.get("class") or "") for a in bars)
    assert "Cost by model" in text
    assert "root gpt-4.1-mini" in text and "sub gpt-4.1-nano" in text


def test_hostile_tickets_are_text_and_never_run(seen: _Seen) -> None:
    assert seen.title == "RLM trace"  # the <script> did not set it
    assert not any("data-pwned" in attrs for _, attrs in seen.attrs)  # onerror never ran
    assert seen.tags["script"] == 0 and seen.tags["img"] == 0
    shown = "".join(seen.all_text)
    assert SCRIPT in shown and IMG in shown and "refund\u2028my invoice" in shown
    long_cells = [t for t in seen.all_text if t.startswith("My invoice total is wrong.")]
    assert long_cells and all(len(t) <= 300 for t in long_cells) and long_cells[0].endswith("…")


def test_hostile_model_text_is_shown_and_never_runs(seen: _Seen) -> None:
    shown = " ".join(seen.visible)  # the root's model turns are unfolded: a person sees it
    assert MODEL_SAID[:4000 - 1] in shown  # as written, cut where the page cuts it
    assert "<b>bold?</b>" in shown  # the model's <b> is text, not bold
    assert seen.title == "RLM trace" and not any("data-pwned" in a for _, a in seen.attrs)


def test_screenshot_shows_a_drawn_page(loaded: tuple[_Seen, Path]) -> None:
    shot = loaded[1]
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
    assert rgb.size == (1200, 1600)
    found = rgb.getcolors(maxcolors=1 << 24) or []  # (count, colour) pairs, counted in C
    colors: dict[tuple[int, int, int], int] = {color: count for count, color in found}
    assert len(colors) > 200 and max(colors.values()) < 0.9 * 1200 * 1600
    # timeline bars: the accent blue of tool steps and the purple of sub-run steps are drawn
    assert colors.get((0x24, 0x57, 0xC5), 0) > 200
    assert colors.get((0x7A, 0x3F, 0xB0), 0) > 200
