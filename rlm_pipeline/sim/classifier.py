"""The simulator's deterministic keyword classifier.

:func:`intended_label` is the "model" behind every classification sub-call the
simulator answers.  It counts keyword hits per label: each label's own words
(and their stems, so ``billing`` also matches ``billed``), plus a built-in
keyword list for common label names (the ticket labels, sentiment, spam).  The
label with the most hits wins; ties and texts without any hit get a stable,
hash-based choice, preferring ``other`` when it is a label.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = ["KEYWORDS", "intended_label"]

_TOKEN = re.compile(r"[a-z0-9]+")

#: Built-in keywords for common label names (matched as whole lower-case tokens).
KEYWORDS: dict[str, frozenset[str]] = {
    "billing": frozenset(
        "bill billed billing bills invoice invoices invoicing charge charged charges "
        "refund refunds refunded payment payments pay paid prepay receipt receipts vat "
        "discount pricing price subscription renewal credit statement bookkeeping "
        "overcharged".split()
    ),
    "technical": frozenset(
        "error errors crash crashes crashed crashing bug bugs slow load loading sync "
        "upload uploading api broken blank notifications export timeout freezes freeze "
        "freezing installer install outage render server connection webhooks webhook "
        "integration import".split()
    ),
    "account": frozenset(
        "password login log sign signin username email locked 2fa two factor delete "
        "profile verification activation teammate admin ownership merge accounts account "
        "session accessed".split()
    ),
    "other": frozenset(
        "feedback suggestion office hiring careers press partnership merch meetup sponsor "
        "newsletter unsubscribe recommend hours holidays logo loved visit interview "
        "books".split()
    ),
    "positive": frozenset(
        "good great love loved excellent amazing happy awesome fantastic best nice "
        "thanks wonderful".split()
    ),
    "negative": frozenset(
        "bad terrible awful hate hated worst poor angry broken disappointed horrible "
        "useless refund".split()
    ),
    "spam": frozenset("winner prize free click offer lottery viagra bitcoin urgent".split()),
}

#: Label names that mean "none of the others"; chosen when nothing matches.
_FALLBACK_LABELS = ("other", "others", "none", "unknown", "misc", "neutral")
_SUFFIXES = ("ical", "ing", "ment", "tion", "al", "ed", "es", "s")


def _stem(word: str) -> str:
    """Crude suffix stripping: billing -> bill, shipping -> ship, technical -> techn."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiouslz":
                stem = stem[:-1]
            return stem
    return word


@lru_cache(maxsize=256)
def _label_matchers(
    labels: tuple[str, ...],
) -> tuple[tuple[frozenset[str], tuple[str, ...]], ...]:
    """Per label: (whole-token keywords, stem prefixes)."""
    matchers = []
    for label in labels:
        words = _TOKEN.findall(label.lower())
        keywords: set[str] = set()
        stems: list[str] = []
        for word in words:
            keywords |= KEYWORDS.get(word, frozenset())
            if word not in _FALLBACK_LABELS:
                keywords.add(word)
                stem = _stem(word)
                if len(stem) >= 3:
                    stems.append(stem)
        matchers.append((frozenset(keywords), tuple(stems)))
    return tuple(matchers)


def _stable_pick(text: str, candidates: Sequence[str]) -> str:
    for fallback in _FALLBACK_LABELS:
        for label in candidates:
            if label.lower() == fallback:
                return label
    digest = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    return candidates[int.from_bytes(digest[:8], "big") % len(candidates)]


def intended_label(text: str, labels: Sequence[str]) -> str:
    """The label the simulator gives ``text``: most keyword hits, else a stable choice.

    Parameters
    ----------
    text
        The text to classify (``None``-like values should be passed as ``""``).
    labels
        Candidate labels, at least one.

    Returns
    -------
    str
        One of ``labels``.  Deterministic: the same text and labels always give
        the same answer, in any process.

    Examples
    --------
    >>> labels = ["billing", "technical", "account", "other"]
    >>> intended_label("I was charged twice, please refund me", labels)
    'billing'
    >>> intended_label("The app crashes on start", labels)
    'technical'
    >>> intended_label("Do you have an office in Lisbon?", labels)
    'other'
    >>> intended_label("Zebra sightings near the lake", ["cats", "zebras"])
    'zebras'
    """
    if not labels:
        msg = "intended_label needs at least one label"
        raise ValueError(msg)
    labels = tuple(labels)
    tokens = _TOKEN.findall(text.lower())
    best: list[str] = []
    best_score = 0
    for label, (keywords, stems) in zip(labels, _label_matchers(labels), strict=True):
        score = 0
        for token in tokens:
            if token in keywords or (stems and token.startswith(stems)):
                score += 1
        if score > best_score:
            best, best_score = [label], score
        elif score == best_score and score > 0:
            best.append(label)
    if len(best) == 1:
        return best[0]
    return _stable_pick(text, best or labels)
