"""``rlm-pipeline ask INPUT "QUESTION"``: run the RLM over a table and print its steps.

Steps are printed as they happen (through ``RLM.run``'s ``on_step``), then the
answer and the usage.  With ``--json`` stdout holds exactly one JSON object,
``{"answer", "value", "usage", "trace_path"}``, and the steps go to stderr.
Every other way out prints one object too (with the same exit code and the one
error line on stderr): ``{"error": {"kind", "message"}, "partial", "usage",
"trace_path"}``, where ``kind`` is ``budget_exceeded``, ``llm_error``,
``input_error``, ``expression_error``, ``engine_error``, ``error``,
``interrupted`` or ``internal_error``, and ``partial`` is the best partial
result of a run stopped by its budget (else null).  A run that ends without an
answer within --max-steps prints the usual object plus ``"error"`` (kind
``no_answer``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import IO, Any

from rlm_pipeline._quiet import known_warnings_filtered
from rlm_pipeline.errors import (
    BudgetExceededError,
    EngineError,
    ExpressionError,
    InputError,
    LLMError,
    RLMPipelineError,
)

__all__ = [
    "add_parser",
    "error_kind",
    "format_step",
    "format_usage",
    "run",
    "spark_session",
    "step_printer",
]

DEFAULT_MODEL = "gpt-4.1-mini"


def add_parser(subparsers: Any) -> None:
    """Register ``ask`` on the top-level sub-parsers."""
    parser = subparsers.add_parser(
        "ask",
        help="answer a question over a table with the RLM",
        description=(
            "Answer QUESTION over INPUT (Parquet file/dir/glob, CSV or JSONL) with a "
            "Recursive Language Model: the root model explores the table with checked SQL "
            "tools and fans reading out to sub-calls. Model endpoint: --base-url or "
            "OPENAI_BASE_URL; key: OPENAI_API_KEY."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="Parquet file/dir/glob, CSV or JSONL file")
    parser.add_argument("question", metavar="QUESTION", help="the question, in quotes")
    parser.add_argument("--text-column", default=None, help="column holding the texts to read")
    parser.add_argument("--engine", choices=("polars", "spark"), default=None)
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"root model (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--sub-model", default=None, help="model for sub-calls (default: --model)")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint URL")
    parser.add_argument(
        "--max-retries", type=int, default=None, help="retries per model call (default 6)"
    )
    parser.add_argument(
        "--request-timeout", type=float, default=None, metavar="SECONDS",
        help="per model request (default 60; raise it for slow local models)",
    )
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--max-depth", type=int, default=2)
    parser.add_argument("--max-calls", type=int, default=None, help="budget: model calls")
    parser.add_argument("--max-cost-usd", type=float, default=None, help="budget: cost in USD")
    for kind in ("input", "output"):
        parser.add_argument(
            f"--price-{kind}", type=float, default=None, metavar="USD",
            help=f"--model's USD per 1M {kind} tokens (for models without a built-in price)",
        )
    parser.add_argument("--timeout", type=float, default=None, help="wall-clock limit, seconds")
    parser.add_argument(
        "--max-view-rows", type=int, default=None, metavar="N",
        help="most rows of one view the model makes (default max(10 x rows, 1,000,000)); "
        "bigger joins are refused before they run",
    )
    parser.add_argument(
        "--tool-timeout", type=float, default=120.0, metavar="SECONDS",
        help="wall-clock limit of one peek/filter/partition/sql call (default 120); "
        "its engine work is cancelled",
    )
    parser.add_argument("--trace", metavar="FILE.jsonl", default=None, help="write the trace here")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--protocol",
        choices=("auto", "tools", "json", "text"),
        default="auto",
        help="how the root model's actions travel: native tool calls, one JSON action per "
        "turn (response_format), actions written in text, or auto (default: chosen per "
        "endpoint and model, remembered)",
    )
    parser.set_defaults(func=run)


def format_step(record: dict[str, Any]) -> str | None:
    """One printable line for a trace record, or None for records not worth a line.

    Examples
    --------
    >>> format_step({"kind": "tool", "tool": "filter", "depth": 0, "path": "root",
    ...              "arguments": {"where": "user_id = 1"}, "result_summary": "view `a`: 3 rows",
    ...              "error": None, "seconds": 0.01, "sub_calls": 0, "extra": {"step": 2}})
    '  step 2  filter where=user_id = 1 → view `a`: 3 rows'
    """
    kind = record.get("kind")
    indent = "  " * (int(record.get("depth") or 0) + 1)
    where = "" if record.get("path") in (None, "root") else f"[{record['path']}] "
    step = (record.get("extra") or {}).get("step")
    label = f"step {step}  " if step else ""
    if kind == "run_start":
        extra = record.get("extra") or {}
        return f"{indent}{where}start: {extra.get('question', '')!s:.120} ({record.get('rows_in')} rows)"
    if kind in ("tool", "answer") or (kind == "error" and record.get("tool")):
        args = record.get("arguments") or {}
        shown = " ".join(f"{k}={_short(v)}" for k, v in args.items())
        result = (record.get("result_summary") or "").replace("\n", " | ")
        calls = (
            f" ({record['sub_calls']} sub-calls)"
            if record.get("sub_calls") and "sub-calls" not in result
            else ""
        )
        mark = "✗ " if kind == "error" else ""
        return f"{indent}{where}{label}{mark}{record.get('tool')} {shown} → {_short(result, 160)}{calls}"
    if kind == "error":
        return f"{indent}{where}{label}✗ {record.get('error')}"
    if kind == "model" and (record.get("extra") or {}).get("plain"):
        return f"{indent}{where}plain call over {record.get('rows_in')} rows → {record.get('result_summary')}"
    return None


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def step_printer(stream: IO[str]) -> Callable[[dict[str, Any]], None]:
    """An ``on_step`` callback printing each step to ``stream`` as it happens."""

    def on_step(record: dict[str, Any]) -> None:
        line = format_step(record)
        if line is not None:
            print(line, file=stream, flush=True)

    return on_step


def format_usage(usage: Any) -> str:
    """Usage in one line: calls, tokens, largest prompt, cost."""
    return (
        f"{usage.calls} model calls ({usage.cached_calls} cached), "
        f"{usage.input_tokens:,} input + {usage.output_tokens:,} output tokens, "
        f"largest prompt {usage.max_prompt_tokens:,} tokens, cost ${usage.cost_usd:.4f}"
    )


def spark_session(engine: str | None) -> Any:
    """The active SparkSession for ``--engine spark`` (a local one if none), else None."""
    if engine != "spark":
        return None
    from rlm_pipeline._lazy import require_spark

    require_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # No session yet: a local one on the loopback interface (cluster jobs bring their own).
    return (
        SparkSession.builder.appName("rlm-pipeline ask")
        .master("local[*]")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def error_kind(exc: BaseException) -> str:
    """The ``kind`` of ``ask --json``'s error object for an exception.

    Examples
    --------
    >>> error_kind(BudgetExceededError("calls", 5, 5)), error_kind(KeyboardInterrupt())
    ('budget_exceeded', 'interrupted')
    """
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (BudgetExceededError, "budget_exceeded"),
        (LLMError, "llm_error"),
        (InputError, "input_error"),
        (ExpressionError, "expression_error"),
        (EngineError, "engine_error"),
        (RLMPipelineError, "error"),
        (KeyboardInterrupt, "interrupted"),
    )
    return next((kind for cls, kind in kinds if isinstance(exc, cls)), "internal_error")


def _usage_of(run_end: dict[str, Any] | None) -> dict[str, Any]:
    usage = ((run_end or {}).get("extra") or {}).get("usage")
    if isinstance(usage, dict):
        return usage
    from rlm_pipeline.llm.usage import Usage

    return Usage().to_dict()


def _recording(
    on_step: Callable[[dict[str, Any]], None], seen: dict[str, Any]
) -> Callable[[dict[str, Any]], None]:
    """``on_step`` that also keeps the root's ``run_end`` record (its usage) in ``seen``."""

    def record(step: dict[str, Any]) -> None:
        if step.get("kind") == "run_end" and step.get("path") in (None, "root"):
            seen["run_end"] = step
        on_step(step)

    return record


def run(args: argparse.Namespace) -> int:
    """Run ``ask``: 0 when the model answered, 1 when it did not (errors raise).

    With ``--json`` an error also prints its JSON object on stdout before it
    propagates (the caller prints the one stderr line and picks the exit code).
    """
    seen: dict[str, Any] = {}
    if args.engine == "spark":  # PySpark's pandas-version FutureWarning, for our calls only
        with known_warnings_filtered():
            return _run_reporting(args, seen)
    return _run_reporting(args, seen)


def _run_reporting(args: argparse.Namespace, seen: dict[str, Any]) -> int:
    if not args.json:
        return _run(args, seen)
    try:
        return _run(args, seen)
    except BaseException as exc:
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out = {
            "error": {"kind": error_kind(exc), "message": first},
            "partial": getattr(exc, "partial", None),
            "usage": _usage_of(seen.get("run_end")),
            "trace_path": args.trace,
        }
        print(json.dumps(out, ensure_ascii=False, default=str), flush=True)
        raise


def _run(args: argparse.Namespace, seen: dict[str, Any]) -> int:
    import rlm_pipeline as rp

    for name in ("max_steps", "max_depth"):
        value = getattr(args, name)
        if value < (1 if name == "max_steps" else 0):
            raise InputError(
                f"--{name.replace('_', '-')} must be >= {1 if name == 'max_steps' else 0}"
            )
    if not args.question.strip():
        raise InputError("QUESTION must not be empty")
    retries: dict[str, Any] = {} if args.max_retries is None else {"max_retries": args.max_retries}
    if args.request_timeout is not None:
        retries["timeout_s"] = args.request_timeout
    if (args.price_input is None) != (args.price_output is None):
        raise InputError("give both --price-input and --price-output (USD per 1M tokens)")
    if args.price_input is not None:
        if min(args.price_input, args.price_output) < 0:
            raise InputError("--price-input and --price-output must be >= 0")
        retries["prices"] = {args.model: rp.Price(args.price_input, args.price_output)}
    root = rp.LLM(model=args.model, base_url=args.base_url, **retries)
    sub = (
        rp.LLM(model=args.sub_model, base_url=args.base_url, **retries) if args.sub_model else None
    )
    budget = rp.Budget(max_calls=args.max_calls, max_cost_usd=args.max_cost_usd)
    rlm = rp.RLM(
        root,
        sub=sub,
        engine=args.engine,
        max_steps=args.max_steps,
        max_depth=args.max_depth,
        budget=budget,
        timeout_s=args.timeout,
        max_view_rows=args.max_view_rows,
        tool_timeout_s=args.tool_timeout,
        spark=spark_session(args.engine),
        protocol=args.protocol,
    )
    steps_to = sys.stderr if args.json else sys.stdout
    res = rlm.run(
        args.question,
        args.input,
        text_column=args.text_column,
        trace_path=args.trace,
        on_step=_recording(step_printer(steps_to), seen),
    )
    if args.json:
        out = {
            "answer": res.answer,
            "value": res.value,
            "usage": res.usage.to_dict(),
            "trace_path": res.trace_path,
        }
        if not res.answered:
            message = "the model gave no answer within --max-steps"
            out["error"] = {"kind": "no_answer", "message": message}
        print(json.dumps(out, ensure_ascii=False, default=str))
    else:
        print(f"\nAnswer: {res.answer}")
        if res.explanation:
            print(f"  ({res.explanation})")
        print(f"Usage: {format_usage(res.usage)}; {res.steps} steps, {res.errors} tool errors")
        if res.trace_path:
            print(f"Trace: {res.trace_path} (view with `rlm-pipeline trace show {res.trace_path}`)")
    if not res.answered:
        print("rlm-pipeline: error: the model gave no answer within --max-steps", file=sys.stderr)
        return 1
    return 0
