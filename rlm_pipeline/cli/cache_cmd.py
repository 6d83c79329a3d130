"""``rlm-pipeline cache stats`` and ``rlm-pipeline cache prune --older-than DURATION``.

Both work on the response cache the other commands use: ``--cache PATH``,
else ``$RLM_PIPELINE_CACHE``, else ``~/.cache/rlm_pipeline/responses.sqlite``.
``stats`` prints the entries (replies of whole calls, row answers), their age
range and the file size; ``prune`` removes the entries written more than
DURATION ago (``90s``, ``30m``, ``12h``, ``7d``, ``2w``) and shrinks the file
(``--no-vacuum`` skips the rewrite).  A pruned text is asked again by the next
run that meets it.  ``--json`` prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from typing import Any

from rlm_pipeline.errors import InputError

__all__ = ["DEFAULT_CACHE", "add_parser", "parse_duration", "run_prune", "run_stats"]

#: The file classify/ask use when neither ``--cache`` nor ``$RLM_PIPELINE_CACHE`` is given.
DEFAULT_CACHE = os.path.join("~", ".cache", "rlm_pipeline", "responses.sqlite")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30d``, ``12h``, ``90m``, ``45s`` or ``2w``.

    Examples
    --------
    >>> parse_duration("7d"), parse_duration("1.5h"), parse_duration("90s")
    (604800.0, 5400.0, 90.0)
    """
    found = _DURATION.match(text)
    if found is None:
        msg = f"--older-than: {text!r} is not a duration like 30d, 12h, 90m, 45s or 2w"
        raise InputError(msg)
    return float(found.group(1)) * _UNITS[found.group(2).lower()]


def add_parser(subparsers: Any) -> None:
    """Register ``cache`` (with its ``stats`` and ``prune`` actions)."""
    parser = subparsers.add_parser(
        "cache",
        help="show or prune the response cache",
        description="Inspect or shrink the response cache (replies and row answers).",
    )
    actions = parser.add_subparsers(dest="cache_action", required=True, metavar="ACTION")
    stats = actions.add_parser(
        "stats",
        help="entries, age range and size of the cache file",
        description="Print the entries, their age range and the size of the cache file.",
    )
    prune = actions.add_parser(
        "prune",
        help="remove entries older than a duration",
        description="Remove replies and row answers written more than DURATION ago.",
    )
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="age of the entries to remove: 30d, 12h, 90m, 45s, 2w",
    )
    prune.add_argument(
        "--no-vacuum", action="store_true", help="do not rewrite the file to give space back"
    )
    for action, func in ((stats, run_stats), (prune, run_prune)):
        action.add_argument("--cache", default=None, help="the cache file (default: see above)")
        action.add_argument("--json", action="store_true", help="print one JSON object")
        action.set_defaults(func=func)


def _path(args: argparse.Namespace) -> str:
    raw = args.cache or os.environ.get("RLM_PIPELINE_CACHE") or DEFAULT_CACHE
    path = os.path.expanduser(raw)
    if not os.path.isfile(path):
        msg = f"no cache file at {path!r} (pass --cache PATH)"
        raise InputError(msg)
    return path


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def run_stats(args: argparse.Namespace) -> int:
    """Print the cache's counts and size; exit 0 (2 when there is no cache file)."""
    from rlm_pipeline.llm.cache import ResponseCache

    with ResponseCache(_path(args)) as cache:
        stats = cache.stats()
    if args.json:
        print(json.dumps(stats.to_dict()))
        return 0
    per_entry = stats.file_bytes / stats.entries if stats.entries else 0.0
    print(f"cache file      {stats.path}")
    print(f"size            {_size(stats.file_bytes)} ({per_entry:,.0f} B per entry)")
    print(f"row answers     {stats.row_answers:>12,}")
    print(f"replies         {stats.responses:>12,}")
    if stats.legacy_row_answers:
        print(
            f"old-format rows {stats.legacy_row_answers:>12,}  (no longer read; prune removes them)"
        )
    print(f"oldest entry    {_when(stats.oldest)}")
    print(f"newest entry    {_when(stats.newest)}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Remove old entries and print what went; exit 0 (2 for a bad duration or no file)."""
    from rlm_pipeline.llm.cache import ResponseCache

    seconds = parse_duration(args.older_than)
    with ResponseCache(_path(args)) as cache:
        result = cache.prune(seconds, vacuum=not args.no_vacuum)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(
        f"removed {result.removed:,} entries older than {args.older_than} "
        f"({result.row_answers:,} row answers, {result.responses:,} replies"
        + (f", {result.legacy_row_answers:,} old-format rows" if result.legacy_row_answers else "")
        + f"); file {_size(result.bytes_before)} -> {_size(result.bytes_after)}"
    )
    return 0
