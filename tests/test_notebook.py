"""The notebooks are stored WITH their outputs, and those outputs are what running them gives.

``make notebooks`` (``notebooks/build.py``) executes every notebook and stores it.  Here both
notebooks are executed again against the simulator and their fresh outputs are compared with
the stored ones (run-to-run details — ports, temp folders, seconds, run ids, image bytes —
normalised by ``build.comparable``).  The Spark notebook starts its own JVM in its kernel
(``local[1]``, 300 rows, ~40 s on a quiet machine): it carries the ``spark`` marker, so under
xdist it runs in the "spark" group (tests/conftest.py), in the worker that runs the Spark
tests one after another: no other Spark job runs while it does.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = FOLDER / "quickstart.ipynb"
SPARK = FOLDER / "spark.ipynb"


def _build() -> Any:
    spec = importlib.util.spec_from_file_location("notebooks_build", FOLDER / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build()


def _stdout(notebook: Any) -> str:
    return "".join(
        o.get("text", "")
        for c in notebook.cells if c.cell_type == "code"
        for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )


@pytest.mark.parametrize("path", [QUICKSTART, SPARK], ids=["quickstart", "spark"])
def test_notebook_is_stored_with_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "run `make notebooks`"
    assert all(c.outputs for c in code), "every code cell shows something"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # top to bottom
    for cell in code:  # the code a reader sees parses (IPython magics aside)
        ast.parse(re.sub(r"(?m)^%.*$", "", cell.source))
    text = _stdout(notebook)
    assert "simulator at http://127.0.0.1:" in text  # says plainly it is the simulator
    assert any("enter_context(SimServer(" in c.source for c in code)  # a context manager
    assert not any("__enter__" in c.source for c in code)  # not entered by hand


def test_quickstart_stores_the_plot_and_the_steps() -> None:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) == 1 and len(images[0]["data"]["image/png"]) > 5_000  # the bar chart
    text = _stdout(notebook)
    for seen in ("distinct texts", "cached texts:", "answer:", "model turn [tools]",
                 "label=billing", "root gpt-4.1-mini",
                 "label=null (empty_input): 4", "exit code: 0", "simulator stopped"):
        assert seen in text, seen
    answer = re.search(r"^answer: (\d+)$", text, re.M)
    truth = re.search(r"^ground truth: (\d+)$", text, re.M)
    assert answer and truth and answer.group(1) == truth.group(1)


def test_spark_notebook_stores_transform_sql_and_trace() -> None:
    text = _stdout(nbformat.read(SPARK, as_version=4))
    assert "rows in: 300 · rows out: 300" in text  # the transform kept every row
    assert "|    label|tickets|" in text  # the SQL function's query
    answer = re.search(r"^answer: (\d+) · ground truth: (\d+)", text, re.M)
    assert answer and answer.group(1) == answer.group(2)
    assert "engine spark" in text and "classify" in text  # the trace tree


def test_normalise_hides_only_run_to_run_details() -> None:
    line = "simulator at http://127.0.0.1:43567/v1 · 1.29 s · <0.01 s · run 8cd204fc9879 · 5 steps"
    assert build.normalise(line) == (
        "simulator at http://127.0.0.1:PORT/v1 · N s · N s · run RUN_ID · 5 steps"
    )
    assert build.normalise("wrote /tmp/rlm_quickstart_x1/labelled.parquet") == "wrote TMP"
    tokens = "calls: 5, tokens: 9,361 in / 209 out, largest prompt: 2,085 · 1,604 tokens · $0.0032"
    assert build.normalise(tokens) == (
        "calls: 5, tokens: N in / N out, largest prompt: N · N tokens · $N"
    )
    assert build.normalise("usage: 1 calls, 60 cached, 139 input + 35 output tokens") == (
        "usage: 1 calls, 60 cached, N input + N output tokens"
    )


def _same_outputs(path: Path, *, timeout: int) -> None:
    """Execute the notebook at ``path`` and compare its outputs with the stored ones, per cell."""
    stored = build.comparable(nbformat.read(path, as_version=4))
    fresh = build.comparable(build.execute(path, timeout=timeout))
    assert len(fresh) == len(stored)
    for index, (old, new) in enumerate(zip(stored, fresh, strict=True)):
        diff = "\n".join(difflib.unified_diff(
            "\n".join(t for _, t in old).splitlines(), "\n".join(t for _, t in new).splitlines(),
            "stored", "fresh", lineterm="", n=1))
        assert old == new, f"code cell {index}: stored outputs are stale (run `make notebooks`)\n{diff}"


@pytest.mark.slow
def test_quickstart_executes_and_matches_its_stored_outputs() -> None:
    _same_outputs(QUICKSTART, timeout=300)


@pytest.mark.slow
@pytest.mark.spark  # the "spark" xdist group: its JVM never runs beside the other Spark tests
def test_spark_notebook_executes_and_matches_its_stored_outputs() -> None:
    source = "".join(c.source for c in nbformat.read(SPARK, as_version=4).cells)
    assert 'master("local[1]")' in source  # one core: the suite runs on two
    assert "spark_sql import register" not in source  # the public rp.spark.register
    _same_outputs(SPARK, timeout=300)
