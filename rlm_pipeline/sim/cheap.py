"""The simulator's "cheap model": right with a set probability, with a confidence per answer.

A :class:`~rlm_pipeline.sim.config.SimConfig` with ``accuracy`` below 1
answers each classified row with :func:`~rlm_pipeline.sim.classifier.intended_label`
with probability ``accuracy`` and with another label otherwise (a filter row:
the keyword model's judgement, or its opposite).  The draw is
a hash of the seed and the text, so the same text gets the same answer in
every call, batch and process (a cascade's calibration sample sees what the
full pass sees).

Every classify and filter answer also has a confidence in (0, 1): what the simulator
reports as a verbalised ``confidence`` field (when the reply schema has one)
and as the log-probability of the label's first token (when the request asks
for ``logprobs``, see :mod:`rlm_pipeline.sim.logprobs`).  With
``confidence="informative"`` right answers get confidences in
``[0.55, 1.0)`` and wrong ones in ``[0.10, 0.60)`` (overlapping, so a
threshold has to be chosen with care); with ``"random"`` the confidence is
uniform in ``[0.10, 1.0)`` whatever the answer — an uninformative proxy.

Examples
--------
>>> labels = ("billing", "technical", "account", "other")
>>> text = "I was charged twice, please refund me"
>>> cheap_answer(text, labels, accuracy=1.0, seed=0, confidence="informative")[0]
'billing'
>>> answers = [cheap_answer(f"refund {i}", labels, 0.85, 0, "informative") for i in range(2000)]
>>> right = [a for a in answers if a[0] == "billing"]
>>> 0.82 < len(right) / 2000 < 0.88, min(c for _, c in right) >= 0.55
(True, True)
>>> max(c for label, c in answers if label != "billing") < 0.6
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from rlm_pipeline.sim.classifier import intended_label
from rlm_pipeline.sim.config import CONFIDENCE_MODES

__all__ = ["CONFIDENCE_MODES", "CheapModel", "cheap_answer", "cheap_judgement"]


_RIGHT = (0.55, 1.0)
_WRONG = (0.10, 0.60)
_RANDOM = (0.10, 1.0)


def _uniforms(seed: int, text: str) -> tuple[float, float, int]:
    """Three stable draws for ``text``: two uniforms in [0, 1) and an integer."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode("utf-8", "replace")).digest()
    scale = float(1 << 53)
    first = (int.from_bytes(digest[0:8], "big") >> 11) / scale
    second = (int.from_bytes(digest[8:16], "big") >> 11) / scale
    return first, second, int.from_bytes(digest[16:24], "big")


def cheap_answer(
    text: str, labels: Sequence[str], accuracy: float, seed: int, confidence: str
) -> tuple[str, float]:
    """The label the simulated model gives ``text`` and its confidence.

    Parameters
    ----------
    text
        The row's text.
    labels
        The label set (at least one).
    accuracy
        Probability that the answer is :func:`intended_label`'s (1.0: always).
    seed
        Seed of the draws (the simulator's ``seed``).
    confidence
        One of :data:`CONFIDENCE_MODES`.

    Returns
    -------
    tuple[str, float]
        The label and a confidence in (0, 1).
    """
    labels = tuple(labels)
    right = intended_label(text, labels)
    pick, spread, other = _uniforms(seed, text)
    wrong = pick >= accuracy and len(labels) > 1
    label = right
    if wrong:
        others = [candidate for candidate in labels if candidate != right]
        label = others[other % len(others)]
    return label, _spread(wrong, spread, confidence)


def _spread(wrong: bool, spread: float, confidence: str) -> float:
    """The confidence of an answer, right or ``wrong``, from a uniform draw."""
    if confidence == "random":
        low, high = _RANDOM
    else:
        low, high = _WRONG if wrong else _RIGHT
    return low + (high - low) * spread


def cheap_judgement(
    text: str, holds: bool, accuracy: float, seed: int, confidence: str
) -> tuple[bool, float]:
    """A filter's answer for ``text`` (``holds``: the keyword model's) under the cheap mode.

    Examples
    --------
    >>> cheap_judgement("refund me", True, 1.0, 0, "informative")[0]
    True
    """
    pick, spread, _ = _uniforms(seed, text)
    wrong = pick >= accuracy
    return (not holds) if wrong else holds, _spread(wrong, spread, confidence)


@dataclass(frozen=True)
class CheapModel:
    """The simulator's classify answers under ``accuracy``, ``seed`` and ``confidence``.

    Examples
    --------
    >>> CheapModel().answer("The app crashes on start", ("billing", "technical"))[0]
    'technical'
    """

    accuracy: float = 1.0
    seed: int = 0
    confidence: str = "informative"

    def answer(self, text: str, labels: Sequence[str]) -> tuple[str, float]:
        """``(label, confidence)`` for one row (:func:`cheap_answer`)."""
        return cheap_answer(text, labels, self.accuracy, self.seed, self.confidence)

    def judge(self, text: str, holds: bool) -> tuple[bool, float]:
        """``(answer, confidence)`` of a filter row (:func:`cheap_judgement`)."""
        return cheap_judgement(text, holds, self.accuracy, self.seed, self.confidence)
