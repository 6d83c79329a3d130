"""Figures derived from a trace: the cost by model (root vs sub) and the step timeline.

Both are computed from the records alone, so they work on a trace file read
back from disk as well as on ``RLMResult.trace``.

- :func:`cost_by_model`: the root model's share is what its turns spent (the
  ``model`` records at depth 0); the sub model's is the rest of the run's usage
  (classify / llm_map fan-outs, sub-RLM turns, plain calls).  Costs use the
  prices recorded in ``run_start.extra.models`` (none recorded: no cost); when
  the run's total cost is recorded too, it is split between the two in
  proportion to their list-price costs (the total counts prompt-cache discounts
  the records do not break down), so the rows add up to the run's cost.
- :func:`timeline`: one bar per step (model turns and tool calls at every depth),
  placed by ``extra.at`` (seconds from the run's start to the step's end, written
  by the step log) and ``seconds``; older traces without ``at`` are laid out one
  step after another.

Examples
--------
>>> records = [
...     {"run_id": "r", "seq": 0, "depth": 0, "path": "root", "kind": "run_start",
...      "extra": {"question": "q", "models": {"root": {"model": "big", "price": [1.0, 2.0]},
...                                            "sub": {"model": "small", "price": None}}}},
...     {"run_id": "r", "seq": 1, "depth": 0, "path": "root", "kind": "model",
...      "input_tokens": 1000, "output_tokens": 10, "seconds": 0.5, "extra": {"at": 0.5}},
...     {"run_id": "r", "seq": 2, "depth": 0, "path": "root", "kind": "tool", "tool": "classify",
...      "sub_calls": 4, "input_tokens": 800, "output_tokens": 40, "seconds": 1.0,
...      "extra": {"at": 1.5}},
...     {"run_id": "r", "seq": 3, "depth": 0, "path": "root", "kind": "run_end",
...      "extra": {"usage": {"calls": 5, "input_tokens": 1800, "output_tokens": 50}}},
... ]
>>> [(c.role, c.model, c.calls, c.input_tokens) for c in cost_by_model(records)]
[('root', 'big', 1, 1000), ('sub', 'small', 4, 800)]
>>> [(b.label, b.start, b.seconds) for b in timeline(records)]
[('model turn', 0.0, 0.5), ('classify', 0.5, 1.0)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["MAX_TIMELINE_BARS", "ModelCost", "TimelineBar", "cost_by_model", "timeline"]

Record = Mapping[str, Any]

#: Bars drawn on a timeline; later steps are counted, not drawn.
MAX_TIMELINE_BARS: Final = 200


@dataclass(frozen=True)
class ModelCost:
    """What one role (``root`` or ``sub``) of a run spent."""

    role: str
    model: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    #: USD, or None when the model has no recorded price.
    cost_usd: float | None

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class TimelineBar:
    """One step on the timeline: seconds from the run's start, and its length."""

    seq: int
    depth: int
    path: str
    kind: str
    label: str
    start: float
    seconds: float
    tokens: int
    failed: bool


def cost_by_model(records: Iterable[Record]) -> list[ModelCost]:
    """Calls, tokens and cost of the root model and of the sub model in one run's records.

    The root row counts the root turns (``model`` records at depth 0); the sub
    row is the run's usage (``run_end.extra.usage``, else the records' sums)
    less the root's.  A role appears only when it spent something or has a
    recorded model.
    """
    rows = list(records)
    start = next((r for r in rows if r.get("kind") == "run_start" and _int(r.get("depth")) == 0),
                 None)
    end = next((r for r in reversed(rows) if r.get("kind") == "run_end"
                and _int(r.get("depth")) == 0), None)
    models = ((start or {}).get("extra") or {}).get("models") or {}
    root_turns = [r for r in rows if r.get("kind") == "model" and _int(r.get("depth")) == 0]
    root_in = sum(_int(r.get("input_tokens")) for r in root_turns)
    root_out = sum(_int(r.get("output_tokens")) for r in root_turns)
    root_calls = sum(1 for r in root_turns if _int(r.get("input_tokens")) or
                     _int(r.get("output_tokens")))
    usage = ((end or {}).get("extra") or {}).get("usage")
    if isinstance(usage, Mapping):
        total_calls = _int(usage.get("calls"))
        total_in, total_out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    else:
        counted = [r for r in rows if r.get("kind") != "run_end"]
        total_in = sum(_int(r.get("input_tokens")) for r in counted if _int(r.get("depth")) == 0)
        total_out = sum(_int(r.get("output_tokens")) for r in counted if _int(r.get("depth")) == 0)
        total_calls = root_calls + sum(
            _int(r.get("sub_calls")) for r in counted if _int(r.get("depth")) == 0
        )
    sub_in, sub_out = max(0, total_in - root_in), max(0, total_out - root_out)
    sub_calls = max(0, total_calls - root_calls)
    out: list[ModelCost] = []
    for role, calls, tokens_in, tokens_out in (
        ("root", root_calls, root_in, root_out),
        ("sub", sub_calls, sub_in, sub_out),
    ):
        info = models.get(role) if isinstance(models, Mapping) else None
        model = str(info.get("model")) if isinstance(info, Mapping) and info.get("model") else None
        if not (calls or tokens_in or tokens_out or model):
            continue
        price = info.get("price") if isinstance(info, Mapping) else None
        cost = None
        if isinstance(price, Sequence) and len(price) == 2 and all(_is_num(p) for p in price):
            cost = (tokens_in * float(price[0]) + tokens_out * float(price[1])) / 1e6
        out.append(ModelCost(role, model, calls, tokens_in, tokens_out, cost))
    total_cost = usage.get("cost_usd") if isinstance(usage, Mapping) else None
    listed = [c.cost_usd for c in out]
    if isinstance(total_cost, int | float) and listed and all(c is not None for c in listed):
        whole = sum(c or 0.0 for c in listed)
        if whole > 0:
            scale = float(total_cost) / whole
            out = [
                ModelCost(c.role, c.model, c.calls, c.input_tokens, c.output_tokens,
                          (c.cost_usd or 0.0) * scale)
                for c in out
            ]
    return out


def timeline(records: Iterable[Record]) -> list[TimelineBar]:
    """One bar per model turn and tool call of a run, in the order they started.

    At most :data:`MAX_TIMELINE_BARS` bars (the earliest).
    """
    rows = sorted((r for r in records if r.get("kind") in ("model", "tool", "answer", "error")),
                  key=lambda r: _int(r.get("seq")))
    bars: list[TimelineBar] = []
    clock: dict[str, float] = {}  # per path, for traces without `at`
    for record in rows:
        seconds = _num(record.get("seconds"))
        at = (record.get("extra") or {}).get("at")
        path = str(record.get("path") or "root")
        if isinstance(at, int | float) and not isinstance(at, bool):
            start = max(0.0, float(at) - seconds)
        else:
            parent = path.rsplit("/", 1)[0] if "/" in path else path
            start = clock.get(path, clock.get(parent, 0.0))
            clock[path] = start + seconds
        if record.get("kind") in ("error", "answer") and seconds == 0:
            continue  # not a span of work
        bars.append(
            TimelineBar(
                seq=_int(record.get("seq")),
                depth=_int(record.get("depth")),
                path=path,
                kind=str(record.get("kind")),
                label=_label(record),
                start=round(start, 4),
                seconds=seconds,
                tokens=_int(record.get("input_tokens")) + _int(record.get("output_tokens")),
                failed=bool(record.get("error")),
            )
        )
    bars.sort(key=lambda b: (b.start, b.seq))
    return bars[:MAX_TIMELINE_BARS]


def _label(record: Record) -> str:
    if record.get("kind") == "model":
        return "model turn"
    return str(record.get("tool") or record.get("kind"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any) -> float:
    return float(value) if _is_num(value) and value >= 0 else 0.0
