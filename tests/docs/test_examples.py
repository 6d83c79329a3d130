"""Every example on the reference pages (docs/operators/*.md, docs/cli/*.md) runs.

One test per page.  The page's ```python blocks run in order in one namespace;
the ``rlm-pipeline ...`` lines of its ```bash blocks run through the CLI's
``main`` (exit 0 unless the line ends with ``# exit N``).  A block right after a
``<!-- not run -->`` line is skipped.  Each page runs in a fresh folder holding
``tickets.parquet`` (500 synthetic tickets), against a simulator started here,
with ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``RLM_PIPELINE_CACHE`` set, so the
examples read exactly as a user writes them.  See /work/coord/status_18.md for the
format other pages follow.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rlm_pipeline.cli.main import main
from rlm_pipeline.datasets import write_tickets

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted([*DOCS.glob("operators/*.md"), *DOCS.glob("cli/*.md")])
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NOT_RUN = "<!-- not run -->"
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    skipped: bool


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, in order, with whether they are marked not to run."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), match.group(2), line, before == _NOT_RUN))
    return found


def commands(code: str) -> Iterator[tuple[list[str], int, str]]:
    """``(argv, expected exit code, line)`` for each ``rlm-pipeline`` line of a bash block."""
    joined = re.sub(r"\\\n\s*", " ", code)
    for line in joined.splitlines():
        line = line.strip()
        if not line.startswith("rlm-pipeline "):
            continue
        expected = _EXIT.search(line)
        argv = shlex.split(line, comments=True)
        yield argv[1:], int(expected.group(1)) if expected else 0, line


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    from rlm_pipeline.sim import SimConfig, SimServer

    with SimServer(SimConfig()) as sim:
        yield sim.base_url


@pytest.fixture
def folder(tmp_path: Path, sim_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", sim_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-simulator")
    monkeypatch.setenv("RLM_PIPELINE_CACHE", str(tmp_path / "cache" / "responses.sqlite"))
    write_tickets(tmp_path / "tickets.parquet", 500)
    return tmp_path


def test_reference_pages_exist() -> None:
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"operators/classify.md", "operators/llm_map.md", "operators/estimate.md",
            "operators/rlm.md", "cli/classify.md", "cli/ask.md", "cli/trace.md",
            "cli/sim-server.md", "cli/demo.md"} <= names
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for name in names:  # every page is linked from the README's Reference list
        assert f"(docs/{name})" in readme, name


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_examples_run(page: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = 0
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    for block in blocks(page):
        if block.skipped or block.lang not in ("python", "bash"):
            continue
        where = f"{page.relative_to(DOCS)}:{block.line}"
        if block.lang == "python":
            exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - our own docs
            ran += 1
            continue
        for argv, expected, line in commands(block.code):
            code = main(argv)
            out = capsys.readouterr()
            assert code == expected, f"{where}: `{line}` exited {code}\n{out.out}\n{out.err}"
            ran += 1
    assert ran, f"{page.name}: no example ran"
