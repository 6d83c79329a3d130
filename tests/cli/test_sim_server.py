"""``rlm-pipeline sim-server`` as a real process: prints its URL, serves, stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import pytest

COMMAND = [sys.executable, "-m", "rlm_pipeline", "sim-server"]


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", "--latency-ms", "5", "--max-concurrency", "3",
         "--fault-429", "0.25", "--structured-mode", "json_object", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "simulator" in first and "not a real model" in first, first
        url = first.split()[-1]
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_serves_with_the_given_knobs_and_stops_on_ctrl_c(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = server
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    root = url[: -len("/v1")]
    with httpx2.Client(trust_env=False, verify=False, timeout=10) as http:
        config = http.get(f"{root}/stats").json()["config"]
        assert config["latency_ms"] == 5 and config["max_concurrency"] == 3
        assert config["fault_429"] == 0.25 and config["structured_mode"] == "json_object"
        assert config["seed"] == 7
        models = http.get(f"{url}/models").json()
        assert models["object"] == "list" and models["data"]
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "simulator stopped" in out


def test_refuses_a_non_loopback_host() -> None:
    result = subprocess.run([*COMMAND, "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--allow-remote" in result.stderr
    assert "Traceback" not in result.stderr


def test_rejects_a_rate_above_one() -> None:
    result = subprocess.run([*COMMAND, "--fault-500", "2"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "between 0 and 1" in result.stderr
