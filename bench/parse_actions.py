"""What reading actions out of a reply costs per root turn (``text`` protocol).

Times :func:`rlm_pipeline.rlm.actions.parse_actions` on replies of the shapes
real servers produce and on hostile ones, and reports the median and the 99th
percentile per call.  Target (issue 11): under 1 ms per turn for real replies.

    .venv/bin/python bench/parse_actions.py            # writes bench/results/parse_actions.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from rlm_pipeline.rlm.actions import MAX_TEXT_CHARS, parse_actions

RESULTS = Path(__file__).resolve().parent / "results" / "parse_actions.json"

_FILTER = {"view": "context", "where": "user_id IN (12345, 67890, 11111)", "name": "subset"}
_PEEK = {"name": "peek", "arguments": {"view": "context", "n": 3}}


def replies() -> dict[str, str]:
    """The replies timed, by name."""
    qwen = json.dumps(_PEEK) + ",\n" + json.dumps({"name": "filter", "arguments": _FILTER}) + ","
    tags = (
        "I will look at the data first, then narrow it to the three users.\n"
        f"<tool_call>\n{json.dumps(_PEEK)}\n</tool_call>\n"
        f"<tool_call>\n{json.dumps({'name': 'filter', 'arguments': _FILTER})}\n</tool_call>"
    )
    fenced = (
        "Here is my plan. First a filter, then a classification of the questions.\n"
        "```json\n" + json.dumps({"name": "filter", "arguments": _FILTER}, indent=2) + "\n```\n"
        "After that I will count the billing rows with sql and answer."
    )
    prose = (
        "The table has 5000 rows with columns user_id, date and question. "
        "To answer the question I need to filter the rows of the three users and classify them. "
    ) * 8
    thousand = "\n".join([json.dumps(_PEEK)] * 1000)
    junk = ("{" + '"a": [' * 3 + "x ") * (MAX_TEXT_CHARS // 12)
    return {
        "qwen_bare_2_actions": qwen,
        "tool_call_tags_2": tags,
        "fenced_block_with_prose": fenced,
        "prose_no_action_1.6k": prose,
        "hostile_1000_actions_74k": thousand,
        "hostile_broken_json_100k": junk[:MAX_TEXT_CHARS],
    }


def time_one(text: str, repeat: int) -> dict[str, float]:
    """Median and p99 microseconds per call of ``parse_actions(text)``."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        parse_actions(text)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {
        "chars": len(text),
        "median_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[int(0.99 * (len(samples) - 1))], 1),
        "actions": len(parse_actions(text).actions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000, help="calls per reply (hostile: /20)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = {}
    for name, text in replies().items():
        repeat = args.repeat if not name.startswith("hostile") else max(5, args.repeat // 20)
        results[name] = time_one(text, repeat)
        row = results[name]
        print(
            f"{name:28s} {row['chars']:>7,} chars  median {row['median_us']:>9.1f} us"
            f"  p99 {row['p99_us']:>9.1f} us  actions {row['actions']}"
        )
    report = {
        "bench": "parse_actions",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeat": args.repeat,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
