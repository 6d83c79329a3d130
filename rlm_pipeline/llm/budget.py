"""A shareable budget guard: stop before a limit would be passed, even under concurrency.

:class:`BudgetGuard` joins a :class:`~rlm_pipeline.llm.config.Budget` (the
limits) and a :class:`~rlm_pipeline.llm.usage.UsageMeter` (what was spent).
Before a request is sent, the client *reserves* its projected spend (one call,
estimated prompt tokens + reply allowance, their cost) with
:meth:`BudgetGuard.reserve_request`.  When the budget limits tokens or cost, the
reply allowance is cut to what is left after the prompt, and the client sends
that same number as the request's ``max_tokens``: the server cannot write a
longer reply than was booked, so the meter cannot pass the limit (as long as
the prompt's estimated token count is not below the server's).  A request is
refused when spent + already-reserved + its prompt + one reply token would pass
a limit, so 32 requests in flight cannot jointly overshoot.  When the reply
arrives the client records the real usage in the meter and releases the
reservation.

One guard may serve several clients (the RLM root and sub models) and several
threads; its state is guarded by a :class:`threading.Lock`.  Clients built with
the same meter and an equal budget get the same guard (:func:`shared_guard`),
so their in-flight reservations count together.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from dataclasses import dataclass

from rlm_pipeline.errors import BudgetExceededError
from rlm_pipeline.llm.config import Budget, Price
from rlm_pipeline.llm.usage import UsageMeter

__all__ = ["BudgetGuard", "Reservation", "shared_guard"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    """Projected spend of one in-flight request.

    Attributes
    ----------
    tokens
        Prompt + reply tokens booked.
    cost_usd
        Their cost.
    reply_tokens
        The reply allowance booked (the ``max_tokens`` to send), when the
        reservation was made by :meth:`BudgetGuard.reserve_request`.
    """

    tokens: int
    cost_usd: float
    reply_tokens: int | None = None


class BudgetGuard:
    """Refuse requests whose projected spend would pass the budget.

    Parameters
    ----------
    budget
        The limits; ``None`` fields are unlimited.
    meter
        Where real usage is recorded (shared with the clients using this guard).

    Examples
    --------
    >>> guard = BudgetGuard(Budget(max_calls=1), UsageMeter())
    >>> r = guard.reserve_request(prompt_tokens=10, reply_tokens=5, price=Price(0.0, 0.0))
    >>> try:
    ...     guard.reserve_request(prompt_tokens=10, reply_tokens=5, price=Price(0.0, 0.0))
    ... except BudgetExceededError as exc:
    ...     print(exc.what)
    calls
    >>> guard.release(r)
    """

    def __init__(self, budget: Budget, meter: UsageMeter) -> None:
        self.budget = budget
        self.meter = meter
        self._lock = threading.Lock()
        self._calls = 0
        self._tokens = 0
        self._cost = 0.0

    def reserve_request(
        self, *, prompt_tokens: int, reply_tokens: int, price: Price
    ) -> Reservation:
        """Book one request, cutting its reply allowance to what the budget has left.

        The allowance booked is the smaller of ``reply_tokens`` (the caller's
        ``max_tokens`` or a default) and what the token and cost limits leave
        after everything spent and reserved and this request's
        ``prompt_tokens`` (estimated, priced with ``price``).  The caller must
        send the returned ``reply_tokens`` as the request's ``max_tokens``:
        then the real spend cannot pass the booking.

        Returns
        -------
        Reservation
            With ``reply_tokens`` set to the allowance booked (at least 1).

        Raises
        ------
        BudgetExceededError
            When not even the prompt and one reply token fit, or the call limit is reached.

        Examples
        --------
        >>> guard = BudgetGuard(Budget(max_tokens=300), UsageMeter())
        >>> guard.reserve_request(prompt_tokens=100, reply_tokens=256, price=Price(0, 0)).reply_tokens
        200
        """
        budget = self.budget
        reply = max(1, int(reply_tokens))
        with self._lock:
            spent = self.meter.snapshot()
            if budget.max_calls is not None:
                committed = spent.calls + self._calls
                if committed + 1 > budget.max_calls:
                    self._refuse("calls", committed, budget.max_calls)
            if budget.max_tokens is not None:
                committed_tokens = spent.total_tokens + self._tokens
                room = budget.max_tokens - committed_tokens - prompt_tokens
                if room < 1:
                    self._refuse("tokens", committed_tokens, budget.max_tokens)
                reply = min(reply, room)
            if budget.max_cost_usd is not None:
                committed_cost = spent.cost_usd + self._cost
                left = budget.max_cost_usd - committed_cost
                if price.output_per_mtok > 0:
                    reply = _reply_room(price, prompt_tokens, reply, left)
                    if reply < 1:
                        self._refuse("cost_usd", committed_cost, budget.max_cost_usd)
                elif price.cost(prompt_tokens, 0) > left:
                    self._refuse("cost_usd", committed_cost, budget.max_cost_usd)
            tokens = prompt_tokens + reply
            cost = price.cost(prompt_tokens, reply)
            self._calls += 1
            self._tokens += tokens
            self._cost += cost
        return Reservation(tokens=tokens, cost_usd=cost, reply_tokens=reply)

    def exhausted(self) -> BudgetExceededError:
        """The error for a budget too spent to fit a complete reply (token limit first)."""
        budget = self.budget
        spent = self.meter.snapshot()
        if budget.max_tokens is not None:
            return BudgetExceededError("tokens", spent.total_tokens, budget.max_tokens)
        return BudgetExceededError("cost_usd", spent.cost_usd, budget.max_cost_usd or 0.0)

    def limits_reply(self, price: Price) -> bool:
        """Whether this budget bounds reply length (a token limit, or a cost limit on a priced reply)."""
        budget = self.budget
        return budget.max_tokens is not None or (
            budget.max_cost_usd is not None and price.output_per_mtok > 0
        )

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation (after its real usage was recorded, or it failed)."""
        with self._lock:
            self._calls -= 1
            self._tokens -= reservation.tokens
            self._cost -= reservation.cost_usd

    @property
    def in_flight(self) -> int:
        """Requests holding a reservation right now."""
        with self._lock:
            return self._calls

    @staticmethod
    def _refuse(what: str, committed: float, limit: float) -> None:
        logger.debug("budget: refusing request, %s committed %g of %g", what, committed, limit)
        raise BudgetExceededError(what, committed, limit)


def _reply_room(price: Price, prompt_tokens: int, wanted: int, left_usd: float) -> int:
    """The most reply tokens, up to ``wanted``, whose call with the prompt costs at most ``left_usd``."""
    if price.cost(prompt_tokens, wanted) <= left_usd:
        return wanted
    per_token = price.output_per_mtok / 1e6
    room = math.floor((left_usd - price.cost(prompt_tokens, 0)) / per_token)
    room = min(wanted, room)
    # Float rounding can put the floor one off either way.
    while room + 1 <= wanted and price.cost(prompt_tokens, room + 1) <= left_usd:
        room += 1
    while room > 0 and price.cost(prompt_tokens, room) > left_usd:
        room -= 1
    return room


_GUARDS_LOCK = threading.Lock()
_GUARDS: weakref.WeakKeyDictionary[UsageMeter, dict[Budget, BudgetGuard]] = (
    weakref.WeakKeyDictionary()
)


def shared_guard(budget: Budget, meter: UsageMeter) -> BudgetGuard:
    """The one guard of this meter and budget, created on first use.

    Several clients given the same ``meter`` and an equal ``budget`` (the RLM
    root and sub clients) thus share reservations.  Guards live as long as
    their meter.

    Examples
    --------
    >>> meter = UsageMeter()
    >>> shared_guard(Budget(max_calls=5), meter) is shared_guard(Budget(max_calls=5), meter)
    True
    """
    with _GUARDS_LOCK:
        by_budget = _GUARDS.setdefault(meter, {})
        guard = by_budget.get(budget)
        if guard is None:
            guard = by_budget[budget] = BudgetGuard(budget, meter)
        return guard
