"""Run one LOTUS semantic operator over tickets, for bench/operators_vs_lotus.py.

Executed inside the LOTUS bench venv (lotus-ai pins numpy<2 / pandas<3 and
imports torch, so it cannot share the main venv).  Reads a JSON file with the
rows and the operator's parameters, runs ``sem_filter``, ``sem_extract``,
``sem_topk``, ``sem_agg`` or ``sem_join`` against an OpenAI-compatible
endpoint (the simulator on 127.0.0.1, ``bench/peers/lotus_sim.py``), writes
a JSON result: LOTUS's output (row ids, values), its raw answers where LOTUS
returns them, the count of answers LOTUS's own parser failed on (its log
lines "Failed to parse" / "Could not parse", after which it uses a default:
True for filter and join, ``{}`` for extract, "Document 1" for top-k), the
wall time of the operation and the error if it failed.

Protocol on stdout/stdin (as bench/peers/lotus_run.py): prints ``READY``
after imports and setup, waits for one line on stdin, runs the operation,
prints ``DONE``.  Usage::

    /work/venvs/lotus/bin/python bench/peers/lotus_ops_run.py \
        --base-url http://127.0.0.1:PORT/v1 --input job.json --output result.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def _offline_env() -> None:
    """Keep litellm/tiktoken/HF off the network: bundled encodings, local cost map."""
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations:
        tok_dir = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tok_dir))
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _ParseFailures(logging.Handler):
    """Counts LOTUS's own "could not parse, using the default" log lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Failed to parse" in message or "Could not parse" in message:
            self.count += 1


def _run(op: str, job: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    rows = job["rows"]
    df = pd.DataFrame({"id": [r["id"] for r in rows], "question": [r["text"] for r in rows]})
    if op == "filter":
        out = df.sem_filter(job["instruction"], return_all=True, return_raw_outputs=True,
                            progress_bar_desc="lotus sem_filter")
        return {"rows_out": len(out), "ids": [int(i) for i in out["id"]],
                "values": [bool(v) for v in out["_filter"]],
                "raw": [str(v) for v in out["raw_output_filter"]]}
    if op == "extract":
        out = df.sem_extract(["question"], job["fields"], return_raw_outputs=True,
                             progress_bar_desc="lotus sem_extract")
        names = list(job["fields"])
        values = [{n: (None if pd.isna(r.get(n)) else str(r.get(n))) for n in names}
                  for r in out.to_dict("records")]
        return {"rows_out": len(out), "ids": [int(i) for i in out["id"]], "values": values,
                "raw": [str(v) for v in out["raw_output"]]}
    if op == "top_k":
        out = df.sem_topk(job["instruction"], K=job["k"], method=job.get("method", "quick"))
        return {"rows_out": len(out), "ids": [int(i) for i in out["id"]]}
    if op == "aggregate":
        out = df.sem_agg(job["instruction"], progress_bar_desc="lotus sem_agg")
        return {"rows_out": len(out), "values": [str(v) for v in out["_output"]]}
    if op == "join":
        right = pd.DataFrame({"rid": [r["id"] for r in job["right"]], "f": [r["text"] for r in job["right"]]})
        out = df.sem_join(right, job["instruction"], progress_bar_desc="lotus sem_join")
        return {"rows_out": len(out), "pairs": [[int(a), int(b)] for a, b in zip(out["id"], out["rid"], strict=True)]}
    msg = f"unknown op {op!r}"
    raise ValueError(msg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model", default="sim")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--retries", type=int, default=2)
    args = parser.parse_args()
    job = json.loads(Path(args.input).read_text())
    op = job["op"]

    t_process = time.perf_counter()
    _offline_env()
    import litellm

    litellm.suppress_debug_info = True
    import lotus
    from lotus.models import LM

    failures = _ParseFailures()
    lotus.logger.addHandler(failures)
    lotus.logger.setLevel(logging.INFO)
    lotus.logger.propagate = False  # counted, not printed (one line per failed row)
    for handler in list(lotus.logger.handlers):
        if handler is not failures:
            lotus.logger.removeHandler(handler)

    options: dict[str, Any] = {}
    if job.get("max_ctx_len"):
        options["max_ctx_len"] = int(job["max_ctx_len"])
    lm = LM(
        model=f"hosted_vllm/{args.model}",
        api_base=args.base_url,
        api_key=os.environ["OPENAI_API_KEY"],
        max_batch_size=args.concurrency,
        timeout=args.timeout,
        num_retries=args.retries,
        **options,
    )
    lotus.settings.configure(lm=lm, enable_cache=False)
    t_imported = time.perf_counter()

    print("READY", flush=True)
    sys.stdin.readline()
    error: str | None = None
    result: dict[str, Any] = {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        result = _run(op, job)
    except Exception as exc:  # one failed call fails the whole operator in LOTUS
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0  # every thread of this process (litellm's pool included)
    print("DONE", flush=True)

    usage: dict[str, Any] = {}
    try:
        phys = lm.stats.physical_usage
        usage = {"prompt_tokens": phys.prompt_tokens, "completion_tokens": phys.completion_tokens}
    except AttributeError:
        pass
    summary = {
        "system": f"LOTUS sem_{'topk' if op == 'top_k' else 'agg' if op == 'aggregate' else op}",
        "version": {"lotus-ai": _version("lotus-ai"), "litellm": _version("litellm")},
        "op": op,
        "rows_in": len(job["rows"]),
        "wall_s": wall,
        "cpu_s": cpu,
        "import_s": t_imported - t_process,
        "error": error,
        "parse_failures": failures.count,
        "client_usage": usage,
        "concurrency": args.concurrency,
        **result,
    }
    Path(args.output).write_text(json.dumps(summary))
    return 0 if error is None else 1


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
