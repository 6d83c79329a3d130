"""Scheduled, incremental classification of daily ticket partitions (Polars).

Input: a directory of Hive-style date partitions, one per day as it arrives::

    RAW/date=2024-03-01/*.parquet
    RAW/date=2024-03-02/*.parquet

Output: the same partitions, classified, each published atomically with a
``_SUCCESS`` marker::

    OUT/date=2024-03-01/part-0.parquet
    OUT/date=2024-03-01/_SUCCESS        # JSON: rows, input fingerprint, labels

A run processes only the partitions that are not done yet (no ``_SUCCESS``, or
a ``_SUCCESS`` whose input fingerprint no longer matches because the day was
re-delivered).  Each partition is written to a temporary folder next to the
output and renamed into place, so a crash never leaves a half-written
partition; the next run cleans the leftovers and redoes that day.  Answers are
in the response cache (``--cache``), so re-running costs nothing for rows
already answered and a second run over finished days sends no model calls.

A partition with rows that failed for a transient reason (``api_error``,
``budget_exceeded``) is written but not marked done, so the next run retries
just those rows.  A partition where no non-blank row got a label (every reply
unusable, say) is not written at all: one error line, and the run exits 1.  A systemic model failure (nothing listening, key refused,
unknown model) stops the run within seconds: one line, exit 1, no partition
touched.  An output folder that overlaps the input is refused up front.

Labels: ``--labels a,b,c`` (a label with a comma in double quotes),
``--labels-file F`` (one per line) or ``--label X`` repeated.

Usage::

    python jobs/daily_tickets.py --input RAW --output OUT --column question \\
        --labels billing,technical,account,other --base-url http://127.0.0.1:8000/v1 \\
        --cache /var/cache/rlm/responses.sqlite

Exit codes: 0 all partitions done, 1 some partition failed validation, got
no label at all, or has transient failures left, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

import rlm_pipeline as rp
from rlm_pipeline.cli.entry import run_guarded
from rlm_pipeline.cli.failures import FailureReport
from rlm_pipeline.cli.labels import add_label_arguments, labels_from_args
from rlm_pipeline.cli.outputs import check_output_folder
from rlm_pipeline.errors import InputError, RLMPipelineError

log = logging.getLogger("daily_tickets")

SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class Outcome:
    partition: str
    status: str  # "skipped" | "done" | "retry" | "invalid" | "failed"
    rows: int


def input_partitions(raw: Path) -> dict[str, Path]:
    """Date partition name (``date=...``) -> its input folder, sorted by name."""
    if not raw.is_dir():
        msg = f"input folder not found: {raw}"
        raise InputError(msg)
    parts = {p.name: p for p in sorted(raw.iterdir()) if p.is_dir() and "=" in p.name}
    return {name: path for name, path in parts.items() if any(path.glob("*.parquet"))}


def fingerprint(folder: Path) -> str:
    """sha256 over the names, sizes and mtimes of a partition's Parquet files."""
    entries = [
        [f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.glob("*.parquet"))
    ]
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()


def settings_hash(args: argparse.Namespace, labels: list[str]) -> str:
    """sha256 over the settings that change the answers (a change redoes every day)."""
    settings = {
        "column": args.column,
        "labels": labels,
        "instructions": args.instructions,
        "model": args.model,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def is_done(out_dir: Path, fp: str, settings: str) -> bool:
    marker = out_dir / SUCCESS
    if not marker.is_file():
        return False
    try:
        done = json.loads(marker.read_text())
        return bool(done["input_fingerprint"] == fp and done["settings"] == settings)
    except (ValueError, KeyError, TypeError):
        return False


def publish(tmp: Path, final: Path) -> None:
    """Move a finished partition folder into place (old copy removed after the swap)."""
    old = final.with_name(f".old-{final.name}")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def process(
    name: str, src: Path, out: Path, args: argparse.Namespace, llm: rp.LLM, labels: list[str]
) -> Outcome:
    final = out / name
    fp = fingerprint(src)
    settings = settings_hash(args, labels)
    if is_done(final, fp, settings):
        return Outcome(name, "skipped", 0)
    frame = pl.read_parquet(sorted(src.glob("*.parquet")))
    result = rp.classify(
        frame,
        column=args.column,
        labels=labels,
        llm=llm,
        batch_size=args.batch_size,
        instructions=args.instructions,
    )
    from rlm_pipeline.validate import validate_output

    report = validate_output(
        result,
        input_rows=frame.height,
        labels=labels,
        output_column="label",
        id_column=args.id_column,
    )
    if not report.success:
        log.error("%s: validation failed: %s", name, "; ".join(report.failed))
        return Outcome(name, "invalid", frame.height)
    failures = failure_report(result)
    if failures.all_failed:
        blank = failures.errors.get("empty_input", 0)
        log.error(
            "%s: no row got a label (%d non-blank rows failed: %s); nothing written",
            name,
            failures.rows - blank,
            ", ".join(f"{k} {n}" for k, n in sorted(failures.errors.items()) if k != "empty_input"),
        )
        return Outcome(name, "failed", frame.height)
    transient = failures.transient
    tmp = out / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    result.write_parquet(tmp / "part-0.parquet")
    if transient == 0:
        marker = {
            "rows": result.height,
            "input_fingerprint": fp,
            "settings": settings,
            "labels": labels,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / SUCCESS).write_text(json.dumps(marker, sort_keys=True))
    publish(tmp, final)
    return Outcome(name, "done" if transient == 0 else "retry", result.height)


def failure_report(result: pl.DataFrame) -> FailureReport:
    """The rows of a classified partition without a label, by reason kind."""
    kinds = result.get_column("label_error").drop_nulls().str.extract(r"^([a-z_]+)").value_counts()
    errors = {str(kind): int(n) for kind, n in kinds.iter_rows()}
    return FailureReport(rows=result.height, errors=errors)


def lock_output(out: Path) -> int:
    """Hold ``OUT/.lock`` for this run, so overlapping runs cannot clash."""
    fd = os.open(out / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = f"another run is writing {out} (it holds {out / '.lock'}); try again later"
        raise RLMPipelineError(msg) from None
    return fd


def clean_leftovers(out: Path) -> None:
    """Remove temporary folders a crashed run left behind."""
    for leftover in out.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in out.glob(".old-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, type=Path, help="folder of date=YYYY-MM-DD partitions")
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--column", default="question", help="text column to classify")
    add_label_arguments(p)
    p.add_argument("--id-column", default=None, help="column that must stay unique (checked)")
    p.add_argument("--model", default=os.environ.get("RLM_MODEL", "gpt-4.1-mini"))
    p.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint")
    p.add_argument("--cache", default=None, help="response cache (SQLite); strongly advised")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--instructions", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def run() -> int:
        labels = labels_from_args(args)
        llm = rp.LLM(
            model=args.model,
            base_url=args.base_url,
            max_concurrency=args.concurrency,
            cache_path=args.cache,
        )
        check_output_folder(args.input, args.output)
        parts = input_partitions(args.input)
        args.output.mkdir(parents=True, exist_ok=True)
        lock = lock_output(args.output)
        try:
            clean_leftovers(args.output)
            outcomes = [process(n, p, args.output, args, llm, labels) for n, p in parts.items()]
        finally:
            os.close(lock)
        for o in outcomes:
            print(f"{o.partition}: {o.status} ({o.rows} rows)")
        return 0 if all(o.status in ("done", "skipped") for o in outcomes) else 1

    return run_guarded("daily_tickets", run)


if __name__ == "__main__":
    raise SystemExit(main())
