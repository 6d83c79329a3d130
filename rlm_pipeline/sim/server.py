"""Serving the simulator: :class:`SimServer` (background thread) and :func:`serve` (CLI).

Both run real uvicorn on a real socket.  Control calls (``stats``,
``reset_stats``, ``set_config``) go over HTTP, so they work the same from
another process (a Spark executor, a benchmark script).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from types import TracebackType
from typing import Any

from rlm_pipeline.errors import InputError
from rlm_pipeline.sim.app import build_app
from rlm_pipeline.sim.config import SimConfig

__all__ = ["SimServer", "is_loopback", "serve"]

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_BACKLOG = 4096


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` counts).

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
    (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int, allow_remote: bool) -> socket.socket:
    if not allow_remote and not is_loopback(host):
        msg = f"refusing to serve the simulator on non-loopback host {host!r} (allow_remote=False)"
        raise InputError(msg)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets
    # whose proto says TCP; without it every reply waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(_BACKLOG)  # clients may connect (and queue) before uvicorn is up
    except OSError as exc:
        sock.close()
        msg = f"cannot listen on {host}:{port}: {exc}"
        raise InputError(msg) from exc
    return sock


@lru_cache(maxsize=1)
def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's server, but stopping at once instead of on its next 0.1 s tick."""

        wake: asyncio.Event | None = None
        loop: asyncio.AbstractEventLoop | None = None

        async def main_loop(self) -> None:
            self.loop = asyncio.get_running_loop()
            self.wake = asyncio.Event()
            counter = 0
            while not await self.on_tick(counter):
                counter = (counter + 10) % 864000  # on_tick refreshes the Date header every 10
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)

        def request_exit(self) -> None:
            self.should_exit = True
            if self.loop is not None and self.wake is not None:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    self.loop.call_soon_threadsafe(self.wake.set)

    return _Server


def _uvicorn_server(config: SimConfig) -> Any:
    import uvicorn

    uv_config = uvicorn.Config(
        build_app(config),
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=_BACKLOG,
    )
    return _server_class()(uv_config)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SimServer:
    """The simulator on a free loopback port, served by uvicorn in a daemon thread.

    Parameters
    ----------
    config
        Knobs; defaults to :class:`SimConfig` ``()``.
    host, port
        Where to listen; port 0 picks a free one.
    allow_remote
        Needed to listen on a non-loopback address.

    Examples
    --------
    >>> from openai import OpenAI
    >>> with SimServer(SimConfig()) as sim:
    ...     client = OpenAI(base_url=sim.base_url, api_key="x")
    ...     models = [m.id for m in client.models.list()]
    ...     client.close()
    >>> "sim-1" in models
    True
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self._requested_port = port
        self._allow_remote = allow_remote
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._http: Any = None
        self._lock = threading.Lock()
        self.port = 0

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def start(self) -> SimServer:
        """Bind, start serving and wait until ready (raises :class:`InputError` on failure)."""
        if self._thread is not None:
            return self
        sock = _bind(self.host, self._requested_port, self._allow_remote)
        self.port = sock.getsockname()[1]
        self._server = _uvicorn_server(self.config)
        thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"sim-{self.port}",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                sock.close()
                msg = f"simulator failed to start on {self.url}"
                raise InputError(msg)
            time.sleep(0.002)
        self._thread = thread
        logger.debug("simulator serving on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (requests in progress get ~1 s to finish)."""
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None
        if self._thread is None:
            return
        self._server.request_exit()
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._thread = None
        logger.debug("simulator on port %d stopped", self.port)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        import httpx2

        with self._lock:
            if self._http is None:
                # verify=False: plain HTTP on loopback; skips loading CA certificates (~0.1 s)
                self._http = httpx2.Client(trust_env=False, verify=False, timeout=10.0)
            response = self._http.request(method, f"{self.url}{path}", json=payload)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise InputError(f"simulator {method} {path}: {message}")
        return response.json()

    def stats(self, *, log: bool = True) -> dict[str, Any]:
        """Traffic counters (``GET /stats``); see :class:`~rlm_pipeline.sim.stats.SimStats`."""
        return dict(self._control("GET", "/stats" if log else "/stats?log=0"))

    def reset_stats(self) -> None:
        """Zero the counters (``POST /stats/reset``)."""
        self._control("POST", "/stats/reset")

    def set_config(self, **changes: Any) -> SimConfig:
        """Change knobs live (``POST /config``), e.g. ``set_config(fault_500=0.3)``."""
        data = self._control("POST", "/config", changes)
        data["retry_after_s"] = tuple(data["retry_after_s"])
        data["models"] = tuple(data["models"])
        self.config = SimConfig(**data)
        return self.config


def serve(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    allow_remote: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the simulator in the calling thread until interrupted (Ctrl-C).

    ``ready``, if given, is called with the base URL once the socket is bound.
    """
    sock = _bind(host, port, allow_remote)
    bound_port = sock.getsockname()[1]
    if ready is not None:
        ready(f"http://{_url_host(host)}:{bound_port}/v1")
    _uvicorn_server(config).run(sockets=[sock])
