"""A lean HTTP/1.1 transport for the model client: keep-alive connections, little bookkeeping.

Why it exists: the client already bounds the requests in flight (its
semaphore), so all a transport has to do is reuse an idle connection or open
one, write the request and read the reply.  httpcore's general-purpose pool
rescans every connection on each request and each response (probing idle
sockets as it goes); at 64 connections that costs about as much CPU as the rest
of a call, and on a small machine that CPU decides how fast freed slots are
refilled (bench/fanout.py: 86% → 89% of the simulator's ceiling with the same
openai client on top).

What it does:

- HTTP/1.1 over asyncio streams, TLS with the given ``ssl.SSLContext`` for
  ``https`` (server name checked by the context, as in httpx);
- replies framed by ``Content-Length``, chunked transfer coding or connection
  close; informational (1xx) replies are skipped;
- idle connections kept per origin, last used first, at most ``max_idle`` in
  all; one the server closed, or that said ``Connection: close``, is never
  reused;
- the whole body is read before the response is returned (a chat completion is
  small; one above :data:`MAX_BODY_BYTES` is refused);
- timeouts and failures are raised as httpx exceptions (``ConnectTimeout``,
  ``ReadTimeout``, ``ConnectError``, ``RemoteProtocolError``, ...), so the
  openai client maps them as usual and our retry policy sees them.

Not handled here: HTTP/2, streaming replies (the client never streams) and
proxies — httpx mounts its own transports for the proxy environment variables,
and those take precedence for the URLs they cover.

Examples
--------
>>> import asyncio, httpx2
>>> async def main() -> int:
...     async with httpx2.AsyncClient(transport=LeanTransport()) as http:
...         try:
...             await http.get("http://127.0.0.1:9/")
...         except httpx2.ConnectError:
...             return -1
...     return 0
>>> asyncio.run(main())
-1
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from contextlib import suppress
from dataclasses import dataclass

import httpx2

__all__ = ["MAX_BODY_BYTES", "MAX_HEAD_BYTES", "LeanTransport", "shared_ssl_context"]

#: Largest reply body read (a chat completion is a few KB).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Largest status line + headers read.
MAX_HEAD_BYTES = 64 * 1024

_Origin = tuple[str, str, int]


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The TLS settings every client of this process shares (certificates are read once).

    httpx's defaults (certifi, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as set
    when it is first called); loading the certificates takes ≈ 20 ms, which a
    Spark task or a short job would otherwise pay per client.
    """
    return httpx2.create_ssl_context()
_Headers = list[tuple[bytes, bytes]]


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        """False once the server closed it (or it was closed here)."""
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with suppress(Exception):
            self.writer.close()


@dataclass
class _Reply:
    status: int
    reason: bytes
    headers: _Headers
    body: bytes
    reusable: bool


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 keep-alive transport for ``httpx2.AsyncClient`` (see the module docstring).

    Parameters
    ----------
    ssl_context
        TLS settings for ``https`` URLs; :func:`shared_ssl_context` when None.
    max_idle
        Idle connections kept for reuse, over all origins.

    Attributes
    ----------
    opened
        Connections opened so far (reuse shows as ``opened`` staying small).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = 64) -> None:
        self._ssl = ssl_context if ssl_context is not None else shared_ssl_context()
        self._max_idle = max_idle
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._n_idle = 0
        self.opened = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            msg = f"unsupported URL scheme {scheme!r}"
            raise httpx2.UnsupportedProtocol(msg, request=request)
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        head, body = _encode_request(request, await request.aread())
        conn = self._take(origin)
        if conn is None:
            conn = await self._connect(origin, timeouts.get("connect"), request)
        try:
            reply = await _exchange(conn, request, head + body, timeouts)
        except BaseException:
            conn.close()
            raise
        if reply.reusable:
            self._give(origin, conn)
        else:
            conn.close()
        return httpx2.Response(
            reply.status,
            headers=reply.headers,
            stream=httpx2.ByteStream(reply.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reply.reason},
            request=request,
        )

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._n_idle = 0

    # ------------------------------------------------------------ connections

    def _take(self, origin: _Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            self._n_idle -= 1
            if conn.usable():
                return conn
            conn.close()
        return None

    def _give(self, origin: _Origin, conn: _Connection) -> None:
        if self._n_idle >= self._max_idle:
            conn.close()
            return
        self._idle.setdefault(origin, []).append(conn)
        self._n_idle += 1

    async def _connect(
        self, origin: _Origin, timeout: float | None, request: httpx2.Request
    ) -> _Connection:
        scheme, host, port = origin
        context = self._ssl if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                    limit=MAX_HEAD_BYTES,
                )
        except TimeoutError as exc:
            msg = f"connecting to {host}:{port} timed out after {timeout}s"
            raise httpx2.ConnectTimeout(msg, request=request) from exc
        except OSError as exc:
            msg = f"cannot connect to {host}:{port}: {exc}"
            raise httpx2.ConnectError(msg, request=request) from exc
        self.opened += 1
        return _Connection(reader, writer)


# ---------------------------------------------------------------- wire format


def _encode_request(request: httpx2.Request, body: bytes) -> tuple[bytes, bytes]:
    """The request head and body bytes (a chunked request body is sent as one chunk)."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    chunked = False
    for name, value in request.headers.raw:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value:
            msg = f"header {name!r} holds a line break"
            raise httpx2.LocalProtocolError(msg)
        if name.lower() == b"transfer-encoding" and value.lower().endswith(b"chunked"):
            chunked = True
        lines.append(name + b": " + value)
    if chunked and body:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    elif chunked:
        body = b"0\r\n\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n", body


async def _exchange(
    conn: _Connection, request: httpx2.Request, data: bytes, timeouts: dict[str, float | None]
) -> _Reply:
    """Write the request on ``conn`` and read the whole reply."""
    try:
        async with asyncio.timeout(timeouts.get("write")):
            conn.writer.write(data)
            await conn.writer.drain()
    except TimeoutError as exc:
        raise httpx2.WriteTimeout("writing the request timed out", request=request) from exc
    except OSError as exc:
        raise httpx2.WriteError(f"writing the request failed: {exc}", request=request) from exc
    try:
        async with asyncio.timeout(timeouts.get("read")):
            return await _read_reply(conn.reader, request)
    except TimeoutError as exc:
        raise httpx2.ReadTimeout("reading the reply timed out", request=request) from exc
    except asyncio.IncompleteReadError as exc:
        msg = "server disconnected before the reply was complete"
        raise httpx2.RemoteProtocolError(msg, request=request) from exc
    except asyncio.LimitOverrunError as exc:
        msg = f"reply head or chunk line longer than {MAX_HEAD_BYTES} bytes"
        raise httpx2.RemoteProtocolError(msg, request=request) from exc
    except OSError as exc:
        raise httpx2.ReadError(f"reading the reply failed: {exc}", request=request) from exc


async def _read_reply(reader: asyncio.StreamReader, request: httpx2.Request) -> _Reply:
    while True:
        version, status, reason, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"), request)
        if status == 101 or not 100 <= status < 200:
            break  # 1xx replies (100 Continue, 103 Early Hints) come before the real one
    if status == 101:
        raise httpx2.RemoteProtocolError("server switched protocols", request=request)
    connection = b",".join(v for k, v in headers if k.lower() == b"connection").lower()
    keep_alive = b"close" not in connection and (
        version == b"HTTP/1.1" or b"keep-alive" in connection
    )
    if request.method == "HEAD" or status in (204, 304):
        return _Reply(status, reason, headers, b"", keep_alive)
    codings = b",".join(v for k, v in headers if k.lower() == b"transfer-encoding").lower()
    lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
    if codings:
        if codings.rstrip().endswith(b"chunked"):
            return _Reply(status, reason, headers, await _read_chunked(reader, request), keep_alive)
        return _Reply(status, reason, headers, await _read_to_close(reader, request), False)
    if lengths:
        length = lengths.pop() if len(lengths) == 1 else b""
        if not length.isdigit():
            raise httpx2.RemoteProtocolError("bad Content-Length in the reply", request=request)
        size = int(length)
        _check_size(size, request)
        return _Reply(status, reason, headers, await reader.readexactly(size), keep_alive)
    return _Reply(status, reason, headers, await _read_to_close(reader, request), False)


def _parse_head(raw: bytes, request: httpx2.Request) -> tuple[bytes, int, bytes, _Headers]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        msg = f"not an HTTP/1.x status line: {lines[0][:80]!r}"
        raise httpx2.RemoteProtocolError(msg, request=request)
    headers: _Headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            msg = f"malformed reply header line: {line[:80]!r}"
            raise httpx2.RemoteProtocolError(msg, request=request)
        headers.append((name, value.strip()))
    reason = parts[2] if len(parts) == 3 else b""
    return parts[0], int(parts[1]), reason, headers


async def _read_chunked(reader: asyncio.StreamReader, request: httpx2.Request) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            msg = f"bad chunk size {size_text[:20]!r}"
            raise httpx2.RemoteProtocolError(msg, request=request) from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer lines, if any
                pass
            return bytes(body)
        _check_size(len(body) + size, request)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise httpx2.RemoteProtocolError("chunk not followed by CRLF", request=request)


async def _read_to_close(reader: asyncio.StreamReader, request: httpx2.Request) -> bytes:
    body = bytearray()
    while chunk := await reader.read(65536):
        body += chunk
        _check_size(len(body), request)
    return bytes(body)


def _check_size(size: int, request: httpx2.Request) -> None:
    if size > MAX_BODY_BYTES:
        msg = f"reply body larger than {MAX_BODY_BYTES} bytes"
        raise httpx2.RemoteProtocolError(msg, request=request)
