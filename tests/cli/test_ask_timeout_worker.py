"""``ask --timeout`` on Polars with the row cap lifted: the join runs, and is killed.

The simulator's root (``[adversarial:slow]``) asks for a triple self-join over
100,000 tickets (about 7.5e9 rows, minutes of work).  With ``--max-view-rows``
lifted the join passes its estimate and runs in a Polars worker process; the
run's timeout kills that process and ``ask`` exits with the timeout, leaving no
process behind.  (The issue's ``--timeout 30`` was measured by hand; a shorter
timeout keeps the suite quick.)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rlm_pipeline.datasets import write_tickets
from tests.cli.test_ask_timeout import QUESTION, _alive, _ask

TIMEOUT = 8


def test_ask_timeout_kills_the_running_polars_join(sim_factory: Any, tmp_path: Path) -> None:
    data = write_tickets(tmp_path / "t.parquet", 100_000)
    sim = sim_factory()
    args = ["ask", str(data), QUESTION, "--engine", "polars", "--base-url", sim.base_url]
    args += ["--timeout", str(TIMEOUT), "--max-retries", "0", "--max-view-rows", str(10**15)]
    out = _ask(args)
    print(
        f"\npolars: ask exited {out['run_seconds']:.1f}s after the first step "
        f"({out['total_seconds']:.1f}s in all), code {out['code']}"
    )
    assert out["run_seconds"] < TIMEOUT + 10, out
    assert out["code"] != 0
    assert "time_s" in out["stderr"] or "timeout" in out["stderr"].lower(), out["stderr"]
    assert "Traceback" not in out["stderr"]
    assert out["children"], "the join ran in a worker process"
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in out["children"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in out["children"] if _alive(p)]
