"""The simulator, taught LOTUS's prompt shapes, for bench/operators_vs_lotus.py.

``rlm-pipeline sim-server`` answers a request it cannot place (no JSON
schema, no label list) through its planner's ``respond_plain``, which writes
free text (usually a count such as ``"0"``).  LOTUS's ``sem_filter``,
``sem_extract``, ``sem_topk``, ``sem_agg`` and ``sem_join`` send exactly such
requests, so against the stock simulator every LOTUS answer fails LOTUS's own
parse (filter and join default to True, extract to ``{}``).

This module is a planner module for the simulator: ``respond`` is the stock
planner's, ``respond_plain`` first recognises the five LOTUS prompt shapes and
answers them from **the simulator's own keyword model** — the functions that
answer our operators' structured calls (:func:`~rlm_pipeline.sim.mapper.condition_holds`,
:func:`~rlm_pipeline.sim.mapper.extract_value`,
:func:`~rlm_pipeline.sim.folds.score_value`, :func:`~rlm_pipeline.sim.folds.pair_match`,
the label counts of :func:`~rlm_pipeline.sim.folds.summary_text`) — in the
reply format LOTUS's system prompt asks for (``Answer: True``, a JSON object,
``Document 1``, a summary).  Anything else goes to the stock planner.  So both
systems get the same answers per row, and LOTUS's parse succeeds when its
prompt is answered as its prompt says.

Nothing else differs from ``rlm-pipeline sim-server``: the same app, latency,
slots, token counters (``/stats``) and uvicorn server; only the planner module
the app imports is this one.  Run with the main venv (loopback only)::

    .venv/bin/python bench/peers/lotus_sim.py --port 8123 --latency-ms 200 --max-concurrency 64
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

from rlm_pipeline.sim import planner as _stock
from rlm_pipeline.sim.classifier import intended_label
from rlm_pipeline.sim.folds import (
    SUMMARY_LABELS,
    pair_match,
    parse_summary,
    score_value,
    summary_text,
)
from rlm_pipeline.sim.mapper import condition_holds, extract_value
from rlm_pipeline.sim.wire import message_text

__all__ = ["lotus_answer", "respond", "respond_plain"]

#: The stock planner answers the root role; only plain calls are intercepted.
respond = _stock.respond

_FIELD = re.compile(r"\[([^\]\n]+)\]: «(.*?)»", re.DOTALL)
_CLAIM = re.compile(r"\n\nClaim: (.*)\Z", re.DOTALL)
_DOC = re.compile(r"\nDocument ([12]):\n(.*?)(?=\nDocument [12]:\n|\Z)", re.DOTALL)
_LEAF_DOC = re.compile(r"\n\tDocument \d+: ")
_NODE_DOC = re.compile(r"\n\tSource \d+: ")
_AS_KIND = re.compile(r"\bas an? (number|integer|string|date|boolean)\b")
_ENUM = re.compile(r":\s*([\w-]+(?:\s*,\s*[\w-]+)*\s+or\s+[\w-]+)\s*$")
_BRACED = re.compile(r"\{[^{}]*\}")
#: Question words of a top-k instruction ("Which X is most about ...?"), not the criterion.
_QUESTION_WORDS = re.compile(r"\b(?:which|about|most|best|least)\b|\?", re.IGNORECASE)


def _messages(body: dict[str, Any]) -> tuple[str, str]:
    system = user = ""
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "system":
            system = message_text(message)
        elif message.get("role") == "user":
            user = message_text(message)
    return system, user


def _without_columns(phrase: str, names: list[str]) -> str:
    """``phrase`` without LOTUS's column references (``Question``, ``{f:right}``)."""
    phrase = _BRACED.sub(" ", phrase)
    for name in names:
        base = name.split(":")[0]
        phrase = re.sub(rf"\b{re.escape(base)}\b", " ", phrase, flags=re.IGNORECASE)
    return " ".join(phrase.split())


def _field_kind(description: str) -> str | list[str]:
    """A field's type as its LOTUS description states it ("..., as a number"; "...: a, b or c")."""
    enum = _ENUM.search(description)
    if enum:
        return [v.strip() for v in re.split(r"\s*,\s*|\s+or\s+", enum.group(1)) if v.strip()]
    kind = _AS_KIND.search(description)
    return kind.group(1) if kind else "string"


def _filter_answer(user: str) -> str | None:
    claim = _CLAIM.search(user)
    fields = _FIELD.findall(user)
    if claim is None or not fields:
        return None
    names = [name for name, _ in fields]
    left = [text for name, text in fields if name.endswith(":left")]
    right = [text for name, text in fields if name.endswith(":right")]
    if left and right:  # sem_join: one left and one right row per call
        held = pair_match(left[0], right[0])
    else:
        text = "\n".join(text for _, text in fields)
        held = condition_holds(text, _without_columns(claim.group(1), names))
    return f"Answer: {held}"


def _extract_answer(system: str, user: str) -> str | None:
    start = system.find("Here is a description of each field: ")
    end = system.find("\nThe response should be valid JSON", start)
    if start < 0 or end < 0:
        return None
    try:
        described = ast.literal_eval(system[start + len("Here is a description of each field: ") : end])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(described, dict):
        return None
    text = "\n".join(t for _, t in _FIELD.findall(user))
    value = {str(name): extract_value(text, str(name), _field_kind(str(desc))) for name, desc in described.items()}
    return json.dumps(value)


def _topk_answer(user: str) -> str | None:
    question = re.search(r"Question: (.*?)\n", user)
    docs = dict(_DOC.findall(user))
    if question is None or set(docs) != {"1", "2"}:
        return None
    fields = [name for name, _ in _FIELD.findall(user)]
    criterion = " ".join(_QUESTION_WORDS.sub(" ", _without_columns(question.group(1), fields)).split())
    first = "\n".join(t for _, t in _FIELD.findall(docs["1"]))
    second = "\n".join(t for _, t in _FIELD.findall(docs["2"]))
    return "Document 1" if score_value(first, criterion) >= score_value(second, criterion) else "Document 2"


def _agg_answer(user: str) -> str | None:
    """A leaf counts its documents' labels; a node adds up its sources' counts."""
    body = user.partition("---\n\nContext: ")[2].rpartition("\n\nInstruction: ")[0]
    if not body:
        return None
    counts = dict.fromkeys(SUMMARY_LABELS, 0)
    if "from multiple documents" in user:
        for doc in _LEAF_DOC.split(body)[1:]:
            text = "\n".join(t for _, t in _FIELD.findall(doc)) or doc
            counts[intended_label(text, SUMMARY_LABELS)] += 1
    elif "from multiple sources" in user:
        for part in _NODE_DOC.split(body)[1:]:
            for label, count in parse_summary(part, SUMMARY_LABELS).items():
                counts[label] += count
    else:
        return None
    return summary_text(counts, SUMMARY_LABELS)


def lotus_answer(body: dict[str, Any]) -> str | None:
    """The simulator's answer to one LOTUS request, or None when it is not a LOTUS shape.

    Examples
    --------
    >>> sys_msg = {"role": "system", "content": "... determine whether the claim is true ..."}
    >>> user = {"role": "user", "content": "Context:\\n[Question]: «Please refund $5»\\n\\n\\nClaim: Question asks for a refund"}
    >>> lotus_answer({"messages": [sys_msg, user]})
    'Answer: True'
    """
    system, user = _messages(body)
    if "determine whether the claim is true" in system:
        return _filter_answer(user)
    if system.startswith("The user will provide the columns that need to be extracted"):
        return _extract_answer(system, user)
    if "select and return the most relevant document" in system:
        return _topk_answer(user)
    if user.startswith("Your job is to provide an answer to the user's instruction given the context"):
        return _agg_answer(user)
    return None


def respond_plain(body: dict[str, Any]) -> str:
    """A LOTUS-shaped request answered by :func:`lotus_answer`; anything else by the stock planner."""
    answer = lotus_answer(body)
    return answer if answer is not None else _stock.respond_plain(body)


def main() -> int:
    from rlm_pipeline.sim import app as sim_app
    from rlm_pipeline.sim.config import SimConfig
    from rlm_pipeline.sim.server import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--max-concurrency", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    # The app imports its planner module by this name on first use (SimState.planner).
    sim_app._PLANNER_MODULE = "lotus_sim"  # type: ignore[attr-defined]  # noqa: SLF001
    config = SimConfig(latency_ms=args.latency_ms, max_concurrency=args.max_concurrency)
    serve(config, "127.0.0.1", args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
