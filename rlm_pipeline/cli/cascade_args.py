"""The ``--cascade-*`` flags of ``rlm-pipeline classify`` and ``filter``.

``--cascade-model M`` makes the run a cascade (:class:`~rlm_pipeline.ops.cascade.Cascade`):
model ``M`` (the proxy) answers every row first with a confidence, a random
calibration sample is also answered by ``--model`` (the oracle), and only rows
below the calibrated confidence threshold go to the oracle.  The proxy has the
oracle's endpoint unless ``--cascade-base-url`` names another, and the same
``--concurrency``, ``--rpm``, ``--tpm``, ``--max-retries`` and cache file
(answers are stored per model, never shared between the two).  The other
flags set the :class:`~rlm_pipeline.ops.cascade.Cascade` fields:
``--cascade-target`` (0.95), ``--cascade-sample`` (200), ``--cascade-delta``
(0.05) and ``--cascade-confidence`` (``auto``, ``logprobs`` or ``verbal``).
``classify`` and ``filter`` on Polars stream the cascade (both passes through scratch
Parquet files next to ``--output``; its peak memory: docs/cascades.md).

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_cascade_arguments(p)
>>> args = p.parse_args(["--cascade-model", "gpt-4.1-nano", "--cascade-target", "0.9"])
>>> from rlm_pipeline.llm.config import LLM
>>> c = cascade_from_args(args, LLM(model="gpt-4.1"))
>>> c.proxy.model, c.target, c.sample
('gpt-4.1-nano', 0.9, 200)
>>> cascade_from_args(p.parse_args([]), LLM()) is None
True
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from rlm_pipeline.errors import InputError

__all__ = [
    "add_cascade_arguments",
    "cascade_columns",
    "cascade_from_args",
    "print_cascade_estimate",
]

_DEPENDENT = (
    "cascade_base_url",
    "cascade_target",
    "cascade_sample",
    "cascade_delta",
    "cascade_confidence",
    "cascade_price_input",
    "cascade_price_output",
)


def add_cascade_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``--cascade-*`` flags (see the module docstring)."""
    from rlm_pipeline.ops.cascade import CONFIDENCE_SOURCES

    g = p.add_argument_group(
        "cascade",
        "a cheap proxy model first, only its uncertain rows to --model (docs/cascades.md); "
        "classify and filter on Polars stream it (scratch Parquet files next to --output)",
    )
    g.add_argument("--cascade-model", default=None, metavar="M", help="the proxy model")
    g.add_argument(
        "--cascade-base-url",
        default=None,
        metavar="URL",
        help="the proxy's endpoint (default: --base-url)",
    )
    g.add_argument(
        "--cascade-target",
        type=float,
        default=None,
        metavar="T",
        help="agreement with --model the proxy's kept rows must reach (default 0.95)",
    )
    g.add_argument(
        "--cascade-sample",
        type=int,
        default=None,
        metavar="N",
        help="distinct texts answered by both models to set the threshold (default 200)",
    )
    g.add_argument(
        "--cascade-delta",
        type=float,
        default=None,
        metavar="D",
        help="allowed probability that the threshold misses the target (default 0.05)",
    )
    g.add_argument(
        "--cascade-confidence",
        choices=CONFIDENCE_SOURCES,
        default=None,
        help="proxy confidence: token log-probabilities, a stated number, or auto (default)",
    )
    g.add_argument(
        "--cascade-price-input",
        type=float,
        default=None,
        metavar="USD",
        help="proxy's USD per 1M input tokens",
    )
    g.add_argument(
        "--cascade-price-output",
        type=float,
        default=None,
        metavar="USD",
        help="proxy's USD per 1M output tokens",
    )


def cascade_from_args(args: argparse.Namespace, llm: Any) -> Any:
    """The :class:`~rlm_pipeline.ops.cascade.Cascade` the flags ask for (None without ``--cascade-model``).

    ``llm`` is the oracle (``--model``): the proxy copies its limits, retries
    and cache file.  Bad values are refused with one line naming the flag.
    """
    from rlm_pipeline.llm.config import LLM, Price
    from rlm_pipeline.ops.cascade import Cascade

    model = getattr(args, "cascade_model", None)
    if not model:
        given = [name for name in _DEPENDENT if getattr(args, name, None) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise InputError(f"{flag} needs --cascade-model (the proxy model)")
        return None
    target = 0.95 if args.cascade_target is None else args.cascade_target
    delta = 0.05 if args.cascade_delta is None else args.cascade_delta
    sample = 200 if args.cascade_sample is None else args.cascade_sample
    for flag, value in (("--cascade-target", target), ("--cascade-delta", delta)):
        if not 0 < value < 1:
            raise InputError(f"{flag} must be between 0 and 1 (exclusive), got {value:g}")
    if sample < 1:
        raise InputError(f"--cascade-sample must be >= 1, got {sample}")
    if not isinstance(llm, LLM):  # pragma: no cover - the commands always pass an LLM
        raise InputError("the oracle must be an rlm_pipeline.LLM")
    prices = (args.cascade_price_input, args.cascade_price_output)
    priced: dict[str, Any] = dict(llm.prices)
    if prices != (None, None):
        if None in prices:
            raise InputError(
                "give both --cascade-price-input and --cascade-price-output (USD per 1M tokens)"
            )
        if min(p for p in prices if p is not None) < 0:
            raise InputError("--cascade-price-input and --cascade-price-output must be >= 0")
        priced[model] = Price(float(args.cascade_price_input), float(args.cascade_price_output))
    proxy = dataclasses.replace(
        llm,
        model=model,
        base_url=args.cascade_base_url if args.cascade_base_url else llm.base_url,
        prices=priced,
    )
    return Cascade(
        proxy=proxy,
        target=target,
        sample=sample,
        confidence=args.cascade_confidence or "auto",
        delta=delta,
    )


def check_cascade_budget(cascade: Any, budget: Any) -> None:
    """``--max-cost-usd`` with a cascade needs a price for the proxy too (it holds for both)."""
    if cascade is None or budget is None or budget.max_cost_usd is None:
        return
    if not cascade.proxy.has_price():
        msg = (
            f"no price for the proxy model {cascade.proxy.model}: pass --cascade-price-input/"
            "--cascade-price-output (USD per 1M tokens) to use --max-cost-usd"
        )
        raise InputError(msg)


def cascade_columns(spec: Any) -> list[str]:
    """The two columns a cascade adds: ``<output>_source`` and ``<output>_confidence``."""
    return [f"{spec.output_column}_source", f"{spec.output_column}_confidence"]


def print_cascade_estimate(engine: Any, spec: Any, llm: Any, cascade: Any) -> None:
    """What a cascade would send: the proxy's pass exactly, the oracle's as a range.

    The proxy answers every row; the oracle answers the calibration sample for
    sure and the escalated rows, whose number is known only after the sample
    is answered: from none (every kept row's confidence above the threshold)
    to every row (no threshold reaches the target).
    """
    from rlm_pipeline.engines.views import CONTEXT_VIEW
    from rlm_pipeline.ops.estimate import estimate_texts

    texts = engine.column_texts(engine.frame(CONTEXT_VIEW), spec.column)
    proxy = estimate_texts(texts, spec, cascade.proxy)
    oracle = estimate_texts(texts, spec, llm)
    distinct = max(oracle.distinct_texts, 1)
    share = min(cascade.sample, oracle.distinct_texts) / distinct
    print(
        f"cascade: {cascade.proxy.model} (proxy) answers every row, {llm.model} (oracle) the "
        f"calibration sample ({min(cascade.sample, oracle.distinct_texts):,} texts) and the "
        "escalated rows"
    )
    print(f"rows            {proxy.rows:>12,}")
    print(f"distinct texts  {proxy.distinct_texts:>12,}")
    print(f"proxy calls     {proxy.calls:>12,}   ({proxy.cached:,} texts cached)")
    print(f"proxy tokens    {proxy.input_tokens:>12,} in + {proxy.output_tokens:,} out")
    lo_calls = round(oracle.calls * share)
    print(f"oracle calls    {lo_calls:>12,} to {oracle.calls:,}   (sample only .. every row)")
    if proxy.cost_usd is not None and oracle.cost_usd is not None:
        low = proxy.cost_usd + oracle.cost_usd * share
        high = proxy.cost_usd + oracle.cost_usd
        print(
            f"cost (USD)      {low:>12.4f} to {high:.4f}   (oracle alone: {oracle.cost_usd:.4f}; "
            "no model was called)"
        )
    else:
        missing = [
            m.model for m, e in ((cascade.proxy, proxy), (llm, oracle)) if e.cost_usd is None
        ]
        print(
            f"cost: unknown (no price for {', '.join(missing)}; pass --price-input/--price-output "
            "and --cascade-price-input/--cascade-price-output)"
        )
    print("the escalated share is known only after the run: it depends on the proxy's confidences")
