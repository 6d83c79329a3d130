"""``rlm-pipeline sim-server``: serve the OpenAI-compatible simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rlm_pipeline.errors import InputError

__all__ = ["add_parser", "run"]

_RATE_FLAGS = (
    ("fault_429", "share of requests answered 429 with a short Retry-After"),
    ("fault_500", "share of requests answered 500"),
    ("fault_timeout", "share of requests answered only after --timeout-delay-s"),
    ("fault_malformed", "share of structured replies with broken JSON"),
    ("fault_wrong_ids", "share of batch replies with a dropped, duplicated or unknown row id"),
)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if not 0.0 <= value <= 1.0:
        msg = f"a rate must be between 0 and 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``sim-server`` sub-command."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim-server",
        help="serve the OpenAI-compatible simulator (a deterministic fake model) over HTTP",
        description=(
            "Serve rlm_pipeline's OpenAI-compatible SIMULATOR: a keyword classifier and a "
            "scripted planner behind /v1/chat/completions. It is not a language model; use it "
            "for tests, benchmarks and offline demos."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="time per request")
    parser.add_argument(
        "--max-concurrency", type=int, default=64, help="requests answered at once; more queue"
    )
    for name, text in _RATE_FLAGS:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=_rate, default=0.0, metavar="RATE", help=text)
    parser.add_argument(
        "--timeout-delay-s", type=float, default=5.0, help="delay of a --fault-timeout reply"
    )
    parser.add_argument(
        "--structured-mode",
        choices=("json_schema", "json_object", "text"),
        default="json_schema",
        help="mimic OpenAI/vLLM (json_schema), llama.cpp (json_object) or a "
        "server without response_format (text)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault sequence")
    parser.add_argument(
        "--require-api-key",
        default=None,
        metavar="KEY",
        help="answer 401 unless the bearer token is KEY",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (exposes the simulator on the network)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code."""
    from rlm_pipeline.sim.config import SimConfig
    from rlm_pipeline.sim.server import is_loopback, serve

    if not args.allow_remote and not is_loopback(args.host):
        msg = f"--host {args.host} is not a loopback address; add --allow-remote to serve on it"
        raise InputError(msg)
    config = SimConfig(
        latency_ms=args.latency_ms,
        max_concurrency=args.max_concurrency,
        fault_429=args.fault_429,
        fault_500=args.fault_500,
        fault_timeout=args.fault_timeout,
        timeout_delay_s=args.timeout_delay_s,
        fault_malformed=args.fault_malformed,
        fault_wrong_ids=args.fault_wrong_ids,
        structured_mode=args.structured_mode,
        seed=args.seed,
        require_api_key=args.require_api_key,
    )

    def ready(base_url: str) -> None:
        print(f"rlm_pipeline simulator (not a real model) serving {base_url}", flush=True)
        print(f"  stats: {base_url[: -len('/v1')]}/stats   stop: Ctrl-C", flush=True)
        if not is_loopback(args.host):
            print("  warning: listening on a non-loopback address", file=sys.stderr, flush=True)

    try:
        serve(config, args.host, args.port, allow_remote=args.allow_remote, ready=ready)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; stopping is normal
        pass
    print("simulator stopped", flush=True)
    return 0
