"""Token log-probabilities for the simulator's replies (``logprobs: true`` in a request).

The reply text is cut into tokens (words, runs of spaces, single punctuation
marks); each token gets a log-probability in OpenAI's chat format
(``choices[0].logprobs.content``: ``token``, ``logprob``, ``bytes``,
``top_logprobs``).  The first token of each classify label (or filter
value) carries ``log(confidence)`` of that row's answer (:mod:`rlm_pipeline.sim.cheap`), the
label's other tokens and the JSON around it are near-certain (-0.001), as
with a real model whose choice is made at the label's first token.

Examples
--------
>>> content = '{"label": "billing"}'
>>> tokens = token_logprobs(content, [0.5], top=2)
>>> "".join(t["token"] for t in tokens) == content
True
>>> [round(t["logprob"], 3) for t in tokens if t["token"] == "billing"]
[-0.693]
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["label_value_starts", "token_logprobs"]

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_ANSWER_VALUE = re.compile(r'"(?:label|value)"\s*:\s*"?')
_SURE = -0.001


def label_value_starts(content: str) -> list[int]:
    """Character offsets where each answer's text starts (``"label": "…``, ``"value": …``), in order."""
    return [match.end() for match in _ANSWER_VALUE.finditer(content)]


def token_logprobs(
    content: str, confidences: Sequence[float], *, top: int = 0
) -> list[dict[str, Any]]:
    """The ``logprobs.content`` list of a reply whose i-th label has ``confidences[i]``.

    ``top`` alternatives per token go to ``top_logprobs`` (the chosen token
    first; at a label, a made-up alternative with the rest of the mass).
    """
    starts = label_value_starts(content)
    chosen: dict[int, float] = {}
    for start, conf in zip(starts, confidences, strict=False):
        chosen[start] = math.log(min(max(conf, 1e-6), 1.0))
    out: list[dict[str, Any]] = []
    for match in _TOKEN.finditer(content):
        token = match.group(0)
        logprob = chosen.get(match.start(), _SURE)
        alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
        if top >= 2 and match.start() in chosen:
            rest = math.log(max(1.0 - math.exp(logprob), 1e-6))
            alternatives.append({"token": "other", "logprob": rest, "bytes": list(b"other")})
        out.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": alternatives[: max(top, 0)],
            }
        )
    return out
