"""How the real-model tests are wired in: ``make unit`` deselects them (visibly, not as
passes), ``make test-real`` selects only them.  These run in ``make test``; they need no model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import pytest

@pytest.mark.real_model
def test_needs_the_model():
    assert False, "a real_model test ran under make unit"

def test_plain():
    pass
"""


def test_make_unit_deselects_real_model_tests(tmp_path: Path) -> None:
    # The recipe of ``make unit``, read with ``make -n`` and its prerequisites held old
    # (``-o``): running ``make unit`` itself could reinstall ``.[dev]`` mid-suite (the stamp
    # is older than pyproject.toml) or stop on the ``java`` check.  The line make prints is
    # then run as is, on a probe file only.
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", "-o", "java", "unit"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert dry.returncode == 0, dry.stderr
    lines = [line for line in dry.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "-m pytest" in lines[0], dry.stdout  # nothing but pytest runs
    assert "pip install" not in dry.stdout
    probe = tmp_path / "test_probe_real.py"
    probe.write_text(PROBE)
    env = {**os.environ, "PYTEST_ADDOPTS": f"{probe} -p no:cacheprovider"}
    proc = subprocess.run(["sh", "-c", lines[0]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:]
    # the probe's real_model test would fail if it ran (xdist's summary omits "deselected")
    assert "1 passed" in proc.stdout and "failed" not in proc.stdout


def test_make_test_real_selects_only_real_model_tests() -> None:
    proc = subprocess.run(["make", "-n", "--no-print-directory", "test-real"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    pytest_line = next(line for line in proc.stdout.splitlines() if "-m pytest" in line)
    assert "-m real_model" in pytest_line and "tests/real" in pytest_line
    assert "bench/real_model.py install" in proc.stdout
