"""Workers that cannot import rlm_pipeline: a plain script run without
``PYSPARK_PYTHON`` fails with one typed line naming the workers' Python and the
fix, within seconds and before any model call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.spark

SCRIPT = Path(__file__).with_name("user_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _bare_python3(tmp_path: Path) -> Path:
    """A ``python3`` like a system one: the venv's base interpreter, no site-packages.

    (The same minor version as the driver, which Spark requires; without
    site-packages it has none of pyarrow, polars or openai, whatever the machine.)
    """
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{base}" -S "$@"\n')
    wrapper.chmod(0o755)
    check = subprocess.run([str(wrapper), "-c", "import pyarrow"], capture_output=True, check=False)
    assert check.returncode != 0, "the bare python3 must lack pyarrow"
    return bindir


def test_plain_script_without_pyspark_python(tmp_path: Path, sim: Any) -> None:
    bindir = _bare_python3(tmp_path)
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(PATH=os.pathsep.join([str(bindir), *path]), SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), sim.base_url],
        cwd=ROOT,  # as in the report: the workers could import our package from the cwd
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    prefix = "rlm_pipeline.errors.SparkWorkerError: "
    assert last.startswith(prefix), done.stderr[-3000:]
    base = str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())
    assert f"they run {base} " in last  # the workers' Python, named
    assert "PYSPARK_PYTHON is not set" in last
    assert "lacks pyarrow" in last
    assert f"PYSPARK_PYTHON={sys.executable} " in last  # the fix, with this interpreter
    assert "spark.pyspark.python" in last and "--py-files" in last
    assert "exception was thrown from the Python worker" not in done.stderr  # no worker trace
    assert sim.stats()["requests"] == 0  # before any model call
    # Within 30 s of the transform (about 5-10 s on an idle 2-core box: one small Spark job).
    # The bound grows with the machine's load per core, which stretches every step alike.
    elapsed = float(done.stdout.strip().splitlines()[-1].split()[1])
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    assert elapsed < 30 * min(10.0, max(1.0, load)), (elapsed, load)
