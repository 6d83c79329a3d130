"""bench/real_model.py without the model: state file, status, down (runs in ``make test``).

A stand-in server (a tiny HTTP process whose command line names
``llama_cpp.server``) checks that ``status`` finds a live server and ``down``
stops it, and that a state file pointing at any other process is never acted on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.conftest import load_real_model

rm = load_real_model()

FAKE_SERVER = """
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "qwen-0.5b"}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RLM_REAL_MODEL_HOME", str(tmp_path))
    monkeypatch.delenv("RLM_REAL_MODEL_VENV", raising=False)
    return tmp_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state(home: Path, pid: int, port: int) -> None:
    (home / "server.json").write_text(json.dumps({
        "pid": pid, "port": port, "base_url": f"http://127.0.0.1:{port}/v1",
        "model": "qwen-0.5b", "log": str(home / "x.log")}))


@pytest.fixture
def fake_server(home: Path) -> Iterator[tuple[subprocess.Popen[Any], int]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, "llama_cpp.server", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_paths_follow_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = rm.paths()
    assert p.home == home.resolve() and p.venv == home.resolve() / "venv"
    assert p.model == home.resolve() / "model.gguf"
    monkeypatch.setenv("RLM_REAL_MODEL_VENV", str(home / "elsewhere"))
    assert rm.paths().python == (home / "elsewhere" / "bin" / "python").resolve()


def test_status_and_down_without_a_server(home: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    assert rm.status() is None
    assert rm.main(["status"]) == 1
    assert capsys.readouterr().err.strip() == "real_model: not running"
    assert rm.down() is False


def test_status_finds_a_live_server_and_down_stops_it(
        home: Path, fake_server: tuple[subprocess.Popen[Any], int],
        capsys: pytest.CaptureFixture[str]) -> None:
    proc, port = fake_server
    _state(home, proc.pid, port)
    found = rm.status()
    assert found is not None and found.port == port and found.started_here is False
    assert rm.main(["status"]) == 0
    assert capsys.readouterr().out.strip() == f"http://127.0.0.1:{port}/v1"
    assert rm.up().pid == proc.pid  # up returns the running server, starts nothing
    assert rm.down() is True
    assert proc.wait(timeout=15) is not None  # stopped by SIGTERM
    assert not (home / "server.json").exists()
    assert rm.status() is None


def test_a_state_file_naming_another_process_is_never_acted_on(home: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _state(home, other.pid, _free_port())
        assert rm.status() is None
        assert rm.down() is False
        time.sleep(0.2)
        assert other.poll() is None  # not killed: its command line is not llama_cpp.server
    finally:
        other.kill()
        other.wait()


def test_a_model_file_of_the_wrong_size_or_hash_is_not_accepted(home: Path) -> None:
    p = rm.paths()
    p.home.mkdir(parents=True, exist_ok=True)
    p.model.write_bytes(b"GGUF" + b"\0" * 100)
    assert rm._model_ok(p) is False
    with open(p.model, "wb") as handle:  # right size, wrong bytes
        handle.truncate(rm.MODEL_BYTES)
    assert rm._model_ok(p) is False
    assert not p.model.with_suffix(".sha256").exists()


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling")
def test_the_server_niceness_reaches_its_session_group() -> None:
    """Under autogroup scheduling a process's nice only counts within its session."""
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        rm._set_priority(proc.pid, 5)  # raising niceness needs no privilege
        assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-1] == "5"
    finally:
        proc.kill()
        proc.wait()
