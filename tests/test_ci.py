"""The CI entry point fails when tests fail or when no test runs (pytest exit code 5)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_unit(addopts: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTEST_ADDOPTS": addopts}
    return subprocess.run(
        ["make", "--no-print-directory", "unit"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_ci_runs_make_test_then_the_real_model_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    commands = [line for line in script.splitlines() if line.strip().startswith("make")]
    assert commands == ["make test", "make test-real"]


def test_no_tests_collected_is_a_failure() -> None:
    proc = _make_unit("-k this_expression_matches_no_test_at_all -p no:cacheprovider")
    assert "no tests ran" in proc.stdout or "deselected" in proc.stdout
    assert proc.returncode != 0


def test_a_failing_test_fails_make(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_fails():\n    assert 1 + 1 == 3\n")
    proc = _make_unit(f"{probe} -p no:cacheprovider")
    assert "1 failed" in proc.stdout
    assert proc.returncode != 0
