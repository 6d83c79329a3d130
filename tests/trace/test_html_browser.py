"""Load the trace page in real headless Chromium and check what a person sees.

Skipped, with its reason, where Chromium is not installed (``.ci/run``
installs Debian's ``chromium`` before ``make test``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rlm_pipeline.trace import TraceRecord
from rlm_pipeline.trace.html import write_html

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")  # not "chromium-browser": on Ubuntu a snap stub


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("chromium not installed; .ci/run installs it")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class _Visible(HTMLParser):
    """Text a reader sees, the set of element names, and text inside <summary>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: Counter[str] = Counter()
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        if tag in {"style", "title", "script"}:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "title", "script"}:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


@pytest.fixture
def page(tmp_path: Path, sample_records: list[TraceRecord]) -> Path:
    return write_html(sample_records, tmp_path / "trace.html")


def test_rendered_dom_shows_question_answer_and_steps(page: Path, tmp_path: Path,
                                                      hostile: str) -> None:
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    seen = _Visible()
    seen.feed(dom)
    assert "Among users 12345, 67890 and 11111, how many questions are about billing?" in seen.text
    assert "Answer 12" in seen.text
    for step in ("peek", "filter (error)", "filter", "partition", "recurse", "sql", "answer"):
        assert f" {step} " in f" {seen.text} ", step
    assert "sub-RLM root/p0" in seen.text and "sub-RLM root/p1" in seen.text
    assert seen.tags["details"] == 2 and seen.tags["summary"] == 2
    # the hostile result is text on the page, not an element the browser built
    assert hostile in seen.text
    assert seen.tags["script"] == 0 and seen.tags["img"] == 0


# The screenshot of a page is checked on a real run's trace: test_page_browser.py.
