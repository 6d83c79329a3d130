"""Deterministic answers of the simulator to ``llm_map``, ``filter`` and ``extract`` sub-calls.

The simulated model is a keyword model, so tests can compute the expected
answer of every row themselves:

- ``llm_map`` ignores the instruction and answers by output type
  (:func:`map_value`);
- ``filter`` reads the condition's content words and says whether the text
  hits any of them (:func:`condition_holds`);
- ``extract`` reads each field's name and type and takes the value off the
  text the way the ticket templates of :mod:`rlm_pipeline.datasets` write it:
  money amounts, reference numbers, plans, cards, months, ... and null when
  the text does not say (:func:`extract_value`).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_pipeline.datasets.templates import FILLERS
from rlm_pipeline.sim.classifier import KEYWORDS, intended_label

__all__ = [
    "EXTRACT_TYPES",
    "OUTPUT_TYPES",
    "condition_holds",
    "extract_fields",
    "extract_value",
    "map_value",
    "request_condition",
    "value_task_kind",
]

OUTPUT_TYPES = ("string", "integer", "number", "boolean")
#: Field types of ``extract`` (an enum is a list of allowed strings).
EXTRACT_TYPES = ("string", "integer", "number", "boolean", "date")

_TOKEN = re.compile(r"[a-z0-9]+")
_CONDITION_LINE = re.compile(r"(?m)^Condition:[ \t]*(.+?)[ \t]*$")
_MONEY = re.compile(r"(?:\$\s?|\b(?:EUR|USD|GBP)\s?|€\s?)(\d+(?:\.\d+)?)", re.IGNORECASE)
_REF = re.compile(r"#\s?(\d+)")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
#: Year given to a month named without one (the tickets are all of 2024).
DEFAULT_YEAR = 2024

#: Words of a condition or field name that say nothing about the text's content.
_FILLER_WORDS = frozenset(
    "a an the is are was were be been it its this that these those text row rows ticket "
    "tickets question questions message user users customer customers asks ask asking asked "
    "about for to of in on at by with and or any some has have having mentions mention "
    "mentioning mentioned contains contain containing request requests requesting requested "
    "wants want wanting says say saying talks talk related regarding concerning something "
    "someone does do did whether if".split()
)
_NEGATIONS = frozenset("not no without never none".split())
#: Words of a numeric field's name that name the quantity, not a condition on the text.
_QUANTITY_WORDS = frozenset(
    "amount amounts total sum value price cost money usd eur paid payment charge number "
    "figure".split()
)
_REFERENCE_WORDS = frozenset("ref reference order ticket id number no case".split())
#: Field-name words that point at one of the ticket templates' slots.
_SLOT_WORDS: dict[str, str] = {
    "plan": "plan",
    "tier": "plan",
    "card": "card",
    "method": "card",
    "month": "month",
    "device": "device",
    "platform": "device",
    "browser": "device",
    "city": "city",
    "location": "city",
    "code": "code",
    "error": "code",
    "feature": "feature",
    "page": "feature",
    "screen": "feature",
}


def map_value(text: str, output_type: str = "string") -> Any:
    """The simulator's ``llm_map`` answer for ``text``.

    ``integer``: number of words; ``boolean``: whether the text contains ``?``;
    ``number``: length in characters / 10; ``string`` (and anything else): the
    first three words.

    Examples
    --------
    >>> map_value("Where is my invoice?", "integer")
    4
    >>> map_value("Where is my invoice?", "boolean")
    True
    >>> map_value("Where is my invoice?", "number")
    2.0
    >>> map_value("Where is my invoice?", "string")
    'Where is my'
    """
    if output_type == "integer":
        return len(text.split())
    if output_type == "boolean":
        return "?" in text
    if output_type == "number":
        return len(text) / 10
    return " ".join(text.split()[:3])


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _hits(words: Sequence[str], tokens: Sequence[str]) -> bool:
    """Whether any token of the text matches one of ``words`` (its keywords or its stem)."""
    keywords: set[str] = set()
    stems: list[str] = []
    for word in words:
        keywords.add(word)
        keywords |= KEYWORDS.get(word, frozenset())
        stems.append(_stem(word))
    return any(token in keywords or token.startswith(tuple(stems)) for token in tokens)


def _content_words(phrase: str, skip: frozenset[str] = _FILLER_WORDS) -> list[str]:
    return [w for w in _TOKEN.findall(phrase.lower()) if w not in skip and w not in _NEGATIONS]


def condition_holds(text: str, condition: str) -> bool:
    """The simulator's ``filter`` answer: does ``text`` meet ``condition``?

    The condition's content words (fillers such as "asks", "about", "the" left
    out) are matched against the text's words, each with the classifier's
    keyword list for it (``billing`` also matches ``invoice``, ``refund``, ...)
    and its stem; any hit makes the condition hold.  A negation word (``not``,
    ``no``, ``without``, ``never``) in the condition turns the answer around.
    A condition without content words holds for no row.

    Examples
    --------
    >>> condition_holds("Can I get a refund for the $19 charge?", "asks for a refund")
    True
    >>> condition_holds("The app crashes on start", "is about billing")
    False
    >>> condition_holds("The app crashes on start", "is not about billing")
    True
    """
    words = _content_words(condition)
    if not words:
        return False
    held = _hits(words, _TOKEN.findall(text.lower()))
    negated = any(w in _NEGATIONS for w in _TOKEN.findall(condition.lower()))
    return held != negated


def _number(raw: str) -> int | float:
    value = float(raw)
    return int(value) if value.is_integer() else value


def _slot_value(text: str, slot: str) -> str | None:
    lower = text.lower()
    found = [(lower.find(v.lower()), v) for v in FILLERS[slot] if v.lower() in lower]
    return min(found)[1] if found else None


def _month(text: str) -> int | None:
    for token in _TOKEN.findall(text.lower()):
        if token in _MONTHS:
            return _MONTHS[token]
    return None


def _enum_value(text: str, allowed: Sequence[str]) -> str | None:
    """The allowed value whose words the text hits most; a fallback label or None when none hits."""
    tokens = _TOKEN.findall(text.lower())
    if any(_hits(_content_words(v, frozenset()), tokens) for v in allowed):
        return intended_label(text, list(allowed))
    fallback = [v for v in allowed if v.lower() in ("other", "none", "unknown", "neutral")]
    return fallback[0] if fallback else None


def extract_value(text: str, name: str, kind: str | Sequence[str]) -> Any:
    """The simulator's ``extract`` answer for one field of one text (None: the text does not say).

    - enum (a list of allowed strings): the value with the most keyword hits
      (the classifier's rule); with no hit, a catch-all value (``other``,
      ``none``, ``unknown``) if allowed, else None;
    - ``number`` / ``integer``: a field named like a reference (``order_id``,
      ``ref``, ``ticket_number``) gets the ``#12345`` number; any other gets the
      first money amount (``$19``, ``$249.50``, ``EUR 35``), but only when the
      text hits the name's other words (``refund_amount`` needs a refund) — the
      raw number, never rounded (a ``$9.99`` for an ``integer`` field comes back
      as 9.99, which the operator must refuse);
    - ``string``: a reference number as text, or the ticket slot the name
      points at (``plan``, ``card``, ``month``, ``device``, ``city``,
      ``error_code``, ``feature``), or for other names the first three words;
    - ``boolean``: whether the text hits the name's content words
      (``is_urgent``, ``mentions_refund``);
    - ``date``: an ISO date in the text, or the first month named (day 1 of
      :data:`DEFAULT_YEAR`), as ``YYYY-MM-DD``.

    Examples
    --------
    >>> text = "Can I get a refund for the $249.50 charge from March? (ref #40123)"
    >>> extract_value(text, "refund_amount", "number"), extract_value(text, "order_id", "string")
    (249.5, '40123')
    >>> extract_value("I was charged $19 twice", "refund_amount", "number") is None
    True
    >>> extract_value(text, "month", "date"), extract_value(text, "topic", ["billing", "technical"])
    ('2024-03-01', 'billing')
    """
    if not isinstance(kind, str):
        return _enum_value(text, list(kind))
    words = _TOKEN.findall(name.lower().replace("_", " "))
    tokens = _TOKEN.findall(text.lower())
    reference = any(w in _REFERENCE_WORDS for w in words) and not any(
        w in _QUANTITY_WORDS - {"number"} for w in words
    )
    if kind in ("number", "integer"):
        if reference:
            ref = _REF.search(text)
            return int(ref.group(1)) if ref else None
        qualifiers = [w for w in words if w not in _QUANTITY_WORDS and w not in _FILLER_WORDS]
        if qualifiers and not _hits(qualifiers, tokens):
            return None
        money = _MONEY.search(text)
        return _number(money.group(1)) if money else None
    if kind == "boolean":
        content = [w for w in words if w not in _FILLER_WORDS]
        return _hits(content, tokens) if content else False
    if kind == "date":
        iso = _ISO_DATE.search(text)
        if iso:
            return iso.group(0)
        month = _month(text)
        return f"{DEFAULT_YEAR}-{month:02d}-01" if month else None
    if reference:
        ref = _REF.search(text)
        return ref.group(1) if ref else None
    for word in words:
        if word in _SLOT_WORDS:
            return _slot_value(text, _SLOT_WORDS[word])
    return " ".join(text.split()[:3])


def extract_fields(text: str, fields: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
    """:func:`extract_value` for every field: ``{name: value or None}``.

    Examples
    --------
    >>> extract_fields("Refund $19 please", {"amount": "number", "card": "string"})
    {'amount': 19, 'card': None}
    """
    return {name: extract_value(text, name, kind) for name, kind in fields.items()}


def request_condition(user_text: str) -> str | None:
    """The ``Condition:`` line of a filter request's user message, if any."""
    found = _CONDITION_LINE.search(user_text)
    return found.group(1) if found else None


def value_task_kind(value_schema: Any, user_text: str) -> str:
    """Which operator a ``value`` reply belongs to: ``"extract"``, ``"filter"`` or ``"map"``.

    An object-valued answer is an extract (one property per field); a boolean
    answer to a request with a ``Condition:`` line is a filter; anything else
    is an llm_map.

    Examples
    --------
    >>> value_task_kind({"type": "boolean"}, "Condition: is urgent\\nRows:\\n")
    'filter'
    >>> value_task_kind({"type": "object", "properties": {}}, ""), value_task_kind({"type": "boolean"}, "")
    ('extract', 'map')
    """
    if isinstance(value_schema, dict):
        kind = value_schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if "object" in kinds or isinstance(value_schema.get("properties"), dict):
            return "extract"
        if "boolean" in kinds and request_condition(user_text) is not None:
            return "filter"
    return "map"
