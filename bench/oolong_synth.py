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

Usage::

    python bench/oolong_synth.py                      # simulator, sizes 2^13..2^20
    python bench/oolong_synth.py --sizes 13,14 --questions-per-size 4
    python bench/oolong_synth.py --base-url http://127.0.0.1:8000/v1 --model my-model \\
        --context-window 32768 --out bench/results/oolong_my_model.json
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
            max_depth: int = 1, timeout_s: float = 900.0) -> MethodRun:
    """Answer with :class:`rlm_pipeline.RLM` over the table (root never sees the rows)."""
    import rlm_pipeline as rp

    started = time.monotonic()
    rlm = rp.RLM(root=llm, sub=llm, max_steps=max_steps, max_depth=max_depth,
                 timeout_s=timeout_s)
    try:
        res = rlm.run(question.text, ds.table, text_column="text")
    except RLMPipelineError as exc:
        return MethodRun("rlm", None, "", 0.0, 0, 0, 0, 0, 0.0,
                         round(time.monotonic() - started, 3), error=f"{type(exc).__name__}: {exc}")
    pred = parse_prediction(res.value if res.value is not None else res.answer, question.kind)
    usage = res.usage
    tools = [r.get("tool") for r in res.trace if r.get("kind") == "tool" and r.get("depth") == 0]
    return MethodRun(
        "rlm", pred, res.answer[:300], score(question.gold, pred, question.kind), usage.calls,
        usage.input_tokens, usage.output_tokens, usage.max_prompt_tokens, usage.cost_usd,
        round(time.monotonic() - started, 3),
        error=(res.stop_reason if not res.answered else
               None if res.value is not None else f"answered null: {res.explanation or ''}"[:300]),
        extra={"root_steps": res.steps, "tool_errors": res.errors, "tools": tools},
    )


BASELINE_SYSTEM = (
    "You are given a long list of instances, one per line, then a question about them. "
    "Read every line. Reply with only the answer: a number, a topic, a user id or a "
    "short phrase. No explanation."
)


def baseline_messages(question: Question, ds: Dataset, context_window: int
                      ) -> tuple[list[dict[str, str]], int]:
    """The one-prompt baseline's messages and how many lines fit in the context window."""
    head = "Instances:\n"
    tail = f"\n\nQuestion: {question.text}"
    fixed = estimate_tokens(BASELINE_SYSTEM + head + tail) + 16
    room = context_window - _REPLY_TOKENS - _PROMPT_MARGIN_TOKENS - fixed
    kept = 0
    used = 0
    for line in ds.lines:
        cost = estimate_tokens(line + "\n")
        if used + cost > room:
            break
        used += cost
        kept += 1
    user = head + "\n".join(ds.lines[:kept]) + tail
    return ([{"role": "system", "content": BASELINE_SYSTEM},
             {"role": "user", "content": user}], kept)


def run_baseline(question: Question, ds: Dataset, llm: LLM, *, context_window: int) -> MethodRun:
    """Answer with one call holding the whole table as text, cut to the context window."""
    from rlm_pipeline.llm.client import LLMClient

    messages, kept = baseline_messages(question, ds, context_window)

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
    """Everything one benchmark run needs."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    questions_per_size: int = 7
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    context_window: int = DEFAULT_CONTEXT_WINDOW
    seed: int = 0
    max_steps: int = 20
    max_depth: int = 1
    methods: tuple[str, ...] = ("rlm", "baseline")


def _summarise(runs: list[MethodRun]) -> dict[str, Any]:
    n = max(1, len(runs))
    return {
        "score": round(sum(r.score for r in runs) / n, 4),
        "calls": sum(r.calls for r in runs),
        "total_tokens": sum(r.input_tokens + r.output_tokens for r in runs),
        "max_prompt_tokens": max((r.max_prompt_tokens for r in runs), default=0),
        "cost_usd": round(sum(r.cost_usd for r in runs), 6),
        "seconds": round(sum(r.seconds for r in runs), 3),
        "errors": sum(1 for r in runs if r.error),
        "questions": len(runs),
    }


def run_bench(cfg: BenchConfig, base_url: str, *, simulator: bool,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every size and question with both methods; the report as a JSON-ready dict."""
    llm = LLM(model=cfg.model, base_url=base_url, api_key=None if not simulator else "sim",
              max_concurrency=16, timeout_s=300.0, max_retries=3)
    say = progress or (lambda _msg: None)
    sizes: list[dict[str, Any]] = []
    for exponent in cfg.sizes:
        target = 2**exponent if exponent <= 64 else exponent
        ds = make_dataset(target, seed=cfg.seed + exponent)
        questions = make_questions(ds, cfg.questions_per_size, seed=cfg.seed + exponent)
        say(f"size 2^{exponent}: {ds.rows:,} rows, {ds.tokens:,} tokens, "
            f"{len(questions)} questions")
        per_method: dict[str, list[MethodRun]] = {m: [] for m in cfg.methods}
        rows: list[dict[str, Any]] = []
        for question in questions:
            entry: dict[str, Any] = {**asdict(question), "runs": {}}
            for method in cfg.methods:
                if method == "rlm":
                    run = run_rlm(question, ds, llm, max_steps=cfg.max_steps,
                                  max_depth=cfg.max_depth)
                else:
                    run = run_baseline(question, ds, llm, context_window=cfg.context_window)
                per_method[method].append(run)
                entry["runs"][method] = asdict(run)
                say(f"  {method:8s} {run.score:4.2f}  gold={question.gold!s:<18} "
                    f"pred={run.prediction!s:<18} {question.text[:60]}"
                    + (f"  [{run.error[:80]}]" if run.error else ""))
            rows.append(entry)
        sizes.append({
            "log2_tokens": exponent if exponent <= 64 else round(math.log2(exponent), 2),
            "target_tokens": target,
            "tokens": ds.tokens,
            "rows": ds.rows,
            "methods": {m: _summarise(r) for m, r in per_method.items()},
            "questions": rows,
        })
    overall = {
        m: _summarise([MethodRun(**{**q["runs"][m]}) for s in sizes for q in s["questions"]])
        for m in cfg.methods
    }
    return {
        "benchmark": "oolong_synth",
        "model": cfg.model,
        "base_url": None if simulator else base_url,
        "simulator": simulator,
        "note": ("model = rlm_pipeline's offline simulator (keyword classifier + rule-based "
                 "planner), not a language model" if simulator else "real endpoint"),
        "context_window": cfg.context_window,
        "scoring": "numeric: 0.75 ** |gold - pred|; others: exact match",
        "config": asdict(cfg),
        "overall": overall,
        "sizes": sizes,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (one line per size and method)."""
    head = (f"{'size':>6} {'rows':>7} {'method':>9} {'score':>6} {'calls':>7} "
            f"{'tokens':>11} {'max prompt':>11} {'cost $':>9} {'errors':>6}")
    lines = [head, "-" * len(head)]
    for size in report["sizes"]:
        for method, m in size["methods"].items():
            lines.append(
                f"{'2^' + str(size['log2_tokens']):>6} {size['rows']:>7,} {method:>9} "
                f"{m['score']:>6.3f} {m['calls']:>7,} {m['total_tokens']:>11,} "
                f"{m['max_prompt_tokens']:>11,} {m['cost_usd']:>9.4f} {m['errors']:>6}"
            )
    for method, m in report["overall"].items():
        lines.append(
            f"{'all':>6} {'':>7} {method:>9} {m['score']:>6.3f} {m['calls']:>7,} "
            f"{m['total_tokens']:>11,} {m['max_prompt_tokens']:>11,} {m['cost_usd']:>9.4f} "
            f"{m['errors']:>6}"
        )
    return "\n".join(lines)


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
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--max-depth", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="rlm,baseline", help="comma list: rlm, baseline")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; write the JSON report; print the table."""
    args = build_parser().parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods or set(methods) - {"rlm", "baseline"}:
        print("--methods takes rlm and/or baseline", file=sys.stderr)
        return 2
    if args.questions_per_size < 1 or args.context_window < 2048:
        print("--questions-per-size must be >= 1 and --context-window >= 2048", file=sys.stderr)
        return 2
    cfg = BenchConfig(sizes=args.sizes, questions_per_size=args.questions_per_size,
                      model=args.model, base_url=args.base_url,
                      context_window=args.context_window, seed=args.seed,
                      max_steps=args.max_steps, max_depth=args.max_depth, methods=methods)
    say: Callable[[str], None] = (lambda _m: None) if args.quiet else (
        lambda m: print(m, flush=True))
    if args.base_url:
        say(f"model {args.model} at {args.base_url}")
        report = run_bench(cfg, args.base_url, simulator=False, progress=say)
    else:
        from rlm_pipeline.sim import SimConfig, SimServer

        with SimServer(SimConfig()) as sim:
            say(f"no --base-url: using rlm_pipeline's offline SIMULATOR at {sim.base_url} "
                "(keyword classifier + rule-based planner, not a language model). "
                "Pass --base-url/--model to measure a real endpoint.")
            report = run_bench(cfg, sim.base_url, simulator=True, progress=say)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(format_table(report))
    if report["simulator"]:
        print("(model: offline simulator, not a language model; costs at "
              f"{args.model} list prices)")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
