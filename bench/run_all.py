"""Run every benchmark (``make bench``): create the peer venvs, then each bench script.

Steps:

1. create ``.bench-venv-lotus`` and ``.bench-venv-docetl`` next to the repo's
   ``.venv`` if they are missing (``python3 -m venv``; pins in
   ``bench/requirements-lotus.txt`` / ``bench/requirements-docetl.txt``; LOTUS
   gets ``torch==2.13.0`` first, alone, so pip takes the CPU build and does not
   pull CUDA packages).  A venv is marked complete by a stamp file holding the
   hash of its requirements file; a changed file rebuilds it.
2. run ``bench/expr_scan.py``, ``bench/fanout.py`` and ``bench/oolong_synth.py``
   with this interpreter (a script that does not exist is skipped with a message);
3. print where each script wrote its results (``bench/results/``) and a summary.

Every model call goes to the project's simulator on 127.0.0.1: nothing here
reaches a real model.  Options after ``--`` are not parsed; use
``--fanout-args "--rows 2000"`` to pass options to fanout.py.

Exit code: 0 when every script that exists succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"

VENVS = {
    "lotus": {
        "dir": ROOT / ".bench-venv-lotus",
        "requirements": BENCH / "requirements-lotus.txt",
        "first": ["torch==2.13.0"],  # alone and first: the CPU build, no CUDA wheels
        "check": "import lotus, litellm, tenacity",
    },
    "docetl": {
        "dir": ROOT / ".bench-venv-docetl",
        "requirements": BENCH / "requirements-docetl.txt",
        "first": [],
        "check": "import docetl, litellm, tenacity",
    },
}

SCRIPTS = ["expr_scan.py", "fanout.py", "oolong_synth.py"]


def _say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def _stamp_value(req: Path) -> str:
    return hashlib.sha256(req.read_bytes()).hexdigest()


def ensure_venv(name: str, spec: dict, base_python: str) -> bool:
    """Create/refresh one peer venv; True when it is usable."""
    venv: Path = spec["dir"]
    req: Path = spec["requirements"]
    stamp = venv / ".bench-installed"
    py = venv / "bin" / "python"
    if not req.exists():
        _say(f"{name}: {req.relative_to(ROOT)} missing; skipping the venv")
        return False
    want = _stamp_value(req)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return True
    t0 = time.perf_counter()
    if py.exists():
        _say(f"{name}: {venv.name} has no install stamp for this requirements file; installing the pins ...")
    else:
        _say(f"{name}: creating {venv.name} (one-off, a few minutes) ...")
    if not py.exists():
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    log = venv / "bench-install.log"
    with log.open("a") as fh:
        try:
            if spec["first"]:
                subprocess.run(pip + spec["first"], check=True, stdout=fh, stderr=subprocess.STDOUT)
            subprocess.run(pip + ["-r", str(req)], check=True, stdout=fh, stderr=subprocess.STDOUT)
            subprocess.run([str(py), "-c", spec["check"]], check=True, stdout=fh, stderr=subprocess.STDOUT,
                           env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        except subprocess.CalledProcessError as exc:
            _say(f"{name}: install failed ({exc}); see {log}")
            return False
    stamp.write_text(want + "\n")
    _say(f"{name}: ready in {time.perf_counter() - t0:.0f} s")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma list of script names without .py (default: all)")
    parser.add_argument("--skip-venvs", action="store_true", help="do not create or refresh the peer venvs")
    parser.add_argument("--fanout-args", default="", help="extra arguments for fanout.py, one string")
    parser.add_argument("--expr-scan-args", default="", help="extra arguments for expr_scan.py")
    parser.add_argument("--oolong-args", default="", help="extra arguments for oolong_synth.py")
    args = parser.parse_args(argv)

    only = {x.strip().removesuffix(".py") for x in args.only.split(",") if x.strip()}
    extra = {"fanout.py": args.fanout_args, "expr_scan.py": args.expr_scan_args,
             "oolong_synth.py": args.oolong_args}
    RESULTS.mkdir(parents=True, exist_ok=True)
    base_python = os.environ.get("BENCH_BASE_PYTHON", "python3")

    scripts = [s for s in SCRIPTS if not only or s.removesuffix(".py") in only]
    if "fanout.py" in scripts and not args.skip_venvs:
        for name, spec in VENVS.items():
            ensure_venv(name, spec, base_python)

    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.pop("OPENAI_BASE_URL", None)

    outcome: list[tuple[str, str, float]] = []
    for script in scripts:
        path = BENCH / script
        if not path.exists():
            _say(f"{script}: not found in bench/, skipped")
            outcome.append((script, "skipped (missing)", 0.0))
            continue
        cmd = [sys.executable, str(path), *shlex.split(extra.get(script, ""))]
        _say(f"running {' '.join(cmd[1:])}  (load {os.getloadavg()[0]:.2f})")
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=str(ROOT), env=env).returncode
        dt = time.perf_counter() - t0
        outcome.append((script, "ok" if rc == 0 else f"failed (exit {rc})", dt))

    _say("summary:")
    for script, status, dt in outcome:
        _say(f"  {script:<18} {status:<20} {dt:7.1f} s")
    for md in sorted(RESULTS.glob("*.md")):
        _say(f"  results: {md.relative_to(ROOT)}")
    return 0 if all(s in ("ok", "skipped (missing)") for _, s, _ in outcome) else 1


if __name__ == "__main__":
    sys.exit(main())
