"""Fixtures for simulator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from openai import OpenAI


@pytest.fixture
def client_for() -> Iterator[Callable[..., OpenAI]]:
    """Build sync openai clients (no retries unless asked) for a server; closed afterwards."""
    clients: list[OpenAI] = []

    def make(sim: Any, **kwargs: Any) -> OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("api_key", "sk-test")
        # plain HTTP on loopback: verify=False skips loading CA certificates (~0.1 s a client)
        kwargs.setdefault("http_client", httpx2.Client(trust_env=False, verify=False))
        client = OpenAI(base_url=sim.base_url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
