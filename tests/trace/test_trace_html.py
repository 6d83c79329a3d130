"""The HTML page: self-contained, readable structure, everything escaped."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from rlm_pipeline.trace import TraceRecord
from rlm_pipeline.trace.html import render_html, write_html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def test_script_in_results_is_escaped(sample_records: list[TraceRecord], hostile: str) -> None:
    page = render_html(sample_records)
    assert hostile not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    parsed = _parse(page)
    tag_names = {tag for tag, _ in parsed.tags}
    assert "script" not in tag_names and "img" not in tag_names
    # ... and the hostile text is still there for a person to read
    assert hostile in "".join(parsed.text)


def _records_with(text: str) -> list[TraceRecord]:
    return [
        TraceRecord(run_id=text, seq=0, depth=0, path="root", kind="run_start",
                    extra={"question": text, "engine": text}),
        TraceRecord(run_id=text, seq=1, depth=0, path="root", kind="tool", tool=text,
                    arguments={text: text}, result_summary=text, error=text),
        TraceRecord(run_id=text, seq=2, depth=1, path=f"root/{text.replace('/', '')}",
                    kind="answer", arguments={"value": text, "explanation": text}),
        TraceRecord(run_id=text, seq=3, depth=0, path="root", kind="run_end",
                    extra={"answer": text, "value": {"k": text}}),
    ]


def test_hostile_text_everywhere_is_escaped() -> None:
    evil = '"><script>x()</script><a href=\'//e\'>'
    page = render_html(_records_with(evil))
    assert evil not in page and "<script>" not in page and "x()" in page
    # the page has exactly the tags it has for harmless text: nothing was injected
    tags = [tag for tag, _ in _parse(page).tags]
    assert tags == [tag for tag, _ in _parse(render_html(_records_with("plain"))).tags]
    assert "a" not in tags and "script" not in tags


def test_page_is_self_contained(sample_records: list[TraceRecord]) -> None:
    page = render_html(sample_records)
    for tag, attrs in _parse(page).tags:
        assert not {"src", "href"} & set(attrs), tag
        assert tag not in {"link", "script", "img", "iframe", "object"}
    assert "@import" not in page and "url(" not in page
    assert "Content-Security-Policy" in page and "script-src 'none'" in page


def test_page_structure(sample_records: list[TraceRecord], tmp_path: Path) -> None:
    out = write_html(sample_records, tmp_path / "sub" / "page.html")
    page = out.read_text(encoding="utf-8")
    parsed = _parse(page)
    text = " ".join(" ".join(parsed.text).split())
    assert "Among users 12345, 67890 and 11111" in text
    assert "Answer 12" in text
    assert "11 model calls" in text and "1,100 largest prompt" in text
    assert sum(1 for tag, _ in parsed.tags if tag == "details") == 2
    assert text.count("sub-RLM root/p") == 2
    assert "filter (error)" in text and "DROP is not allowed" in text
    assert [t for t, a in parsed.tags if a.get("class") == "failed"] == ["li"]


def test_empty_trace_page() -> None:
    assert "Empty trace." in render_html([])
