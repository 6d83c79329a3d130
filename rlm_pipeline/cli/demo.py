"""``rlm-pipeline demo``: the RLM end to end, offline, in well under a minute.

It writes 5,000 synthetic support tickets to Parquet (without their hidden
``true_label``), starts the OpenAI-compatible **simulator** on a free port of
127.0.0.1, asks the demo question through the real HTTP client, and prints
the steps as they happen, the answer, the ground truth from the hidden labels,
the usage, and what one long-context call over the whole table would have
needed.  The model is the simulator's rule-based planner and keyword
classifier, not a language model; ``ask`` with ``--base-url`` (or
``OPENAI_BASE_URL``) runs the same question against a real endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["QUESTION", "USERS", "add_parser", "run"]

QUESTION = "Among users 12345, 67890 and 11111, how many questions are about billing?"
USERS = (12345, 67890, 11111)
_ROWS = 5000
_COMPARE_MODEL = "gpt-4.1-mini"


def add_parser(subparsers: Any) -> None:
    """Register ``demo`` on the top-level sub-parsers."""
    parser = subparsers.add_parser(
        "demo",
        help="offline demo: sample tickets + the simulator + ask",
        description=(
            "Write 5,000 sample tickets, start the offline model simulator and run `ask` "
            "over them. No network, no API key."
        ),
    )
    parser.add_argument("--out", default=None, help="folder for the Parquet and trace files")
    parser.add_argument("--rows", type=int, default=_ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=("polars", "spark"), default="polars")
    parser.set_defaults(func=run)


def _whole_table_tokens(frame: Any) -> int:
    """Estimated prompt tokens of the whole table inlined as JSON lines."""
    from rlm_pipeline.llm.tokens import estimate_tokens

    total = 0
    for batch in frame.iter_slices(10_000):
        text = "\n".join(json.dumps(row, default=str) for row in batch.iter_rows(named=True))
        total += estimate_tokens(text + "\n")
    return total


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when the answer equals the ground truth, else 1."""
    import polars as pl

    import rlm_pipeline as rp
    from rlm_pipeline.cli.ask import format_usage, step_printer
    from rlm_pipeline.datasets.tickets import tickets
    from rlm_pipeline.llm.config import LLM
    from rlm_pipeline.sim import SimConfig, SimServer

    started = time.monotonic()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rlm-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    frame = tickets(args.rows, seed=0)
    visible = frame.drop("true_label")
    data_path = out / "tickets.parquet"
    visible.write_parquet(data_path)
    truth = frame.filter(
        pl.col("user_id").is_in(list(USERS)) & (pl.col("true_label") == "billing")
    ).height
    trace_path = out / "trace.jsonl"

    print("rlm-pipeline demo — offline. The model is the SIMULATOR (a rule-based planner")
    print("and a keyword classifier served over HTTP on 127.0.0.1), not a language model.")
    print(f"Data: {args.rows:,} support tickets → {data_path} (hidden labels kept aside)")
    print(f"Question: {QUESTION}\n")
    spark = None
    if args.engine == "spark":
        from rlm_pipeline.cli.ask import spark_session

        spark = spark_session("spark")
    with SimServer(SimConfig()) as sim:
        print(f"Simulator: {sim.base_url}\nSteps:")
        # Named like a real model so costs are priced at its list prices for comparison.
        llm = LLM(model=_COMPARE_MODEL, base_url=sim.base_url, api_key="sim")
        rlm = rp.RLM(llm, engine=args.engine, spark=spark, max_steps=30, max_depth=2)
        res = rlm.run(
            QUESTION,
            str(data_path),
            text_column="question",
            trace_path=str(trace_path),
            on_step=step_printer(sys.stdout),
        )
    long_tokens = _whole_table_tokens(visible)
    long_cost = LLM(model=_COMPARE_MODEL).price().cost(long_tokens, 10)
    match = res.value == truth
    print(f"\nAnswer:       {res.answer}")
    print(
        f"Ground truth: {truth} (from the hidden true_label) — {'match' if match else 'MISMATCH'}"
    )
    print(f"Usage:        {format_usage(res.usage)} at {_COMPARE_MODEL} list prices")
    print(
        f"Long context: the whole table as one prompt would be ~{long_tokens:,} tokens "
        f"({long_tokens / max(1, res.usage.max_prompt_tokens):.0f}× the largest RLM prompt; "
        f"${long_cost:.4f} per call at {_COMPARE_MODEL} list prices)"
    )
    print(f"Trace:        {trace_path} (rlm-pipeline trace show {trace_path})")
    print(f"Time:         {time.monotonic() - started:.1f}s")
    print(
        "\nReal model: rlm-pipeline ask "
        f'{data_path} "{QUESTION}" --text-column question --base-url URL --model NAME\n'
        "(or set OPENAI_BASE_URL / OPENAI_API_KEY; any OpenAI-compatible endpoint works: "
        "OpenAI, vLLM, Ollama, llama.cpp server)."
    )
    return 0 if match else 1
