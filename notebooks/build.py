"""Run the notebooks top to bottom and store them WITH their outputs (``make notebooks``).

``python notebooks/build.py`` re-executes every ``notebooks/*.ipynb`` in place (or the
ones named on the command line).  ``tests/test_notebook.py`` executes them again and
compares the fresh outputs with the stored ones through :func:`comparable`, which
replaces what changes from run to run (ports, temp folders, seconds, run ids, image
bytes) with placeholders; a cell tagged ``nondeterministic`` is not compared.

Each notebook runs in a fresh temporary working folder; the notebooks write their
own files under a ``tempfile.mkdtemp`` folder, never into the repository.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
#: A cell with this tag in its metadata is executed but its outputs are not compared.
SKIP_TAG = "nondeterministic"
#: stderr lines of the JVM and Spark's launcher (not the notebook's own output): not stored.
_JVM_NOISE = re.compile(
    r"^(WARNING: Using incubator modules|Using Spark's default log4j profile|"
    r"Setting default log level|To adjust logging level|\d\d/\d\d/\d\d \d\d:\d\d:\d\d WARN )"
)

# Token counts and costs follow the prompts' wording (versioned, and changed often): they are
# compared as placeholders, the rest (rows, labels, answers, steps) as it is.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:PORT"),
    (re.compile(r"\d(?:[\d,]*\d)? (in|input) ([/+]) \d(?:[\d,]*\d)? (out|output)"), r"N \1 \2 N \3"),
    (re.compile(r"\d(?:[\d,]*\d)?((?: input| output)? tokens)"), r"N\1"),
    (re.compile(r"(tokens: |largest prompt:? )\d(?:[\d,]*\d)?"), r"\1N"),
    (re.compile(r"\$\d+(?:\.\d+)?"), "$N"),
    (re.compile(r"/tmp/[^\s'\"),]*"), "TMP"),
    (re.compile(r"<?\d+(?:\.\d+)?\s?s\b"), "N s"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "RUN_ID"),
    (re.compile(r"at 0x[0-9a-f]+"), "at 0xADDR"),
)


def execute(path: Path, *, timeout: int = 600) -> Any:
    """The notebook at ``path`` executed top to bottom (a fresh kernel, a temp folder)."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="rlm_nb_") as folder:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": folder}},
        )
        client.execute()
    for cell in notebook.cells:  # keep the stored file stable between runs
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _noise(o)]
    notebook.metadata.pop("widgets", None)
    return notebook


def _noise(output: Any) -> bool:
    """Whether an output is only JVM start-up chatter on stderr."""
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return False
    lines = [line for line in output.get("text", "").splitlines() if line.strip()]
    return bool(lines) and all(_JVM_NOISE.match(line) for line in lines)


def normalise(text: str) -> str:
    """``text`` with run-to-run details (ports, temp paths, seconds, ids) as placeholders."""
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    return text


def comparable(notebook: Any) -> list[list[tuple[str, str]]]:
    """Per code cell, its outputs as ``(kind, normalised text)``; images as ``("image", "png")``.

    stderr streams are left out (warnings differ between machines); a cell
    tagged :data:`SKIP_TAG` gives an empty list.
    """
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if SKIP_TAG in cell.get("metadata", {}).get("tags", []):
            cells.append([])
            continue
        outputs: list[tuple[str, str]] = []
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                if output.get("name") == "stdout":
                    outputs.append(("stdout", normalise(output.get("text", ""))))
            elif kind in ("execute_result", "display_data"):
                data = output.get("data", {})
                if "image/png" in data:
                    outputs.append(("image", "png"))
                elif "text/plain" in data:
                    outputs.append(("text", normalise(str(data["text/plain"]))))
            elif kind == "error":
                outputs.append(("error", f"{output.get('ename')}: {output.get('evalue')}"))
        # consecutive stdout chunks are one stream however the kernel flushed them
        merged: list[tuple[str, str]] = []
        for item in outputs:
            if merged and item[0] == "stdout" and merged[-1][0] == "stdout":
                merged[-1] = ("stdout", merged[-1][1] + item[1])
            else:
                merged.append(item)
        cells.append(merged)
    return cells


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or NOTEBOOKS
    for path in paths:
        started = time.monotonic()
        notebook = execute(path)
        nbformat.write(notebook, path)
        print(f"{path.name}: executed and stored with outputs in {time.monotonic() - started:.1f}s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
