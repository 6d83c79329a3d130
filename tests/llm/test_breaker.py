"""The circuit breaker: systemic endpoint failures stop a run within seconds, over real HTTP.

A closed port, a refused key, an unknown model, a server failing every call:
the client raises :class:`LLMEndpointError` (one line naming the endpoint, the
cause and a hint) and the operators let it through instead of writing
thousands of ``api_error`` nulls.  Isolated failures (a server failing 75% of
requests) must not trip it.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx2
import polars as pl
import pytest

import rlm_pipeline as rp
from rlm_pipeline.errors import InputError, LLMEndpointError, LLMError
from rlm_pipeline.llm.breaker import SERVER_ERROR_CALLS, Breaker, connect_error, reraised
from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM, Budget, Price
from rlm_pipeline.llm.retry import RetryPolicy
from rlm_pipeline.llm.transport import LeanTransport
from rlm_pipeline.llm.usage import UsageMeter
from rlm_pipeline.sim.classifier import intended_label
from tests.llm.helpers import LABELS, classify_messages, ticket

SimFactory = Callable[..., Any]


def _closed_port() -> int:
    """A local port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _dead_llm(**changes: Any) -> LLM:
    base: dict[str, Any] = {
        "model": "sim-1",
        "base_url": f"http://127.0.0.1:{_closed_port()}/v1",
        "api_key": "k",
    }
    return LLM(**{**base, **changes})


def _frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": range(n), "q": [ticket(i) for i in range(n)]})


class CountingTransport(LeanTransport):
    """The client's own transport, counting the TCP connections it tries to open."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def _connect(self, origin: Any, timeout: float | None, request: Any) -> Any:
        self.attempts += 1
        return await super()._connect(origin, timeout, request)


# ------------------------------------------------------------------ client level


def test_closed_port_fails_fast_with_a_handful_of_connects() -> None:
    llm = _dead_llm()
    transport = CountingTransport()

    async def run() -> list[BaseException]:
        http = httpx2.AsyncClient(transport=transport)
        client = LLMClient(llm, http_client=http)  # the default retry policy
        try:
            calls = [client.chat(classify_messages(ticket(i))) for i in range(64)]
            return [r for r in await asyncio.gather(*calls, return_exceptions=True)]
        finally:
            await client.aclose()
            await http.aclose()

    started = time.monotonic()
    outcomes = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert elapsed < 10
    assert all(isinstance(o, LLMEndpointError) for o in outcomes)
    first = outcomes[0]
    assert isinstance(first, LLMEndpointError)
    assert str(first) == f"connection refused at {llm.base_url} — is the server running?"
    assert first.cause == "connection_refused" and first.endpoint == llm.base_url
    # 32 slots: the first wave tries, then one call retries for all (3 tries in all).
    assert transport.attempts <= llm.max_concurrency + 2


def test_one_call_to_a_closed_port_tries_three_times_then_stops() -> None:
    llm = _dead_llm()
    transport = CountingTransport()

    async def run() -> tuple[LLMEndpointError, LLMEndpointError, int]:
        http = httpx2.AsyncClient(transport=transport)
        async with LLMClient(llm, http_client=http) as client:
            with pytest.raises(LLMEndpointError) as first:
                await client.chat(classify_messages("x"))
            sent = transport.attempts
            with pytest.raises(LLMEndpointError) as later:  # tripped: nothing more is sent
                await client.chat(classify_messages("y"))
            usage = client.usage
        await http.aclose()
        assert usage.failed_calls == 1 and usage.calls == 0
        return first.value, later.value, sent

    started = time.monotonic()
    first, later, sent = asyncio.run(run())
    assert time.monotonic() - started < 5
    assert sent == 3 and transport.attempts == 3 and first.attempts == 3
    assert str(later) == str(first) and later is not first


def test_401_trips_at_once_with_the_key_hint(sim_factory: SimFactory) -> None:
    sim = sim_factory(require_api_key="right-key")
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="wrong-key")

    async def run() -> tuple[LLMEndpointError, LLMEndpointError]:
        async with LLMClient(llm) as client:
            with pytest.raises(LLMEndpointError) as first:
                await client.chat(classify_messages("x"))
            with pytest.raises(LLMEndpointError) as second:
                await client.json(classify_messages("y"), {"type": "object"}, name="r")
        return first.value, second.value

    first, second = asyncio.run(run())
    assert sim.stats()["requests"] == 1
    assert str(first) == (
        f"HTTP 401 from {sim.base_url}: the API key was refused — check OPENAI_API_KEY (or api_key=)"
    )
    assert first.status == 401 and first.cause == "unauthorized" and str(second) == str(first)


def test_unknown_model_404_names_the_model_and_the_models_route(sim_factory: SimFactory) -> None:
    sim = sim_factory(strict_models=True)
    llm = LLM(model="no-such-model", base_url=sim.base_url, api_key="k")

    async def run() -> LLMEndpointError:
        async with LLMClient(llm) as client:
            with pytest.raises(LLMEndpointError) as info:
                await client.chat(classify_messages("x"))
        return info.value

    err = asyncio.run(run())
    assert sim.stats()["requests"] == 1
    assert err.status == 404 and err.cause == "not_found"
    assert "unknown model 'no-such-model'?" in str(err)
    assert f"GET {sim.base_url}/models" in str(err)
    # a served model still works on a strict server
    ok = rp.classify(_frame(3), "q", LABELS, LLM(model="sim-1", base_url=sim.base_url, api_key="k"))
    assert ok["label_error"].null_count() == 3


def test_tls_to_a_plain_http_port_names_tls(sim: Any) -> None:
    llm = LLM(model="sim-1", base_url=sim.base_url.replace("http://", "https://"), api_key="k")

    async def run() -> LLMEndpointError:
        async with LLMClient(llm, retry=RetryPolicy(base_delay_s=0.01)) as client:
            with pytest.raises(LLMEndpointError) as info:
                await client.chat(classify_messages("x"))
        return info.value

    err = asyncio.run(run())
    assert err.cause == "tls" and str(err).startswith(f"TLS handshake with {llm.base_url} failed")
    assert "http:// vs https://" in str(err)


def test_every_call_500_trips_after_the_first_calls(sim_factory: SimFactory) -> None:
    sim = sim_factory(fault_500=1.0)
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k", max_concurrency=16)
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        rp.classify(_frame(5_000), "q", LABELS, llm)
    elapsed = time.monotonic() - started
    assert elapsed < 10
    err = info.value
    assert err.status == 500 and err.cause == "server_error"
    assert str(err).startswith(f"HTTP 500 from {sim.base_url} on every call (")
    assert "the server is failing — check its logs" in str(err)
    requests = sim.stats()["requests"]
    # 32 calls at work (twice the concurrency), a few tries each within the 2 s span, then nothing
    assert SERVER_ERROR_CALLS <= requests <= 2 * 16 * 4


def test_isolated_failures_do_not_trip(sim_factory: SimFactory) -> None:
    sim = sim_factory(fault_500=0.75, seed=3)
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k", max_retries=3)
    df = _frame(400)
    out = rp.classify(df, "q", LABELS, llm)
    assert out["id"].to_list() == list(range(400))  # every row once, in order
    reasons = out["label_error"].drop_nulls().to_list()
    answered = out.filter(pl.col("label").is_not_null())
    assert reasons and all(r.startswith("api_error: 500 after 4 tries") for r in reasons)
    assert answered.height > 0 and answered.height + len(reasons) == 400
    pairs = zip(answered["q"], answered["label"], strict=True)
    assert all(label == intended_label(q, LABELS) for q, label in pairs)


def test_after_a_success_connection_errors_are_per_call_again(sim_factory: SimFactory) -> None:
    sim = sim_factory()
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k")
    policy = RetryPolicy(max_retries=2, base_delay_s=0.001, max_delay_s=0.002)

    async def run() -> BaseException:
        async with LLMClient(llm, retry=policy) as client:
            await client.chat(classify_messages("x"))
            await asyncio.to_thread(sim.__exit__, None, None, None)  # the server goes away
            with pytest.raises(LLMError) as info:
                await client.chat(classify_messages("y"))
            return info.value

    err = asyncio.run(run())
    assert not isinstance(err, LLMEndpointError)
    assert "connection error after 3 tries" in str(err)


def test_a_breaker_never_trips_on_a_mix_of_statuses() -> None:
    breaker = Breaker("http://127.0.0.1:9/v1", "m")
    for call in range(40):
        assert breaker.on_status(500 if call % 2 else 502, "", call=call) is None
    breaker.success()
    assert breaker.on_status(401, "", call=99) is None  # disarmed after the first success
    assert breaker.tripped is None


def test_quota_exhausted_429_trips() -> None:
    breaker = Breaker("http://127.0.0.1:9/v1", "m")
    assert breaker.on_status(429, "Rate limit reached", call=0) is None
    err = breaker.on_status(429, '{"error": {"code": "insufficient_quota"}}', call=1)
    assert err is not None and err.cause == "quota" and "quota is exhausted" in str(err)


def test_dns_failures_are_named() -> None:
    import openai

    request = httpx2.Request("POST", "http://nowhere.invalid/v1/chat/completions")
    failed = openai.APIConnectionError(request=request)
    failed.__cause__ = httpx2.ConnectError("cannot connect", request=request)
    failed.__cause__.__cause__ = socket.gaierror(-2, "Name or service not known")
    err = connect_error("http://nowhere.invalid/v1", failed)
    assert err.cause == "dns"
    assert str(err) == (
        "cannot resolve host 'nowhere.invalid' of http://nowhere.invalid/v1 (DNS) — check the base URL"
    )


def test_endpoint_errors_pickle_and_are_rebuilt_from_tracebacks() -> None:
    err = LLMEndpointError("HTTP 403 from http://127.0.0.1:9/v1: no", endpoint="http://127.0.0.1:9/v1",
                           cause="forbidden", status=403, attempts=2)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.endpoint, back.cause, back.status, back.attempts) == (
        str(err), "http://127.0.0.1:9/v1", "forbidden", 403, 2
    )
    text = f"Traceback (most recent call last):\n  ...\nrlm_pipeline.errors.LLMEndpointError: {err}\n"
    again = reraised(text, "http://127.0.0.1:9/v1")
    assert again is not None and str(again) == str(err) and again.cause == "forbidden"
    refused = reraised("x\nLLMEndpointError: connection refused at http://127.0.0.1:9/v1 — is the server"
                       " running?\n", "http://127.0.0.1:9/v1")
    assert refused is not None and refused.cause == "connection_refused"


# ----------------------------------------------------------- no endpoint, no price


def test_no_key_and_no_base_url_fails_before_any_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        rp.classify(_frame(100), "q", LABELS, LLM(model="gpt-4.1-mini"))
    assert time.monotonic() - started < 5
    assert info.value.cause == "no_endpoint"
    assert "set OPENAI_API_KEY" in str(info.value) and "OPENAI_BASE_URL" in str(info.value)
    # a local server needs no key
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    with pytest.raises(LLMEndpointError) as refused:
        rp.classify(_frame(3), "q", LABELS, LLM(model="gpt-4.1-mini"))
    assert refused.value.cause == "connection_refused"


def test_cost_budget_for_an_unpriced_model_is_refused_before_any_call(sim: Any) -> None:
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k")
    assert not llm.has_price() and llm.known_price() is None and llm.price() == Price(0, 0)
    with pytest.raises(InputError) as info:
        rp.classify(_frame(50), "q", LABELS, llm, budget=Budget(max_cost_usd=0.01))
    assert str(info.value) == (
        "no price for model 'sim-1': pass --price-input/--price-output (USD per 1M tokens) "
        "or rp.Price via LLM(prices=...)"
    )
    with pytest.raises(InputError):
        rp.RLM(root=llm, budget=rp.Budget(max_cost_usd=1.0)).run("how many?", _frame(5), "q")
    assert sim.stats()["requests"] == 0
    # priced through LLM(prices=...), the same run goes, and stays under the limit
    priced = LLM(model="sim-1", base_url=sim.base_url, api_key="k",
                 prices={"sim-1": Price(1.0, 4.0)})
    meter = UsageMeter()
    out = rp.classify(_frame(50), "q", LABELS, priced, budget=Budget(max_cost_usd=0.01),
                      meter=meter)
    assert out["label_error"].null_count() == 50
    assert 0 < meter.snapshot().cost_usd <= 0.01
    # a budget without a cost limit needs no price
    rp.classify(_frame(5), "q", LABELS, llm, budget=Budget(max_calls=10))
    # and an estimate shows no made-up cost
    assert rp.estimate(_frame(50), "q", LABELS, llm).cost_usd is None
    assert rp.estimate(_frame(50), "q", LABELS, priced).cost_usd > 0


# ------------------------------------------------------------------- operators


@pytest.mark.parametrize("how", ["classify", "llm_map", "lazy", "namespace"])
def test_operators_over_5000_rows_stop_within_seconds_on_a_closed_port(how: str) -> None:
    llm = _dead_llm()
    df = _frame(5_000)
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        if how == "classify":
            rp.classify(df, "q", LABELS, llm)
        elif how == "llm_map":
            rp.llm_map(df, "q", "Count the words", llm, "integer")
        elif how == "lazy":
            rp.classify(df.lazy(), "q", LABELS, llm).collect()
        else:
            df.with_columns(label=pl.col("q").rlm.classify(LABELS, llm=llm))
    assert time.monotonic() - started < 10
    first_line = str(info.value).splitlines()[0]
    assert first_line == f"connection refused at {llm.base_url} — is the server running?"


def test_rlm_run_stops_on_a_closed_port() -> None:
    llm = _dead_llm()
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        rp.RLM(root=llm).run("How many tickets are about billing?", _frame(50), "q")
    assert time.monotonic() - started < 10
    assert info.value.cause == "connection_refused"


# ------------------------------------------------------------------------ Spark


def test_spark_dead_endpoint_fails_on_the_driver(spark: Any, sim_factory: SimFactory,
                                                 tmp_path: Any) -> None:
    df = spark.createDataFrame(_frame(200).to_arrow()).repartition(2)
    # nothing listening: the driver's preflight stops it before any task starts
    dead = _dead_llm()
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        rp.classify(df, "q", LABELS, dead)  # eager: the driver's preflight (rp.spark.* is lazy)
    assert time.monotonic() - started < 10
    assert str(info.value) == f"connection refused at {dead.base_url} — is the server running?"

    # a refused key: one request (the preflight), counted in the usage
    sim = sim_factory(require_api_key="right-key")
    wrong = LLM(model="sim-1", base_url=sim.base_url, api_key="wrong-key")
    meter = UsageMeter()
    with pytest.raises(LLMEndpointError) as refused:
        rp.classify(df, "q", LABELS, wrong, meter=meter)
    assert refused.value.cause == "unauthorized" and sim.stats()["requests"] == 1
    assert meter.snapshot().failed_calls == 1

    # the preflight passed (its reply is cached), then the server went away: the
    # tasks' breakers trip and the driver raises the same one-line error
    live = sim_factory()
    cache = str(tmp_path / "c.sqlite")
    llm = LLM(model="sim-1", base_url=live.base_url, api_key="k", cache_path=cache)
    first = rp.classify(df.limit(10), "q", LABELS, llm)
    assert first.filter("label_error IS NOT NULL").count() == 0
    live.__exit__(None, None, None)
    with pytest.raises(LLMEndpointError) as tripped:
        rp.classify(df, "q", LABELS, llm)
    assert str(tripped.value) == f"connection refused at {live.base_url} — is the server running?"
    assert tripped.value.cause == "connection_refused"


def test_rlm_run_stops_when_the_sub_models_endpoint_is_dead(sim: Any) -> None:
    root = LLM(model="sim-1", base_url=sim.base_url, api_key="k")
    dead = _dead_llm()
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:  # not a tool error the root retries around
        rp.RLM(root=root, sub=dead).run("How many tickets are about billing?", _frame(50), "q")
    assert time.monotonic() - started < 10
    assert str(info.value) == f"connection refused at {dead.base_url} — is the server running?"


@pytest.mark.parametrize(
    ("knobs", "changes", "cause"),
    [
        ({"require_api_key": "right-key"}, {"api_key": "wrong-key"}, "unauthorized"),
        ({"strict_models": True}, {"model": "no-such-model"}, "not_found"),
    ],
)
def test_classify_5000_rows_refused_by_the_server_stops_at_once(
    sim_factory: SimFactory, knobs: dict[str, Any], changes: dict[str, Any], cause: str
) -> None:
    sim = sim_factory(**knobs)
    llm = LLM(**{"model": "sim-1", "base_url": sim.base_url, "api_key": "k", **changes})
    started = time.monotonic()
    with pytest.raises(LLMEndpointError) as info:
        rp.classify(_frame(5_000), "q", LABELS, llm)
    assert time.monotonic() - started < 10
    assert info.value.cause == cause and info.value.endpoint == sim.base_url
    # the first wave at most (here: the structured-mode probe alone), never a try per row
    assert 1 <= sim.stats()["requests"] <= llm.max_concurrency
