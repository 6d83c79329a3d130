"""Run a DocETL ``map`` operation (one row per call) over tickets, for bench/fanout.py.

Executed inside ``.bench-venv-docetl`` (docetl brings numpy 2 / pandas 3 and
its own litellm pin, kept apart from the main venv).  Reads a JSONL file of
``{"id": int, "text": str}``, classifies every text with a DocETL map whose
output schema is ``label: enum[...]`` against an OpenAI-compatible endpoint
(our simulator on 127.0.0.1), writes one JSONL line ``{"id", "raw", "label"}``
per input row (``label`` null when DocETL dropped or mangled the row) and a
JSON summary.  DocETL asks for output through a forced ``send_output`` tool
call; its answer cache is bypassed and ``DOCETL_HOME_DIR`` is set per run by
the caller.

Protocol with bench/fanout.py on stdout/stdin: prints ``READY`` after imports
and setup, waits for one line on stdin, runs the operation, prints ``DONE``.

Usage::

    .bench-venv-docetl/bin/python bench/peers/docetl_run.py \
        --base-url http://127.0.0.1:PORT/v1 --input rows.jsonl \
        --output out.jsonl --summary summary.json --labels billing,technical,account,other
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
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
    os.environ.setdefault("DOCETL_HOME_DIR", str(Path.cwd() / "docetl_home"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--model", default="sim")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]

    t_process = time.perf_counter()
    _offline_env()
    import litellm

    litellm.suppress_debug_info = True
    from docetl.runner import DSLRunner

    t_imported = time.perf_counter()
    rows = [json.loads(line) for line in Path(args.input).read_text().splitlines() if line]
    data_path = Path.cwd() / "docetl_input.json"
    data_path.write_text(json.dumps([{"id": r["id"], "question": r["text"]} for r in rows]))
    out_path = Path.cwd() / "docetl_output.json"

    config = {
        "default_model": f"openai/{args.model}",
        "default_lm_api_base": args.base_url,
        "bypass_cache": True,
        "datasets": {"tickets": {"type": "file", "path": str(data_path)}},
        "operations": [
            {
                "name": "classify_ticket",
                "type": "map",
                "bypass_cache": True,
                "prompt": (
                    "Classify the customer support ticket into exactly one of these labels: "
                    + ", ".join(labels)
                    + ".\nTicket: {{ input.question }}"
                ),
                "output": {"schema": {"label": "enum[" + ", ".join(labels) + "]"}},
            }
        ],
        "pipeline": {
            "steps": [{"name": "classify", "input": "tickets", "operations": ["classify_ticket"]}],
            "output": {"type": "file", "path": str(out_path)},
        },
    }
    # DocETL prints progress with rich; keep stdout free for the protocol.
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=False)
    runner = DSLRunner(config, max_threads=args.concurrency, console=console)
    runner.load()

    error: str | None = None
    output: list[dict] = []
    print("READY", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    try:
        output, _, _ = runner.last_op_container.next()
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    wall = time.perf_counter() - t0
    print("DONE", flush=True)

    by_id: dict[int, list[object]] = {}
    for rec in output:
        by_id.setdefault(rec.get("id"), []).append(rec.get("label"))
    duplicates = sum(len(v) - 1 for v in by_id.values() if len(v) > 1)
    with open(args.output, "w") as fh:
        for r in rows:
            got = by_id.get(r["id"])
            raw = got[0] if got else None
            label = raw if isinstance(raw, str) and raw in labels else None
            fh.write(json.dumps({"id": r["id"], "raw": raw, "label": label}) + "\n")
    summary = {
        "system": "DocETL map",
        "version": {"docetl": _version("docetl"), "litellm": _version("litellm")},
        "rows_in": len(rows),
        "rows_out": len(output),
        "rows_dropped": sum(1 for r in rows if r["id"] not in by_id),
        "rows_duplicated": duplicates,
        "wall_s": wall,
        "import_s": t_imported - t_process,
        "error": error,
        "client_cost_usd": getattr(runner, "total_cost", None),
        "client_usage": {k: dict(v) for k, v in getattr(runner, "total_token_usage", {}).items()},
        "max_threads": args.concurrency,
        "console_tail": console.file.getvalue()[-1500:] if error else None,  # type: ignore[attr-defined]
    }
    Path(args.summary).write_text(json.dumps(summary, indent=2, default=str))
    return 0 if error is None else 1


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
