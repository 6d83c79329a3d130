"""OOLONG-style accuracy benchmark on synthetic data: ``rp.RLM`` vs one long-context call.

OOLONG (the long-context aggregation benchmark of the RLM paper) gives a model
thousands of lines such as ``Date: Dec 12, 2022 || User: 63685 || Instance:
<text>`` whose labels are hidden, and asks questions that need every line
classified: counting, per-user and timeline questions.  The real set is not
reachable offline, so this harness rebuilds it on synthetic support tickets:

* hidden topics (billing, technical, account, other), with a topic mix that
  changes from month to month ("per-window label mix");
* skewed users: 80% of the lines come from 20% of the users;
* question templates for counting (how many about X; most / least common
  topic; is X more / less / as common as Y), users (which user has most X;
  among users a, b, c how many X) and timeline (how many X in a month or a date
  range);
* scoring as the paper's harness: numeric answers score ``0.75 ** |gold - pred|``,
  all others exact match.

Both methods answer the same questions over the same table:

* ``rlm``: :class:`rlm_pipeline.RLM` over the table (columns ``date``,
  ``user_id``, ``text``); the root model never sees the rows.
* ``baseline``: the whole table as text in one prompt (the OOLONG lines), cut
  to the model's context window (``--context-window``), then the question.

At each context size (2^13 ... 2^20 tokens, rows chosen to hit the size) it
reports per method: score, calls, total tokens, largest prompt and cost.

Without ``--base-url`` the model is **rlm_pipeline's offline simulator**
(:class:`rlm_pipeline.sim.SimServer` on 127.0.0.1: a keyword classifier and a
rule-based planner, not a language model); the output says so.  With
``--base-url`` / ``--model`` (and ``OPENAI_API_KEY``) the same run measures a
real OpenAI-compatible endpoint.

Per size, each method answers all its questions before the next starts (a
local server reuses the table's prompt prefix across the baseline's
questions); the JSON report is rewritten after every question and
``--resume`` keeps the finished runs of ``--out``, so a long real-model run
can go on in the background and be restarted.  The report has, per size and
method, score, calls, input / output tokens, largest prompt, seconds, the RLM's
root protocol per turn and the scores per question family.

Usage::

    python bench/oolong_synth.py                      # simulator, sizes 2^13..2^20
    python bench/oolong_synth.py --sizes 13,14 --questions-per-size 4
    python bench/oolong_synth.py --base-url http://127.0.0.1:8000/v1 --model my-model \\
        --context-window 32768 --out bench/results/oolong_my_model.json

    # the real local model (bench/real_model.py up prints the URL); see bench/README.md.
    # Each method on its own server (a server keeps one table's prefix), then merged:
    python bench/oolong_synth.py --base-url "$URL1" --model qwen-0.5b --methods baseline \\
        --sizes 1024,4096,15360 --questions-per-size 10 --context-window 16384 \\
        --token-scale 1.35 --request-timeout 1200 --out base.json --resume
    python bench/oolong_synth.py --base-url "$URL2" --model qwen-0.5b --methods rlm \\
        --sizes 1024,4096,15360 --questions-per-size 10 --token-scale 1.35 --order question \\
        --protocol auto --max-steps 8 --rlm-timeout 900 --tpm 1e9 --root-max-tokens 200 \\
        --sub-batch-size 1 --cache sub.sqlite --seed-question 5000 \\
        --traces traces/ --out rlm.json --resume
    python bench/oolong_synth.py --base-url "$URL3" --model qwen-0.5b --seed-question 5000 \\
        --seed-only --tpm 1e9 --out seed.json
    python bench/oolong_synth.py --merge base.json rlm.json seed.json \\
        --out bench/results/oolong_synth_real.json --plot bench/results/oolong_synth_real.png \\
        --plot-with simulated=bench/results/oolong_synth.json
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import datetime as dt
import itertools
import json
import logging
import math
import os
import re
import string
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rlm_pipeline.datasets.templates import FILLERS, GREETINGS, SIGNOFFS, TEMPLATES
from rlm_pipeline.errors import RLMPipelineError
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.tokens import estimate_tokens

__all__ = [
    "TOPICS",
    "Dataset",
    "MethodRun",
    "Question",
    "make_dataset",
    "make_questions",
    "main",
    "parse_prediction",
    "run_bench",
    "same_questions",
    "score",
]

logger = logging.getLogger("oolong_synth")

TOPICS: tuple[str, ...] = ("billing", "technical", "account", "other")
DEFAULT_SIZES: tuple[int, ...] = tuple(range(13, 21))
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "oolong_synth.json"
DEFAULT_CONTEXT_WINDOW = 128_000
DEFAULT_MODEL = "gpt-4.1-mini"
COMPARISONS = ("more common than", "less common than", "same frequency as")

_BASE_MIX = np.array([0.30, 0.35, 0.20, 0.15])
_MIX_CONCENTRATION = 12.0  # lower = month-to-month topic mix varies more
_FIRST_DAY = dt.date(2022, 1, 1)
_DAYS = 730  # two years
_REPLY_TOKENS = 256
_PROMPT_MARGIN_TOKENS = 512


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """One synthetic OOLONG-style context.

    ``table`` is what the methods see (``date``, ``user_id``, ``text``);
    ``labels`` is the hidden topic of each row, for gold answers only.
    """

    table: pl.DataFrame
    labels: tuple[str, ...]
    lines: tuple[str, ...]
    tokens: int
    heavy_users: tuple[int, ...]

    @property
    def rows(self) -> int:
        """Number of rows (lines)."""
        return self.table.height

    def with_labels(self) -> pl.DataFrame:
        """The table plus its hidden ``topic`` column."""
        return self.table.with_columns(pl.Series("topic", self.labels, dtype=pl.String))


def oolong_line(date: dt.date, user_id: int, text: str) -> str:
    """One context line in OOLONG's format.

    Examples
    --------
    >>> oolong_line(dt.date(2022, 12, 12), 63685, "Where is my invoice?")
    'Date: Dec 12, 2022 || User: 63685 || Instance: Where is my invoice?'
    """
    return f"Date: {_fmt_date(date)} || User: {user_id} || Instance: {text}"


def _fmt_date(day: dt.date) -> str:
    return f"{calendar.month_abbr[day.month]} {day.day}, {day.year}"


def _bodies() -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {}
    for topic in TOPICS:
        texts: list[str] = []
        for template in TEMPLATES[topic]:
            slots = [name for _, name, _, _ in string.Formatter().parse(template) if name]
            combos = itertools.product(*(FILLERS[s] for s in slots)) if slots else [()]
            for combo in itertools.islice(combos, 40):
                text = template.format(**dict(zip(slots, combo, strict=True)))
                texts.append(text[:1].upper() + text[1:])
        pools[topic] = texts
    return pools


def make_dataset(target_tokens: int, seed: int = 0) -> Dataset:
    """A table whose OOLONG rendering has about ``target_tokens`` tokens (never more).

    Rows are dated over two years in order; each month draws its own topic mix;
    80% of rows come from 20% of the users.

    Examples
    --------
    >>> ds = make_dataset(2000, seed=1)
    >>> ds.tokens <= 2000 and ds.table.columns == ["date", "user_id", "text"]
    True
    """
    rng = np.random.default_rng(seed)
    pools = _bodies()
    sample_line = oolong_line(_FIRST_DAY, 10000, pools["billing"][0] + " Thanks!")
    n = max(8, int(target_tokens / max(1, estimate_tokens(sample_line + "\n")) * 1.3) + 8)

    days = np.sort(rng.integers(0, _DAYS, size=n))
    months = days // 31  # ~monthly windows, stable and cheap
    mixes = rng.dirichlet(_BASE_MIX * _MIX_CONCENTRATION, size=int(months.max()) + 1)
    cumulative = mixes.cumsum(axis=1)
    draws = rng.random(n)
    topic_idx = (draws[:, None] > cumulative[months]).sum(axis=1).clip(0, len(TOPICS) - 1)

    greet = rng.integers(0, len(GREETINGS), size=n)
    sign = rng.integers(0, len(SIGNOFFS), size=n)
    body_pick = rng.random(n)
    dates: list[dt.date] = []
    texts: list[str] = []
    labels: list[str] = []
    lines: list[str] = []
    total = 0
    for i in range(n):
        topic = TOPICS[int(topic_idx[i])]
        pool = pools[topic]
        text = GREETINGS[greet[i]] + pool[int(body_pick[i] * len(pool))] + SIGNOFFS[sign[i]]
        day = _FIRST_DAY + dt.timedelta(days=int(days[i]))
        line = oolong_line(day, 10_000, text)  # same width as the real 5-digit id
        cost = estimate_tokens(line + "\n")
        if total + cost > target_tokens:
            break
        total += cost
        dates.append(day)
        texts.append(text)
        labels.append(topic)
        lines.append(line)
    rows = len(lines)
    users, heavy_ids = _skewed_users(rng, rows)
    for i in range(rows):
        lines[i] = oolong_line(dates[i], int(users[i]), texts[i])
    table = pl.DataFrame(
        {"date": dates, "user_id": users.astype(np.int64), "text": texts},
        schema={"date": pl.Date, "user_id": pl.Int64, "text": pl.String},
    )
    return Dataset(
        table=table,
        labels=tuple(labels),
        lines=tuple(lines),
        tokens=total,
        heavy_users=heavy_ids,
    )


def _skewed_users(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """User ids for ``rows`` lines: 80% of lines from 20% of the users, every user present."""
    n_users = max(5, rows // 10)
    n_heavy = max(1, n_users // 5)
    ids = rng.choice(np.arange(10_000, 100_000), size=n_users, replace=False)
    heavy, light = ids[:n_heavy], ids[n_heavy:]
    if rows < n_users:
        return rng.choice(ids, size=rows), tuple(int(u) for u in heavy)
    light_lines = min(max(len(light), round(0.2 * rows)), rows - len(heavy))
    slots = rng.permutation(rows)
    users = np.empty(rows, dtype=np.int64)
    for group, where in ((light, slots[:light_lines]), (heavy, slots[light_lines:])):
        # every user of the group once, the rest drawn at random, in random order
        extra = rng.choice(group, size=len(where) - len(group))
        users[where] = rng.permutation(np.concatenate([group, extra]))
    return users, tuple(int(u) for u in heavy)


# ----------------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    """One question with its gold answer.

    ``kind`` is ``"number"`` (scored ``0.75 ** |gold - pred|``), ``"topic"``,
    ``"comparison"`` or ``"user"`` (exact match).
    """

    family: str
    template: str
    text: str
    gold: int | str
    kind: str


def _topic_phrase() -> str:
    return "Each instance is about one topic: billing, technical, account or other."


def make_questions(ds: Dataset, n: int, seed: int = 0) -> list[Question]:
    """``n`` questions over ``ds``, cycling through the templates in a seeded order.

    Questions whose gold answer would be ambiguous (a tie) are skipped.
    """
    rng = np.random.default_rng(seed + 7919)
    frame = ds.with_labels()
    counts = {t: 0 for t in TOPICS} | dict(
        frame.group_by("topic").len().iter_rows()  # type: ignore[arg-type]
    )
    makers: list[Callable[[], Question | None]] = [
        lambda: _q_count(rng, counts),
        lambda: _q_users_among(rng, frame, ds),
        lambda: _q_month(rng, frame),
        lambda: _q_most_least(rng, counts),
        lambda: _q_user_most(rng, frame),
        lambda: _q_range(rng, frame),
        lambda: _q_compare(rng, counts),
    ]
    questions: list[Question] = []
    seen: set[str] = set()
    attempts = 0
    while len(questions) < n and attempts < 50 * max(1, n):
        maker = makers[(len(questions) + attempts) % len(makers)]
        attempts += 1
        question = maker()
        if question is None or question.text in seen:
            continue
        seen.add(question.text)
        questions.append(question)
    return questions


def _choice(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def _q_count(rng: np.random.Generator, counts: dict[str, int]) -> Question:
    topic = _choice(rng, TOPICS)
    return Question("counting", "count", f"How many instances are about {topic}?",
                    counts[topic], "number")


def _q_most_least(rng: np.random.Generator, counts: dict[str, int]) -> Question | None:
    most = bool(rng.integers(0, 2))
    ordered = sorted(counts.items(), key=lambda kv: kv[1], reverse=most)
    if ordered[0][1] == ordered[1][1]:
        return None
    word = "most" if most else "least"
    text = f"Which topic is the {word} common among all instances? {_topic_phrase()}"
    return Question("counting", f"{word}_common", text, ordered[0][0], "topic")


def _q_compare(rng: np.random.Generator, counts: dict[str, int]) -> Question:
    a, b = (str(t) for t in rng.choice(TOPICS, size=2, replace=False))
    gold = COMPARISONS[0] if counts[a] > counts[b] else (
        COMPARISONS[1] if counts[a] < counts[b] else COMPARISONS[2])
    text = (f"Are instances about {a} more common than, less common than, or the same "
            f"frequency as instances about {b}? Answer with 'more common than', "
            f"'less common than' or 'same frequency as'.")
    return Question("counting", "compare", text, gold, "comparison")


def _q_user_most(rng: np.random.Generator, frame: pl.DataFrame) -> Question | None:
    topic = _choice(rng, TOPICS)
    per_user = (frame.filter(pl.col("topic") == topic).group_by("user_id").len()
                .sort("len", descending=True))
    if per_user.height == 0 or (per_user.height > 1 and per_user["len"][0] == per_user["len"][1]):
        return None
    text = f"Which user has the most instances about {topic}? Answer with the user id."
    return Question("users", "user_most", text, int(per_user["user_id"][0]), "user")


def _q_users_among(rng: np.random.Generator, frame: pl.DataFrame, ds: Dataset) -> Question:
    topic = _choice(rng, TOPICS)
    present = frame["user_id"].unique().sort().to_list()
    heavy = [u for u in ds.heavy_users if u in set(present)] or present
    chosen = [int(_choice(rng, heavy)), int(_choice(rng, present)), int(_choice(rng, present))]
    users = list(dict.fromkeys(chosen))
    gold = frame.filter(pl.col("user_id").is_in(users) & (pl.col("topic") == topic)).height
    listed = ", ".join(str(u) for u in users[:-1]) + f" and {users[-1]}" if len(users) > 1 \
        else str(users[0])
    text = f"Among users {listed}, how many instances are about {topic}?"
    return Question("users", "users_among", text, gold, "number")


def _q_month(rng: np.random.Generator, frame: pl.DataFrame) -> Question:
    topic = _choice(rng, TOPICS)
    day = _choice(rng, frame["date"].to_list())
    month = frame.filter(
        (pl.col("date").dt.year() == day.year) & (pl.col("date").dt.month() == day.month)
        & (pl.col("topic") == topic)
    ).height
    text = (f"How many instances about {topic} are dated in "
            f"{calendar.month_name[day.month]} {day.year}?")
    return Question("timeline", "month", text, month, "number")


def _q_range(rng: np.random.Generator, frame: pl.DataFrame) -> Question:
    topic = _choice(rng, TOPICS)
    dates = frame["date"].to_list()
    a, b = sorted((_choice(rng, dates), _choice(rng, dates)))
    gold = frame.filter(pl.col("date").is_between(a, b) & (pl.col("topic") == topic)).height
    text = (f"How many instances about {topic} are dated between {_fmt_date(a)} and "
            f"{_fmt_date(b)} (inclusive)?")
    return Question("timeline", "date_range", text, gold, "number")


# ------------------------------------------------------------------------- scoring


_INT = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_prediction(value: Any, kind: str) -> int | str | None:
    """The answer a method gave, normalised for scoring (None if none is found).

    Examples
    --------
    >>> parse_prediction("There are 1,204 such instances.", "number")
    1204
    >>> parse_prediction({"label": "Billing"}, "topic")
    'billing'
    >>> parse_prediction("It is less common than technical", "comparison")
    'less common than'
    """
    if value is None:
        return None
    if kind in ("number", "user"):
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float) and math.isfinite(value):
            return round(value)
        numbers = _numbers_in(value)
        if kind == "user":
            numbers = [n for n in numbers if 10_000 <= n <= 99_999] or numbers
        return numbers[0] if len(numbers) >= 1 else None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    lowered = text.lower()
    if kind == "comparison":
        for phrase, canonical in (("more common", COMPARISONS[0]), ("less common", COMPARISONS[1]),
                                  ("same frequency", COMPARISONS[2]),
                                  ("as common as", COMPARISONS[2]), ("more", COMPARISONS[0]),
                                  ("less", COMPARISONS[1]), ("same", COMPARISONS[2])):
            if phrase in lowered:
                return canonical
        return None
    positions = [(lowered.find(t), t) for t in TOPICS if re.search(rf"\b{t}\b", lowered)]
    return min(positions)[1] if positions else None


def _numbers_in(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers_in(v)]
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [round(value)] if math.isfinite(value) else []
    return [round(float(m.replace(",", ""))) for m in _INT.findall(str(value))]


def score(gold: int | str, pred: int | str | None, kind: str) -> float:
    """OOLONG's score: ``0.75 ** |gold - pred|`` for numbers, exact match otherwise.

    Examples
    --------
    >>> score(10, 12, "number")
    0.5625
    >>> score("billing", "billing", "topic"), score("billing", None, "topic")
    (1.0, 0.0)
    """
    if pred is None:
        return 0.0
    if kind == "number":
        if not isinstance(pred, int) or not isinstance(gold, int):
            return 0.0
        return float(0.75 ** abs(gold - pred))
    return 1.0 if str(pred).strip().lower() == str(gold).strip().lower() else 0.0


# ------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodRun:
    """What one method did on one question."""

    method: str
    prediction: int | str | None
    raw: str
    score: float
    calls: int
    input_tokens: int
    output_tokens: int
    max_prompt_tokens: int
    cost_usd: float
    seconds: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_rlm(question: Question, ds: Dataset, llm: LLM, *, max_steps: int = 20,
            max_depth: int = 1, timeout_s: float = 900.0, sub: LLM | None = None,
            protocol: str | None = None, trace_path: str | None = None,
            root_max_tokens: int | None = None,
            sub_batch_size: int | None = None) -> MethodRun:
    """Answer with :class:`rlm_pipeline.RLM` over the table (root never sees the rows).

    ``sub`` is the sub-model (default: ``llm``; give it a ``cache_path`` so the
    labels of one table are reused across its questions); ``protocol`` is
    passed to ``rp.RLM`` when set, and so is ``root_max_tokens``.
    """
    import rlm_pipeline as rp

    started = time.monotonic()
    options: dict[str, Any] = {} if protocol is None else {"protocol": protocol}
    if root_max_tokens is not None:
        options["root_max_tokens"] = root_max_tokens
    if sub_batch_size is not None:
        options["sub_batch_size"] = sub_batch_size
    rlm = rp.RLM(root=llm, sub=sub or llm, max_steps=max_steps, max_depth=max_depth,
                 timeout_s=timeout_s, **options)
    try:
        res = rlm.run(question.text, ds.table, text_column="text", trace_path=trace_path)
    except RLMPipelineError as exc:
        partial = getattr(exc, "partial", None)
        return MethodRun("rlm", None, "", 0.0, 0, 0, 0, 0, 0.0,
                         round(time.monotonic() - started, 3),
                         error=f"{type(exc).__name__}: {exc}"[:500],
                         extra={"partial": str(partial)[:300] if partial is not None else None})
    pred = parse_prediction(res.value if res.value is not None else res.answer, question.kind)
    usage = res.usage
    root = [r for r in res.trace if r.get("depth") == 0]
    tools = [r.get("tool") for r in root if r.get("kind") == "tool"]
    protocols = [str(r["extra"]["protocol"]) for r in root
                 if r.get("kind") == "model" and (r.get("extra") or {}).get("protocol")]
    return MethodRun(
        "rlm", pred, res.answer[:300], score(question.gold, pred, question.kind), usage.calls,
        usage.input_tokens, usage.output_tokens, usage.max_prompt_tokens, usage.cost_usd,
        round(time.monotonic() - started, 3),
        error=(res.stop_reason if not res.answered else
               None if res.value is not None else f"answered null: {res.explanation or ''}"[:300]),
        extra={"root_steps": res.steps, "tool_errors": res.errors, "tools": tools,
               "tool_error_calls": [r.get("tool") for r in root if r.get("kind") == "error"],
               "protocols": protocols, "cached_calls": usage.cached_calls,
               "trace_path": trace_path},
    )


BASELINE_SYSTEM = (
    "You are given a long list of instances, one per line, then a question about them. "
    "Read every line. Reply with only the answer: a number, a topic, a user id or a "
    "short phrase. No explanation."
)


def baseline_messages(question: Question, ds: Dataset, context_window: int,
                      token_scale: float = 1.0) -> tuple[list[dict[str, str]], int]:
    """The one-prompt baseline's messages and how many lines fit in the context window.

    ``token_scale`` is the model's tokens per estimated token (the estimate is
    4 characters per token; a tokenizer that splits digits counts more).
    """
    head = "Instances:\n"
    tail = f"\n\nQuestion: {question.text}"
    fixed = estimate_tokens(BASELINE_SYSTEM + head + tail) * token_scale + 16
    room = context_window - _REPLY_TOKENS - _PROMPT_MARGIN_TOKENS - fixed
    kept = 0
    used = 0.0
    for line in ds.lines:
        cost = estimate_tokens(line + "\n") * token_scale
        if used + cost > room:
            break
        used += cost
        kept += 1
    user = head + "\n".join(ds.lines[:kept]) + tail
    return ([{"role": "system", "content": BASELINE_SYSTEM},
             {"role": "user", "content": user}], kept)


def run_baseline(question: Question, ds: Dataset, llm: LLM, *, context_window: int,
                 token_scale: float = 1.0) -> MethodRun:
    """Answer with one call holding the whole table as text, cut to the context window."""
    from rlm_pipeline.llm.client import LLMClient

    messages, kept = baseline_messages(question, ds, context_window, token_scale)

    async def ask() -> Any:
        async with LLMClient(llm) as client:
            return await client.chat(messages, max_tokens=_REPLY_TOKENS)

    started = time.monotonic()
    extra = {"lines_in_prompt": kept, "lines_cut": ds.rows - kept}
    try:
        reply = asyncio.run(ask())
    except RLMPipelineError as exc:
        return MethodRun("baseline", None, "", 0.0, 1, 0, 0, 0, 0.0,
                         round(time.monotonic() - started, 3),
                         error=f"{type(exc).__name__}: {exc}", extra=extra)
    text = reply.content or ""
    pred = parse_prediction(text, question.kind)
    return MethodRun(
        "baseline", pred, text[:300], score(question.gold, pred, question.kind), 1,
        reply.input_tokens, reply.output_tokens, reply.input_tokens,
        llm.price().cost(reply.input_tokens, reply.output_tokens),
        round(time.monotonic() - started, 3), extra=extra,
    )


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs.

    ``token_scale``: model tokens per estimated token (sizes are in model
    tokens: a table for size ``2^k`` has about ``2^k / token_scale`` estimated
    tokens).  ``cache_path``: the sub-model's response cache.  ``protocol``:
    the RLM's root protocol (None: the library default).
    """

    sizes: tuple[int, ...] = DEFAULT_SIZES
    questions_per_size: int = 7
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    context_window: int = DEFAULT_CONTEXT_WINDOW
    seed: int = 0
    max_steps: int = 20
    max_depth: int = 1
    methods: tuple[str, ...] = ("rlm", "baseline")
    token_scale: float = 1.0
    protocol: str | None = None
    cache_path: str | None = None
    rlm_timeout_s: float = 900.0
    request_timeout_s: float = 300.0
    max_retries: int = 3
    max_concurrency: int = 16
    traces_dir: str | None = None
    tpm: float | None = None
    order: str = "size"
    reverse: bool = False
    root_max_tokens: int | None = None
    sub_batch_size: int | None = None


def _summarise(runs: list[MethodRun], families: list[str] | None = None) -> dict[str, Any]:
    n = max(1, len(runs))
    out: dict[str, Any] = {
        "score": round(sum(r.score for r in runs) / n, 4),
        "calls": sum(r.calls for r in runs),
        "input_tokens": sum(r.input_tokens for r in runs),
        "output_tokens": sum(r.output_tokens for r in runs),
        "total_tokens": sum(r.input_tokens + r.output_tokens for r in runs),
        "max_prompt_tokens": max((r.max_prompt_tokens for r in runs), default=0),
        "cost_usd": round(sum(r.cost_usd for r in runs), 6),
        "seconds": round(sum(r.seconds for r in runs), 3),
        "errors": sum(1 for r in runs if r.error),
        "questions": len(runs),
    }
    protocols: dict[str, int] = {}
    for r in runs:
        for proto in r.extra.get("protocols") or []:
            protocols[proto] = protocols.get(proto, 0) + 1
    if protocols:
        out["protocol_turns"] = protocols
    if families is not None:
        per: dict[str, list[float]] = {}
        for fam, r in zip(families, runs, strict=True):
            per.setdefault(fam, []).append(r.score)
        out["by_family"] = {f: {"score": round(sum(v) / len(v), 4), "questions": len(v)}
                            for f, v in sorted(per.items())}
    return out


def _run_from_dict(data: dict[str, Any]) -> MethodRun:
    return MethodRun(**data)


def run_bench(cfg: BenchConfig, base_url: str, *, simulator: bool,
              progress: Callable[[str], None] | None = None,
              previous: dict[str, Any] | None = None,
              save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every size and question with both methods; the report as a JSON-ready dict.

    Per size, each method answers all questions before the next method starts
    (a local server then reuses the table's prompt prefix across the
    baseline's questions).  ``previous`` is an earlier report of the same
    configuration: its finished (size, question, method) runs are kept, not
    rerun (``--resume``).  ``save`` gets the report after every question.
    """
    llm = LLM(model=cfg.model, base_url=base_url, api_key=None if not simulator else "sim",
              max_concurrency=cfg.max_concurrency, timeout_s=cfg.request_timeout_s,
              max_retries=cfg.max_retries, tpm=cfg.tpm)
    sub = llm if cfg.cache_path is None else LLM(
        model=cfg.model, base_url=base_url, api_key=llm.api_key,
        max_concurrency=cfg.max_concurrency, timeout_s=cfg.request_timeout_s,
        max_retries=cfg.max_retries, cache_path=cfg.cache_path, tpm=cfg.tpm)
    say = progress or (lambda _msg: None)
    done: dict[tuple[int, str, str], dict[str, Any]] = {}
    for size in (previous or {}).get("sizes", []):
        for q in size["questions"]:
            for method, run in q["runs"].items():
                done[(size["log2_tokens"], q["text"], method)] = run
    report: dict[str, Any] = {
        "benchmark": "oolong_synth",
        "model": cfg.model,
        "base_url": None if simulator else base_url,
        "simulator": simulator,
        "note": ("model = rlm_pipeline's offline simulator (keyword classifier + rule-based "
                 "planner), not a language model" if simulator else "real endpoint"),
        "context_window": cfg.context_window,
        "scoring": "numeric: 0.75 ** |gold - pred|; others: exact match",
        "config": asdict(cfg),
        "overall": {},
        "sizes": [],
    }
    tables: list[tuple[Any, Dataset, list[Question], list[dict[str, Any]]]] = []
    for exponent in cfg.sizes:
        target = 2**exponent if exponent <= 64 else exponent
        ds = make_dataset(max(8, int(target / cfg.token_scale)), seed=cfg.seed + exponent)
        questions = make_questions(ds, cfg.questions_per_size, seed=cfg.seed + exponent)
        log2 = exponent if exponent <= 64 else round(math.log2(exponent), 2)
        say(f"size 2^{log2}: {ds.rows:,} rows, {ds.tokens:,} estimated tokens "
            f"(~{round(ds.tokens * cfg.token_scale):,} model tokens), {len(questions)} questions")
        rows: list[dict[str, Any]] = [{**asdict(q), "runs": {}} for q in questions]
        report["sizes"].append({
            "log2_tokens": log2, "target_tokens": target, "tokens": ds.tokens,
            "model_tokens_est": round(ds.tokens * cfg.token_scale), "rows": ds.rows,
            "methods": {}, "questions": rows,
        })
        tables.append((log2, ds, questions, rows))
    # work order: per size, each method through all questions (a local server keeps the
    # table's prefix); or, with order="question", question i at every size before i+1
    width = max((len(t[2]) for t in tables), default=0)
    if cfg.order == "question":
        order = [(m, t, i) for m in cfg.methods for i in range(width) for t in tables
                 if i < len(t[2])]
    else:
        order = [(m, t, i) for t in tables for m in cfg.methods for i in range(len(t[2]))]
    if cfg.reverse:  # a second worker on another server takes the work from the end
        order.reverse()
    for method, (log2, ds, questions, rows), i in order:
        question = questions[i]
        key = (log2, question.text, method)
        if key in done:
            rows[i]["runs"][method] = done[key]
            continue
        if method == "rlm":
            trace = (None if cfg.traces_dir is None else
                     str(Path(cfg.traces_dir) / f"rlm_2^{log2}_q{i:02d}.jsonl"))
            run = run_rlm(question, ds, llm, max_steps=cfg.max_steps,
                          max_depth=cfg.max_depth, timeout_s=cfg.rlm_timeout_s,
                          sub=sub, protocol=cfg.protocol, trace_path=trace,
                          root_max_tokens=cfg.root_max_tokens,
                          sub_batch_size=cfg.sub_batch_size)
        else:
            run = run_baseline(question, ds, llm, context_window=cfg.context_window,
                               token_scale=cfg.token_scale)
        if run.error and ("connection error" in run.error or "LLMEndpointError" in run.error):
            say(f"  2^{log2} {method}: the endpoint is down ({run.error[:120]}); stopping "
                "(not recorded; --resume reruns it)")
            break
        rows[i]["runs"][method] = asdict(run)
        # machine load when the run ended (other jobs share the cores)
        rows[i]["runs"][method]["extra"]["load_1min"] = round(os.getloadavg()[0], 2)
        say(f"  2^{log2} {method:8s} {run.score:4.2f}  gold={question.gold!s:<18} "
            f"pred={run.prediction!s:<18} {run.seconds:7.1f}s {question.text[:60]}"
            + (f"  [{run.error[:80]}]" if run.error else ""))
        _refresh(report, cfg.methods)
        if save is not None:
            save(report)
    # sizes of the earlier report that this run did not ask for are kept as they were
    asked = {s["log2_tokens"] for s in report["sizes"]}
    report["sizes"].extend(s for s in (previous or {}).get("sizes", [])
                           if s["log2_tokens"] not in asked)
    report["sizes"].sort(key=lambda s: float(s["log2_tokens"]))
    _refresh(report, cfg.methods)
    if save is not None:
        save(report)
    return report


def _refresh(report: dict[str, Any], methods: Sequence[str]) -> None:
    """Recompute the per-size and overall summaries from the runs present."""
    everything: dict[str, tuple[list[MethodRun], list[str]]] = {m: ([], []) for m in methods}
    for size in report["sizes"]:
        for method in methods:
            pairs = [(_run_from_dict(q["runs"][method]), q["family"])
                     for q in size["questions"] if method in q["runs"]]
            if not pairs:
                continue
            runs, fams = [p[0] for p in pairs], [p[1] for p in pairs]
            size["methods"][method] = _summarise(runs, fams)
            everything[method][0].extend(runs)
            everything[method][1].extend(fams)
    report["overall"] = {m: _summarise(r, f) for m, (r, f) in everything.items() if r}


def run_seed_question(llm: LLM, sub: LLM, *, rows: int, seed: int = 0, max_steps: int = 20,
                      max_depth: int = 1, timeout_s: float = 1800.0, protocol: str | None = None,
                      trace_path: str | None = None, root_max_tokens: int | None = None,
                      sub_batch_size: int | None = None) -> dict[str, Any]:
    """The seed's question over ``rows`` synthetic tickets with the RLM: answer, truth, steps."""
    import rlm_pipeline as rp
    from rlm_pipeline.datasets import KNOWN_USERS, tickets

    question = "Among users 12345, 67890 and 11111, how many questions are about billing?"
    frame = tickets(rows, seed=seed)
    truth = frame.filter(pl.col("user_id").is_in(list(KNOWN_USERS))
                         & (pl.col("true_label") == "billing")).height
    options: dict[str, Any] = {} if protocol is None else {"protocol": protocol}
    if root_max_tokens is not None:
        options["root_max_tokens"] = root_max_tokens
    if sub_batch_size is not None:
        options["sub_batch_size"] = sub_batch_size
    rlm = rp.RLM(root=llm, sub=sub, max_steps=max_steps, max_depth=max_depth,
                 timeout_s=timeout_s, **options)
    started = time.monotonic()
    out: dict[str, Any] = {"question": question, "rows": rows, "truth": truth,
                           "prompt_tokens_if_direct": estimate_tokens(
                               "\n".join(frame["question"].to_list()))}
    try:
        res = rlm.run(question, frame.drop("true_label"), text_column="question",
                      trace_path=trace_path)
    except RLMPipelineError as exc:
        out.update(answer=None, value=None, error=f"{type(exc).__name__}: {exc}"[:500],
                   seconds=round(time.monotonic() - started, 1))
        return out
    root = [r for r in res.trace if r.get("depth") == 0]
    out.update(
        answer=res.answer, value=res.value, stop_reason=res.stop_reason, steps=res.steps,
        tool_errors=res.errors, seconds=round(time.monotonic() - started, 1),
        usage=res.usage.to_dict(), trace_path=trace_path,
        score=score(truth, parse_prediction(res.value if res.value is not None else res.answer,
                                            "number"), "number"),
        steps_taken=[
            {"kind": r["kind"], "tool": r.get("tool"), "arguments": r.get("arguments"),
             "result": (r.get("error") or r.get("result_summary") or "")[:200],
             "protocol": (r.get("extra") or {}).get("protocol")}
            for r in root if r["kind"] in ("tool", "error", "answer", "model")
        ],
    )
    return out


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs of the same questions (e.g. each method on its own server).

    Runs are matched by size and question text; a later report's run of a
    (size, question, method) replaces an earlier one.  ``configs`` keeps every
    run's configuration.

    Examples
    --------
    >>> a = {"sizes": [{"log2_tokens": 10, "methods": {}, "questions": [
    ...     {"text": "q", "family": "counting", "runs": {}}]}], "config": {}}
    >>> merge_reports([a, a])["sizes"][0]["questions"][0]["text"]
    'q'
    """
    merged: dict[str, Any] = json.loads(json.dumps(reports[0], default=str))
    merged["configs"] = [r.get("config") for r in reports]
    for other in reports[1:]:
        for size in other.get("sizes", []):
            mine = next((s for s in merged["sizes"] if s["log2_tokens"] == size["log2_tokens"]),
                        None)
            if mine is None:
                merged["sizes"].append(json.loads(json.dumps(size, default=str)))
                continue
            by_text = {q["text"]: q for q in mine["questions"]}
            for q in size["questions"]:
                if q["text"] in by_text:
                    by_text[q["text"]]["runs"].update(q["runs"])
                else:
                    mine["questions"].append(q)
        if "seed_question" in other:
            merged["seed_question"] = other["seed_question"]
    merged["sizes"].sort(key=lambda s: float(s["log2_tokens"]))
    methods = [m for m in ("rlm", "baseline")
               if any(m in q["runs"] for s in merged["sizes"] for q in s["questions"])]
    for size in merged["sizes"]:
        size["methods"] = {}
    _refresh(merged, methods)
    return merged


def format_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: per size and method, the figures and per-family scores."""
    families = sorted({f for s in report["sizes"] for m in s["methods"].values()
                       for f in m.get("by_family", {})})
    head = ("| context | rows | method | score | " + " | ".join(families)
            + " | calls | input tok | output tok | largest prompt | wall s | root protocol |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for size in report["sizes"]:
        for method, m in size["methods"].items():
            fam = [f"{m['by_family'][f]['score']:.2f} ({m['by_family'][f]['questions']})"
                   if f in m.get("by_family", {}) else "" for f in families]
            turns = m.get("protocol_turns") or {}
            proto = ", ".join(f"{k} {v}" for k, v in sorted(turns.items())) or (
                "one prompt" if method == "baseline" else "")
            name = "RLM" if method == "rlm" else "direct"
            lines.append(
                f"| 2^{size['log2_tokens']} | {size['rows']:,} | {name} | **{m['score']:.2f}** "
                f"({m['questions']} q) | " + " | ".join(fam)
                + f" | {m['calls']:,} | {m['input_tokens']:,} | {m['output_tokens']:,} | "
                f"{m['max_prompt_tokens']:,} | {m['seconds']:,.0f} | {proto} |")
    same = same_questions(report)
    if same:
        lines.append("")
        lines.append("On the same questions (those both methods ran): " + "; ".join(
            f"2^{log2}: RLM {rlm:.2f} vs direct {base:.2f} on {n}" for log2, n, rlm, base in same)
            + ".")
    return "\n".join(lines)


def same_questions(report: dict[str, Any]) -> list[tuple[Any, int, float, float]]:
    """Per size, the two methods' mean scores over the questions both ran: (log2, n, rlm, direct).

    Examples
    --------
    >>> same_questions({"sizes": [{"log2_tokens": 10, "questions": [
    ...     {"runs": {"rlm": {"score": 1.0}, "baseline": {"score": 0.5}}},
    ...     {"runs": {"baseline": {"score": 0.0}}}]}]})
    [(10, 1, 1.0, 0.5)]
    """
    out = []
    for size in report["sizes"]:
        both = [q["runs"] for q in size["questions"] if {"rlm", "baseline"} <= set(q["runs"])]
        if both:
            n = len(both)
            out.append((size["log2_tokens"], n, round(sum(r["rlm"]["score"] for r in both) / n, 4),
                        round(sum(r["baseline"]["score"] for r in both) / n, 4)))
    return out


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (one line per size and method)."""
    head = (f"{'size':>6} {'rows':>7} {'method':>9} {'score':>6} {'calls':>7} "
            f"{'in tok':>10} {'out tok':>8} {'max prompt':>11} {'seconds':>8} {'errors':>6}")
    lines = [head, "-" * len(head)]

    def line(size: str, rows: str, method: str, m: dict[str, Any]) -> str:
        return (f"{size:>6} {rows:>7} {method:>9} {m['score']:>6.3f} {m['calls']:>7,} "
                f"{m.get('input_tokens', m['total_tokens']):>10,} {m.get('output_tokens', 0):>8,} "
                f"{m['max_prompt_tokens']:>11,} {m['seconds']:>8.1f} {m['errors']:>6}")

    for size in report["sizes"]:
        for method, m in size["methods"].items():
            lines.append(line(f"2^{size['log2_tokens']}", f"{size['rows']:,}", method, m))
    for method, m in report["overall"].items():
        lines.append(line("all", "", method, m))
    return "\n".join(lines)


def plot_scores(reports: Sequence[tuple[str, dict[str, Any]]], out: Path) -> Path:
    """Score vs context size, one line per (report, method); written as PNG to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    styles = {"rlm": "-o", "baseline": "--s"}
    for label, report in reports:
        for method in report["overall"]:
            points = [(2 ** float(s["log2_tokens"]), s["methods"][method]["score"])
                      for s in report["sizes"] if method in s["methods"]]
            if points:
                xs, ys = zip(*points, strict=True)
                name = "RLM" if method == "rlm" else "direct (one prompt)"
                ax.plot(xs, ys, styles.get(method, "-"), label=f"{name}, {label}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("context size (tokens)")
    ax.set_ylabel("score (OOLONG scoring)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"13-20"``, ``"13,15"`` or token counts (``"5000"``) as a tuple of sizes.

    Examples
    --------
    >>> parse_sizes("13-15,18")
    (13, 14, 15, 18)
    """
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = (int(p) for p in part.split("-", 1))
            sizes.extend(range(lo, hi + 1))
        else:
            sizes.append(int(part))
    if not sizes or any(s < 1 for s in sizes):
        msg = f"--sizes needs positive exponents or token counts, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return tuple(sizes)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint; default: start the offline simulator")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name (also picks the price)")
    p.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                   help="log2 context sizes in tokens, e.g. 13-20 or 13,16 (default 13-20)")
    p.add_argument("--questions-per-size", type=int, default=7)
    p.add_argument("--context-window", type=int, default=DEFAULT_CONTEXT_WINDOW,
                   help="baseline's context window in tokens; the table is cut to fit")
    p.add_argument("--token-scale", type=float, default=1.0,
                   help="model tokens per estimated (4-char) token; sizes are in model tokens")
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--max-depth", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="rlm,baseline", help="comma list: rlm, baseline")
    p.add_argument("--protocol", default=None,
                   help="RLM root protocol (auto, tools, json, text); default: the library's")
    p.add_argument("--root-max-tokens", type=int, default=None, metavar="N",
                   help="max_tokens of each RLM root turn (default: the library's, 1024)")
    p.add_argument("--sub-batch-size", type=int, default=None, metavar="N",
                   help="rows per classify/llm_map sub-call of the RLM (default: the library's)")
    p.add_argument("--cache", default=None, metavar="SQLITE",
                   help="response cache of the sub-model (labels reused across questions)")
    p.add_argument("--rlm-timeout", type=float, default=900.0, help="seconds per RLM run")
    p.add_argument("--request-timeout", type=float, default=300.0, help="seconds per request")
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--max-concurrency", type=int, default=16)
    p.add_argument("--tpm", type=float, default=None,
                   help="tokens per minute limit; with one set the client also sends max_tokens "
                        "on every request (the root's replies are then bounded to 1024 tokens)")
    p.add_argument("--traces", type=Path, default=None, metavar="DIR",
                   help="write each RLM run's JSONL trace into DIR")
    p.add_argument("--seed-question", type=int, default=0, metavar="ROWS",
                   help="also ask the seed question over ROWS synthetic tickets with the RLM")
    p.add_argument("--seed-only", action="store_true",
                   help="with --seed-question: ask only the seed question, no sizes")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished runs of --out (same questions) and run the rest")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="also plot score vs size (with --plot-with reports) to PNG")
    p.add_argument("--plot-with", action="append", default=[], metavar="LABEL=JSON",
                   help="another report to draw in the plot, e.g. simulated=bench/results/x.json")
    p.add_argument("--plot-only", action="store_true",
                   help="do not run: plot --out (and --plot-with) to --plot")
    p.add_argument("--order", choices=("size", "question"), default="size",
                   help="size: per size, each method through all its questions (default); "
                        "question: question i at every size before question i+1")
    p.add_argument("--reverse", action="store_true",
                   help="work from the last question back (a second worker, merged later)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="do not run: merge these reports (same questions) into --out")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    return p


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _plot(args: argparse.Namespace, report: dict[str, Any]) -> None:
    label = "simulated" if report.get("simulator") else f"real: {report.get('model')}"
    reports: list[tuple[str, dict[str, Any]]] = [(label, report)]
    for item in args.plot_with:
        name, _, path = item.partition("=")
        reports.append((name, json.loads(Path(path).read_text(encoding="utf-8"))))
    print(f"plot: {plot_scores(reports, args.plot)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; write the JSON report; print the table."""
    args = build_parser().parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods or set(methods) - {"rlm", "baseline"}:
        print("--methods takes rlm and/or baseline", file=sys.stderr)
        return 2
    if args.questions_per_size < 1 or args.context_window < 2048 or args.token_scale <= 0:
        print("--questions-per-size must be >= 1, --context-window >= 2048 and --token-scale > 0",
              file=sys.stderr)
        return 2
    if args.merge:
        report = merge_reports([json.loads(p.read_text(encoding="utf-8")) for p in args.merge])
        _write(args.out, report)
        print(format_table(report))
        print(format_markdown(report))
        print(f"report: {args.out}")
        if args.plot is not None:
            _plot(args, report)
        return 0
    if args.plot_only:
        if args.plot is None or not args.out.exists():
            print("--plot-only needs --plot PNG and an existing --out report", file=sys.stderr)
            return 2
        _plot(args, json.loads(args.out.read_text(encoding="utf-8")))
        return 0
    cfg = BenchConfig(sizes=args.sizes, questions_per_size=args.questions_per_size,
                      model=args.model, base_url=args.base_url,
                      context_window=args.context_window, seed=args.seed,
                      max_steps=args.max_steps, max_depth=args.max_depth, methods=methods,
                      token_scale=args.token_scale, protocol=args.protocol,
                      cache_path=args.cache, rlm_timeout_s=args.rlm_timeout,
                      request_timeout_s=args.request_timeout, max_retries=args.max_retries,
                      max_concurrency=args.max_concurrency, tpm=args.tpm, order=args.order,
                      reverse=args.reverse, root_max_tokens=args.root_max_tokens,
                      sub_batch_size=args.sub_batch_size,
                      traces_dir=str(args.traces) if args.traces else None)
    if args.traces:
        args.traces.mkdir(parents=True, exist_ok=True)
    previous = None
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text(encoding="utf-8"))
    say: Callable[[str], None] = (lambda _m: None) if args.quiet else (
        lambda m: print(m, flush=True))

    def save(report: dict[str, Any]) -> None:
        if previous and "seed_question" in previous and "seed_question" not in report:
            report["seed_question"] = previous["seed_question"]
        _write(args.out, report)

    if args.base_url:
        say(f"model {args.model} at {args.base_url}")
        seed: dict[str, Any] | None = (previous or {}).get("seed_question")
        if args.seed_question and (seed or {}).get("rows") == args.seed_question:
            say("seed question: kept from --out (--resume)")
        elif args.seed_question:
            root = LLM(model=cfg.model, base_url=args.base_url,
                       timeout_s=cfg.request_timeout_s, max_retries=cfg.max_retries,
                       max_concurrency=cfg.max_concurrency, tpm=cfg.tpm)
            sub = LLM(model=cfg.model, base_url=args.base_url,
                      timeout_s=cfg.request_timeout_s, max_retries=cfg.max_retries,
                      max_concurrency=cfg.max_concurrency, cache_path=cfg.cache_path,
                      tpm=cfg.tpm)
            trace = str(args.traces / "seed_question.jsonl") if args.traces else None
            say(f"seed question over {args.seed_question:,} tickets (RLM only)")
            seed = run_seed_question(
                root, sub, rows=args.seed_question, seed=cfg.seed, max_steps=cfg.max_steps,
                max_depth=cfg.max_depth, timeout_s=cfg.rlm_timeout_s,
                protocol=cfg.protocol, trace_path=trace, root_max_tokens=cfg.root_max_tokens,
                sub_batch_size=cfg.sub_batch_size)
            say(f"  answer={seed.get('value')!r} truth={seed['truth']} "
                f"steps={seed.get('steps')} {seed.get('error') or ''}")
            previous = {**(previous or {}), "seed_question": seed}
            _write(args.out, {**(previous or {}), "sizes": (previous or {}).get("sizes", [])})
        if args.seed_only:
            print(json.dumps((previous or {}).get("seed_question"), indent=1, default=str))
            return 0
        report = run_bench(cfg, args.base_url, simulator=False, progress=say,
                           previous=previous, save=save)
    else:
        from rlm_pipeline.sim import SimConfig, SimServer

        with SimServer(SimConfig()) as sim:
            say(f"no --base-url: using rlm_pipeline's offline SIMULATOR at {sim.base_url} "
                "(keyword classifier + rule-based planner, not a language model). "
                "Pass --base-url/--model to measure a real endpoint.")
            report = run_bench(cfg, sim.base_url, simulator=True, progress=say,
                               previous=previous, save=save)
    _write(args.out, report)
    print(format_table(report))
    if report["simulator"]:
        print("(model: offline simulator, not a language model; costs at "
              f"{args.model} list prices)")
    print(f"report: {args.out}")
    if args.plot is not None:
        _plot(args, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
