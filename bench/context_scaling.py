"""Context scaling: the seed question through ``ask`` over tables of 10^3 ... 10^7 rows.

Issue 19.  For each size ``n`` the bundled synthetic tickets
(``rlm_pipeline.datasets.tickets(n, seed=0)``, ``true_label`` kept aside) are
written to Parquet and the seed question

    "Among users 12345, 67890 and 11111, how many questions are about billing?"

is asked through ``rp.RLM(...).run`` (what ``rlm-pipeline ask`` runs) with
the simulator as root and sub-model (latency 0).  Reported per size: the
largest prompt of any call, total tokens, calls, wall time, the answer and
whether it equals the count from ``true_label``; beside it, the tokens the
whole table would take in one prompt (one ``ticket_id | date | user_id |
question`` line per row, 4 characters per token, the simulator's rule), and
the time of the engine's own scan for the question's filter (Polars,
``user_id IN (...)`` over the Parquet file) — the wall time should grow no
faster than that scan.

The root is the simulator's scripted planner, not a model: this measures
what the RLM machinery sends (prompt sizes stay bounded because the table is
never put in a prompt), not a model's reasoning.  One untimed run over 1,000
rows comes first (imports and first-use setup).

Run::

    nice -n 10 .venv/bin/python bench/context_scaling.py                      # 10^3 .. 10^7
    .venv/bin/python bench/context_scaling.py --sizes 1000,10000,100000        # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Among users 12345, 67890 and 11111, how many questions are about billing?"
USERS = (12345, 67890, 11111)


def make_table(work: Path, n: int) -> tuple[Path, int, int]:
    """The context Parquet (no ``true_label``), the right answer, the one-prompt token count."""
    import polars as pl

    from rlm_pipeline.datasets import tickets

    path = work / f"tickets-{n}.parquet"
    meta = work / f"tickets-{n}.json"
    if path.exists() and meta.exists():
        saved = json.loads(meta.read_text())
        return path, int(saved["truth"]), int(saved["one_prompt_tokens"])
    frame = tickets(n, seed=0)
    truth = frame.filter(
        pl.col("user_id").is_in(list(USERS)) & (pl.col("true_label") == "billing")
    ).height
    line_chars = frame.select(
        (
            pl.col("ticket_id").cast(pl.String).str.len_chars()
            + pl.col("date").cast(pl.String).str.len_chars()
            + pl.col("user_id").cast(pl.String).str.len_chars()
            + pl.col("question").str.len_chars()
            + 10  # " | " x 3 and the newline
        ).sum()
    ).item()
    one_prompt = -(-int(line_chars) // 4) + len(QUESTION) // 4
    frame.drop("true_label").write_parquet(path)
    meta.write_text(json.dumps({"truth": truth, "one_prompt_tokens": one_prompt}))
    return path, truth, one_prompt


def scan_seconds(path: Path) -> float:
    """Wall time of the engine's own scan for the question's filter (best of 3)."""
    import polars as pl

    best = float("inf")
    for _ in range(3):
        started = time.monotonic()
        pl.scan_parquet(path).filter(pl.col("user_id").is_in(list(USERS))).select(
            pl.len()
        ).collect()
        best = min(best, time.monotonic() - started)
    return best


def run_size(path: Path, base_url: str) -> dict[str, Any]:
    import rlm_pipeline as rp

    llm = rp.LLM(model="sim-1", base_url=base_url, api_key="x", max_concurrency=32)
    started = time.monotonic()
    res = rp.RLM(llm).run(QUESTION, str(path), text_column="question")
    wall = time.monotonic() - started
    usage = res.usage
    return {
        "answer": res.value,
        "largest_prompt_tokens": usage.max_prompt_tokens,
        "total_tokens": usage.total_tokens,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "calls": usage.calls,
        "wall_s": round(wall, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000,10000000")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "rlm-bench-context"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "context_scaling.json"))
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from rlm_pipeline.sim import SimConfig, SimServer

    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=False).stdout.strip()
    doc: dict[str, Any] = {
        "command": " ".join(["bench/context_scaling.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": sha,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count()},
        "question": QUESTION,
        "note": "simulator root (scripted planner) and sub-model, latency 0; not a model",
        "runs": [],
    }
    warm, _, _ = make_table(work, 1_000)
    with SimServer(SimConfig()) as sim:  # imports and first-use setup, not timed
        run_size(warm, sim.base_url)
    for size in [int(s) for s in args.sizes.split(",")]:
        made = time.monotonic()
        path, truth, one_prompt = make_table(work, size)
        made_s = time.monotonic() - made
        load_before = os.getloadavg()
        with SimServer(SimConfig()) as sim:
            record = run_size(path, sim.base_url)
        record.update({
            "rows": size,
            "truth": truth,
            "right": record["answer"] == truth,
            "one_prompt_tokens": one_prompt,
            "scan_s": round(scan_seconds(path), 4),
            "data_s": round(made_s, 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        })
        doc["runs"].append(record)
        print(json.dumps(record), flush=True)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
