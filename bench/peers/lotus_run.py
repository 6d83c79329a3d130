"""Run LOTUS ``sem_map`` (one row per call) over tickets, for bench/fanout.py.

Executed inside ``.bench-venv-lotus`` (lotus-ai pins numpy<2 / pandas<3 and
imports torch, so it cannot share the main venv).  Reads a JSONL file of
``{"id": int, "text": str}``, classifies every text with ``sem_map`` against
an OpenAI-compatible endpoint (our simulator on 127.0.0.1), writes one JSONL
line ``{"id", "raw", "label"}`` per row and a JSON summary.

Protocol with bench/fanout.py on stdout/stdin: prints ``READY`` after imports
and setup, waits for one line on stdin, runs the operation, prints ``DONE``.

Usage::

    .bench-venv-lotus/bin/python bench/peers/lotus_run.py \
        --base-url http://127.0.0.1:PORT/v1 --input rows.jsonl \
        --output out.jsonl --summary summary.json --labels billing,technical,account,other
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path


def _offline_env() -> None:
    """Keep litellm/tiktoken off the network: bundled encodings, local cost map."""
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        tok_dir = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tok_dir))
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def to_label(raw: object, labels: list[str]) -> str | None:
    """The first label word in the model's free-text answer, or None."""
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    if text in labels:
        return text
    for word in re.findall(r"[a-z]+", text):
        if word in labels:
            return word
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--model", default="sim")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--retries", type=int, default=2)
    args = parser.parse_args()
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]

    t_process = time.perf_counter()
    _offline_env()
    import litellm
    import pandas as pd

    litellm.suppress_debug_info = True
    import lotus
    from lotus.models import LM

    t_imported = time.perf_counter()
    rows = [json.loads(line) for line in Path(args.input).read_text().splitlines() if line]
    df = pd.DataFrame({"id": [r["id"] for r in rows], "question": [r["text"] for r in rows]})

    lm = LM(
        model=f"hosted_vllm/{args.model}",
        api_base=args.base_url,
        api_key=os.environ["OPENAI_API_KEY"],
        max_batch_size=args.concurrency,
        timeout=args.timeout,
        num_retries=args.retries,
        max_tokens=16,
    )
    lotus.settings.configure(lm=lm, enable_cache=False)

    instruction = (
        "Classify the customer support ticket {question} into exactly one of these labels: "
        + ", ".join(labels)
        + ". Answer with the label only."
    )
    error: str | None = None
    # Protocol with bench/fanout.py: READY after setup, wait for GO, DONE right after the op.
    print("READY", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    try:
        out = df.sem_map(instruction, progress_bar_desc="lotus sem_map")
        raws = list(out["_map"])
    except Exception as exc:  # one failed call fails the whole sem_map in LOTUS
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        raws = []
    wall = time.perf_counter() - t0
    print("DONE", flush=True)

    with open(args.output, "w") as fh:
        for r, raw in zip(rows, raws, strict=False):
            fh.write(json.dumps({"id": r["id"], "raw": raw, "label": to_label(raw, labels)}) + "\n")
    stats = getattr(lm, "stats", None)
    usage: dict[str, object] = {}
    if stats is not None:
        try:
            phys = stats.physical_usage
            usage = {
                "prompt_tokens": phys.prompt_tokens,
                "completion_tokens": phys.completion_tokens,
                "total_cost": phys.total_cost,
            }
        except AttributeError:
            usage = {"repr": repr(stats)[:300]}
    summary = {
        "system": "LOTUS sem_map",
        "version": {"lotus-ai": _version("lotus-ai"), "litellm": _version("litellm")},
        "rows_in": len(rows),
        "rows_out": len(raws),
        "wall_s": wall,
        "import_s": t_imported - t_process,
        "error": error,
        "client_usage": usage,
        "concurrency": args.concurrency,
    }
    Path(args.summary).write_text(json.dumps(summary, indent=2))
    return 0 if error is None else 1


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
