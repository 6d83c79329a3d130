"""How many reply tokens a request books, and whether it sends that as ``max_tokens``.

Pure functions, no client state: the client books the allowance with the
budget guard and the tpm limiter and, when any booking depends on it, sends it
as ``max_tokens``, so a reply cannot be longer than what was booked.

Examples
--------
>>> wanted_reply_tokens(prompt_tokens=900, max_tokens=None, structured=True)
900
>>> reply_allowance(wanted=900, budget_cut=300, bounded=True)
Allowance(wanted=900, booked=300, sent=300)
>>> reply_allowance(wanted=1024, budget_cut=None, bounded=False)
Allowance(wanted=1024, booked=1024, sent=None)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_CHAT_REPLY_TOKENS",
    "DEFAULT_REPLY_TOKENS",
    "Allowance",
    "reply_allowance",
    "wanted_reply_tokens",
]

#: Reply allowance booked for budget and tpm projections when ``max_tokens`` is not given
#: (structured requests: the prompt's token count when larger); sent as ``max_tokens``
#: when a token / priced cost budget or ``tpm`` depends on it.
DEFAULT_REPLY_TOKENS = 256
#: The same allowance for plain chat / tool-call replies (the RLM root's turns): a tool
#: call with SQL and an explanation must not be cut.
DEFAULT_CHAT_REPLY_TOKENS = 1024


@dataclass(frozen=True)
class Allowance:
    """The reply allowance of one request.

    Attributes
    ----------
    wanted
        What the request would book with no budget (the caller's ``max_tokens`` or a default).
    booked
        What it books: ``wanted``, cut to what the budget has left.
    sent
        The ``max_tokens`` sent, or None when none is.
    """

    wanted: int
    booked: int
    sent: int | None

    @property
    def cut_by_budget(self) -> bool:
        """Whether the budget, not the caller, set a smaller limit than wanted."""
        return self.sent is not None and self.sent < self.wanted


def wanted_reply_tokens(*, prompt_tokens: int, max_tokens: int | None, structured: bool) -> int:
    """The reply tokens a request books before the budget has its say.

    The caller's ``max_tokens``; else, for a structured request, the prompt's
    size when larger than :data:`DEFAULT_REPLY_TOKENS` (a structured reply
    answers the rows in its prompt: a batch of 64 labels is ~500 tokens); else
    :data:`DEFAULT_CHAT_REPLY_TOKENS`.

    Examples
    --------
    >>> wanted_reply_tokens(prompt_tokens=10, max_tokens=None, structured=True)
    256
    >>> wanted_reply_tokens(prompt_tokens=10, max_tokens=5, structured=False)
    5
    """
    if max_tokens is not None:
        return max_tokens
    if structured:
        return max(DEFAULT_REPLY_TOKENS, prompt_tokens)
    return DEFAULT_CHAT_REPLY_TOKENS


def reply_allowance(*, wanted: int, budget_cut: int | None, bounded: bool) -> Allowance:
    """The allowance booked and sent.

    Parameters
    ----------
    wanted
        From :func:`wanted_reply_tokens`.
    budget_cut
        The allowance the budget guard booked (``Reservation.reply_tokens``), or None.
    bounded
        Whether a limit must be sent: the caller gave ``max_tokens``, or a tpm
        limit or a token / priced cost budget depends on the booking.

    Examples
    --------
    >>> reply_allowance(wanted=256, budget_cut=None, bounded=True).sent
    256
    """
    booked = budget_cut if budget_cut is not None else wanted
    return Allowance(wanted=wanted, booked=booked, sent=booked if bounded else None)
