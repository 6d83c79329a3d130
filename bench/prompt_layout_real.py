"""Classify accuracy of the real small model with the old and the new prompt layout.

Issue 19 shortened the classify prompts and laid them out for prefix caching
(format ``ops-2``: shared system message first, rows last as ``12:"text"``).
This script checks the saving costs no quality on a real model: Qwen2.5-Coder-
0.5B on the llama.cpp server of ``bench/real_model.py`` (found with
``status``; never started here), ``rp.classify`` with ``batch_size=1`` and
the label guide of ``tests/real``, over ``--rows`` tickets, once with the
current prompts and once with the ``ops-1`` layout rebuilt below (the texts
of the previous ``rlm_pipeline/ops/prompts.py``).  Reports accuracy against
the tickets' ``true_label``, input tokens per row, cached prompt tokens and
wall time per layout.  No response cache: every row is asked.

Run::

    .venv/bin/python bench/prompt_layout_real.py --rows 100   # ~2-4 min per layout
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import rlm_pipeline as rp  # noqa: E402
from rlm_pipeline.datasets import LABELS, tickets  # noqa: E402
from rlm_pipeline.llm.usage import UsageMeter  # noqa: E402
from rlm_pipeline.ops import polars_fanout, prompts  # noqa: E402
from rlm_pipeline.ops.spec import ClassifySpec  # noqa: E402

LABEL_GUIDE = (
    "billing: charges, payments, refunds, invoices, receipts, prices, subscriptions. "
    "technical: errors, crashes, bugs, slow or broken features, outages, the app or API. "
    "account: login, password, two-factor, email address, username, locked or deleted "
    "accounts, personal data. "
    "other: anything else (feedback, events, jobs, partnerships, general questions)."
)


def ops1_messages(spec: Any, texts: Sequence[str]) -> list[dict[str, Any]]:
    """The classify messages of prompt format ops-1 (before issue 19), for comparison."""
    lines = [
        "You are a text classifier.",
        "Labels: " + ", ".join(spec.labels),
        "Give each row exactly one label from this list, spelled exactly as listed.",
    ]
    if spec.instructions:
        lines.append(f"Instructions: {spec.instructions}")
    if spec.batch_size == 1:
        lines.append("There is one row; answer for it alone.")
    else:
        lines.append("Answer every row once, with the row's id exactly as given.")
    rows = [json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in enumerate(texts)]
    return [
        {"role": "system", "content": "\n".join(lines)},
        {"role": "user", "content": "\n".join(["Classify each row.", "Rows:", *rows])},
    ]


def run_layout(name: str, base_url: str, model: str, rows: int, seed: int) -> dict[str, Any]:
    frame = tickets(rows, seed=seed)
    spec = ClassifySpec("question", tuple(LABELS), instructions=LABEL_GUIDE, batch_size=1)
    llm = rp.LLM(model=model, base_url=base_url, api_key="local", max_concurrency=1,
                 timeout_s=300, max_retries=2)
    meter = UsageMeter()
    real = prompts.build_messages
    if name == "ops-1":
        prompts.build_messages = ops1_messages  # type: ignore[assignment]
    started = time.monotonic()
    try:
        out, _ = polars_fanout.apply(frame.drop("true_label"), spec, llm, meter=meter)
    finally:
        prompts.build_messages = real  # type: ignore[assignment]
    wall = time.monotonic() - started
    truth = frame["true_label"].to_list()
    got = out["label"].to_list()
    right = sum(a == b for a, b in zip(got, truth, strict=True))
    usage = meter.snapshot()
    return {
        "layout": name,
        "rows": rows,
        "right": right,
        "accuracy": round(right / rows, 3),
        "nulls": out["label"].null_count(),
        "calls": usage.calls,
        "input_tokens": usage.input_tokens,
        "cached_tokens": usage.cached_tokens,
        "input_tokens_per_row": round(usage.input_tokens / rows, 1),
        "wall_s": round(wall, 1),
        "example_system": (ops1_messages if name == "ops-1" else real)(spec, ["x"])[0]["content"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--layouts", default="ops-2,ops-1")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "prompt_layout_real.json"))
    args = parser.parse_args()
    import real_model  # bench/real_model.py

    server = real_model.status()
    if server is None:
        print("no real-model server running (bench/real_model.py up starts one)", file=sys.stderr)
        return 1
    results = []
    for name in args.layouts.split(","):
        result = run_layout(name, server.base_url, server.model, args.rows, args.seed)
        print(json.dumps({k: v for k, v in result.items() if k != "example_system"}), flush=True)
        results.append(result)
    doc = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "model": "Qwen2.5-Coder-0.5B-Instruct Q4_K_M on llama-cpp-python 0.3.36 (bench/real_model.py)",
        "spec": "classify, batch_size=1, labels billing/technical/account/other, tests/real label guide",
        "results": results,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
