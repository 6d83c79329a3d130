"""The quick-start notebook runs top to bottom against the simulator, and is stored clean."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs() -> None:
    doc = json.loads(NOTEBOOK.read_text())
    code_cells = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert code_cells
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code_cells)


@pytest.mark.slow
def test_notebook_executes_top_to_bottom(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    answer = next(line for line in outputs.splitlines() if line.startswith("answer:"))
    truth = next(line for line in outputs.splitlines() if line.startswith("ground truth:"))
    assert re.findall(r"\d+", answer) == [truth.split(":")[1].strip()]
