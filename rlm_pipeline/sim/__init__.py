"""An OpenAI-compatible simulator: a deterministic "model" behind a real HTTP server.

It is a simulator, not a language model: classification sub-calls are
answered by a keyword classifier (:func:`intended_label`), ``llm_map`` calls by
simple rules (:func:`map_value`), and the RLM root role by a scripted planner.
It has knobs for latency, a concurrency cap and injected faults, and counts
the traffic it sees (``GET /stats``).

Examples
--------
>>> from rlm_pipeline.sim import SimConfig, SimServer
>>> with SimServer(SimConfig(latency_ms=5)) as sim:
...     sim.base_url.startswith("http://127.0.0.1:")
True
"""

from __future__ import annotations

from rlm_pipeline._lazy import require

# One-line install hint instead of a ModuleNotFoundError from deep inside.
require("starlette", extra="sim", feature="The simulator")
require("uvicorn", extra="sim", feature="The simulator")

from rlm_pipeline.sim.app import build_app  # noqa: E402
from rlm_pipeline.sim.classifier import intended_label  # noqa: E402
from rlm_pipeline.sim.config import STRUCTURED_MODES, SimConfig  # noqa: E402
from rlm_pipeline.sim.mapper import map_value  # noqa: E402
from rlm_pipeline.sim.server import SimServer, serve  # noqa: E402

__all__ = [
    "STRUCTURED_MODES",
    "SimConfig",
    "SimServer",
    "build_app",
    "intended_label",
    "map_value",
    "serve",
]
