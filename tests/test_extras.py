"""The base install (no extras) in a real throwaway venv: Polars works, extras give one-line hints.

The venv gets the build backend (``[build-system].requires``, installed explicitly, from
pip's cache when it has it), then ``pip install --no-build-isolation --no-deps`` of a copy
of the sources (``pyproject.toml``, ``README.md``, ``rlm_pipeline/``) made in the test's
temporary folder, plus exactly ``[project].dependencies``, so pyspark, great-expectations,
starlette and uvicorn are absent, which the first test checks.  Nothing is fetched for
an isolated build and nothing is written into the repository (no ``*.egg-info``,
``build/``: checked).  The simulator runs in this (the main) venv; the base venv talks
to it over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rlm_pipeline.datasets import tickets

ROOT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = ("pyspark", "great_expectations", "starlette", "uvicorn")
DEMO_Q = "Among users 12345, 67890 and 11111, how many questions are about billing?"
HINT = {
    "spark": "Spark support needs pyspark: pip install 'rlm-pipeline[spark]'",
    "validate": "Validation with great-expectations needs great-expectations: "
    "pip install 'rlm-pipeline[validate]'",
    "sim": "The simulator needs starlette: pip install 'rlm-pipeline[sim]'",
}

pytestmark = pytest.mark.slow

# Run in both venvs: the same answers prove the base install is enough for Polars.
POLARS_SCRIPT = """
import json, sys
import polars as pl
import rlm_pipeline as rp

base_url, path = sys.argv[1], sys.argv[2]
llm = rp.LLM(model="sim-1", base_url=base_url, api_key="sim", max_retries=1)
frame = pl.read_parquet(path)
out = rp.classify(frame, column="question", labels=["billing", "bug", "other"], llm=llm)
res = rp.RLM(llm).run(sys.argv[3], path, text_column="question")
print(json.dumps({
    "labels": out["label"].to_list(),
    "errors": out["label_error"].to_list(),
    "rows": out.height,
    "value": res.value,
    "answered": res.answered,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[4].split(",")),
}))
"""

# Each line: one use of an extra, printed as "<error type>|<ImportError?>|<message>".
HINT_SCRIPT = """
import sys
import polars as pl
import rlm_pipeline as rp

llm = rp.LLM(model="sim-1", base_url=sys.argv[1], api_key="sim", max_retries=1)
df = pl.DataFrame({"question": ["refund please", "the app crashes"]})

def classify_spark():
    rp.classify(df, column="question", labels=["billing", "bug"], llm=llm, engine="spark")

def spark_step():
    rp.spark.classify("question", ["billing", "bug"], llm=llm)(df)

def rlm_spark():
    rp.RLM(llm, engine="spark").run("how many?", df)

def validate_gx():
    from rlm_pipeline.validate import validate_output
    out = df.with_columns(label=pl.lit("bug"), label_error=pl.lit(None, pl.String))
    validate_output(out, input_rows=2, labels=["billing", "bug"], backend="great_expectations")

def sim():
    import rlm_pipeline.sim  # noqa: F401

for case in (classify_spark, spark_step, rlm_spark, validate_gx, sim):
    try:
        case()
    except rp.RLMPipelineError as exc:
        print(f"{case.__name__}|{type(exc).__name__}|{isinstance(exc, ImportError)}|{exc}")
    else:
        print(f"{case.__name__}|no error")
"""


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(OPENAI_API_KEY="sim", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kwargs)


def _build_outputs() -> dict[str, float]:
    """What a build could leave in the repository: top-level egg-info/build/dist, by mtime."""
    found = [*ROOT.glob("*.egg-info"), ROOT / "build", ROOT / "dist"]
    return {p.name: p.stat().st_mtime for p in found if p.exists()}


def _copy_sources(dest: Path) -> Path:
    """The files a build of the package reads, copied to ``dest`` (no caches)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "rlm_pipeline", dest / "rlm_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with rlm_pipeline and only its base dependencies."""
    work = tmp_path_factory.mktemp("base_venv")
    venv = work / "venv"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    backend = pyproject["build-system"]["requires"]
    before = _build_outputs()
    source = _copy_sources(work / "src")
    # This venv's pip installs into the new one (--python): no pip bootstrap there.
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        [*pip, *backend],
        [*pip, "--no-build-isolation", "--no-deps", str(source)],
        [*pip, *deps],
    ]
    for step in steps:
        done = _run(step, cwd=work)
        assert done.returncode == 0, f"{step} failed:\n{done.stderr[-3000:]}"
    assert _build_outputs() == before  # nothing written into the repository
    return venv


@pytest.fixture(scope="module")
def tickets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("extras_data") / "tickets.parquet"
    tickets(300, seed=0).drop("true_label").write_parquet(path)
    return path


def test_base_venv_lacks_the_extras(base_venv: Path) -> None:
    code = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    done = _run([str(base_venv / "bin" / "python"), "-c", code, *EXTRA_MODULES], cwd=base_venv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_polars_classify_and_rlm_need_no_extra(
    base_venv: Path, tickets_file: Path, sim_factory: Callable[..., Any], tmp_path: Path
) -> None:
    script = tmp_path / "polars_run.py"
    script.write_text(POLARS_SCRIPT)
    sim = sim_factory()
    args = [str(script), sim.base_url, str(tickets_file), DEMO_Q, ",".join(EXTRA_MODULES)]
    base = _run([str(base_venv / "bin" / "python"), *args], cwd=tmp_path)
    assert base.returncode == 0, base.stderr[-3000:]
    full = _run([sys.executable, *args], cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    got, want = json.loads(base.stdout), json.loads(full.stdout)
    assert got["loaded"] == []
    assert got["rows"] == 300 and got["labels"].count(None) < 300
    truth = tickets(300, seed=0).filter(pl.col("user_id").is_in([12345, 67890, 11111]))
    assert got["answered"] and got["value"] == truth.filter(pl.col("true_label") == "billing").height
    assert {k: got[k] for k in ("labels", "errors", "value")} == {
        k: want[k] for k in ("labels", "errors", "value")
    }


def test_extras_raise_one_line_install_hints(
    base_venv: Path, sim_factory: Callable[..., Any], tmp_path: Path
) -> None:
    script = tmp_path / "hints.py"
    script.write_text(HINT_SCRIPT)
    done = _run([str(base_venv / "bin" / "python"), str(script), sim_factory().base_url],
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    expected = {
        "classify_spark": HINT["spark"],
        "spark_step": HINT["spark"],
        "rlm_spark": HINT["spark"],
        "validate_gx": HINT["validate"],
        "sim": HINT["sim"],
    }
    assert [line.split("|")[0] for line in lines] == list(expected)
    for line in lines:
        case, kind, is_import_error, message = line.split("|", 3)
        assert (kind, is_import_error, message) == (
            "MissingDependencyError", "True", expected[case]
        ), line


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["sim-server", "--port", "0"], "sim"),
        (["demo"], "sim"),
        (["classify", "{input}", "--column", "question", "--labels", "billing,bug",
          "--output", "{out}", "--engine", "spark", "--no-cache", "--base-url", "{url}"], "spark"),
        (["ask", "{input}", DEMO_Q, "--engine", "spark", "--base-url", "{url}"], "spark"),
        (["classify", "{input}", "--column", "question", "--labels", "billing,bug",
          "--output", "{out}", "--great-expectations", "--no-cache", "--base-url", "{url}"],
         "validate"),
    ],
    ids=["sim-server", "demo", "classify-spark", "ask-spark", "classify-great-expectations"],
)
def test_cli_prints_the_hint_as_one_line_with_exit_2(
    base_venv: Path,
    tickets_file: Path,
    sim_factory: Callable[..., Any],
    tmp_path: Path,
    args: list[str],
    extra: str,
) -> None:
    out = tmp_path / "out.parquet"
    fill = {"input": str(tickets_file), "out": str(out), "url": sim_factory().base_url}
    cmd = [str(base_venv / "bin" / "rlm-pipeline"), *(a.format(**fill) for a in args)]
    done = _run(cmd, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == f"rlm-pipeline: error: {HINT[extra]}\n"
    assert not out.exists()
