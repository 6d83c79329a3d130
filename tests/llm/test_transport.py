"""The lean HTTP/1.1 transport against scripted servers on 127.0.0.1 and the simulator."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from rlm_pipeline.llm.client import LLMClient
from rlm_pipeline.llm.config import LLM
from rlm_pipeline.llm.transport import MAX_BODY_BYTES, LeanTransport
from rlm_pipeline.sim import intended_label
from tests.llm.helpers import LABEL_SCHEMA, LABELS, classify_messages, ticket

Reply = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A server that answers each request with the next scripted reply.

    A reply is raw bytes (written as is; ``close_after`` closes the connection
    after it) or a coroutine function given the writer.  Records every request
    (head and body) and counts accepted connections.
    """

    def __init__(self, replies: list[Reply], *, close_after: bool = False) -> None:
        self.replies = list(replies)
        self.close_after = close_after
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.requests.append((head, await reader.readexactly(length)))
                reply = self.replies.pop(0)
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def post(transport: LeanTransport, url: str, **kwargs: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(transport=transport, timeout=kwargs.pop("timeout", 5)) as http:
        response = await http.post(url, **kwargs)
        await response.aread()
        return response


def test_keep_alive_reuses_one_connection_and_sends_the_request_intact() -> None:
    async def main() -> None:
        async with Scripted([ok(b'{"n": 1}'), ok(b'{"n": 2}'), ok(b'{"n": 3}')]) as server:
            transport = LeanTransport()
            async with httpx2.AsyncClient(transport=transport) as http:
                got = []
                for i in range(3):
                    response = await http.post(server.url + "/v1/x?q=1", json={"i": i})
                    got.append(response.json()["n"])
            assert got == [1, 2, 3]
            assert server.connections == 1 and transport.opened == 1
            head, body = server.requests[2]
            assert head.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n")
            assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nContent-Length: 7\r\n" in head
            assert body == b'{"i":2}'

    asyncio.run(main())


def test_chunked_reply_with_extensions_and_trailers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def main() -> None:
        async with Scripted([chunked, ok(b"{}")]) as server:
            transport = LeanTransport()
            async with httpx2.AsyncClient(transport=transport) as http:
                first = await http.post(server.url)
                second = await http.post(server.url)
            assert first.json() == {"a": 1} and second.json() == {}
            assert transport.opened == 1  # the chunked reply left the connection reusable

    asyncio.run(main())


@pytest.mark.parametrize(
    ("reply", "server_closes"),
    [
        # the server would take another request: only the header says not to
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.1 200 OK\r\n\r\n{}", True),  # no length: the body ends when the server closes
    ],
    ids=["connection-close", "http-1.0", "close-delimited"],
)
def test_replies_that_end_the_connection_are_not_reused(reply: bytes, server_closes: bool) -> None:
    async def main() -> None:
        async with Scripted([reply, reply], close_after=server_closes) as server:
            transport = LeanTransport()
            async with httpx2.AsyncClient(transport=transport) as http:
                for _ in range(2):
                    assert (await http.post(server.url)).json() == {}
            assert transport.opened == 2 and server.connections == 2

    asyncio.run(main())


def test_informational_replies_are_skipped_and_gzip_is_decoded() -> None:
    body = gzip.compress(b'{"ok": true}')
    reply = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(body, b"Content-Encoding: gzip")

    async def main() -> None:
        async with Scripted([reply]) as server:
            response = await post(LeanTransport(), server.url)
            assert response.status_code == 200 and response.json() == {"ok": True}

    asyncio.run(main())


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def main() -> None:
        async with Scripted([ok(b"1"), ok(b"2")], close_after=True) as server:
            transport = LeanTransport()
            async with httpx2.AsyncClient(transport=transport) as http:
                assert (await http.post(server.url)).text == "1"
                await asyncio.sleep(0.05)  # the server's FIN arrives
                assert (await http.post(server.url)).text == "2"
            assert transport.opened == 2

    asyncio.run(main())


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", httpx2.RemoteProtocolError, "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", httpx2.RemoteProtocolError,
         "disconnected"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
         httpx2.RemoteProtocolError, "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         httpx2.RemoteProtocolError, "chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1),
         httpx2.RemoteProtocolError, "larger than"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", httpx2.RemoteProtocolError,
         "longer than"),
    ],
    ids=["status-line", "truncated", "two-lengths", "chunk-size", "too-big", "huge-head"],
)
def test_broken_replies_raise_httpx_errors(reply: bytes, error: type[Exception], words: str) -> None:
    async def main() -> None:
        async with Scripted([reply], close_after=True) as server:
            with pytest.raises(error, match=words):
                await post(LeanTransport(), server.url)

    asyncio.run(main())


def test_timeouts_and_refused_connections() -> None:
    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with Scripted([silent]) as server:
            with pytest.raises(httpx2.ReadTimeout):
                await post(LeanTransport(), server.url, timeout=0.2)
            port = server.url.rsplit(":", 1)[1]
        with pytest.raises(httpx2.ConnectError, match="cannot connect"):
            await post(LeanTransport(), f"http://127.0.0.1:{port}")

    asyncio.run(main())


def test_line_breaks_in_header_values_are_refused() -> None:
    async def main() -> None:
        async with Scripted([ok(b"{}")]) as server:
            transport = LeanTransport()
            # httpx passes such a value through; written as is it would add a header
            request = httpx2.Request("POST", server.url, headers={"X-Bad": "a\r\nInjected: 1"})
            with pytest.raises(httpx2.LocalProtocolError, match="line break"):
                await transport.handle_async_request(request)
            assert server.requests == []

    asyncio.run(main())


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_verifies_the_server_with_the_given_context(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b'{"tls": true}'))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            response = await post(LeanTransport(ssl_context=trusting), f"https://127.0.0.1:{port}/")
            assert response.json() == {"tls": True}
            with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(LeanTransport(), f"https://127.0.0.1:{port}/")  # default trust store
        finally:
            server.close()

    asyncio.run(main())


def test_the_model_client_reuses_connections_through_the_transport(sim: Any) -> None:
    llm = LLM(model="sim-1", base_url=sim.base_url, api_key="k", max_concurrency=8)
    texts = [ticket(i) for i in range(200)]

    async def main() -> tuple[list[str], int]:
        transport = LeanTransport(max_idle=8)
        async with httpx2.AsyncClient(transport=transport) as http, LLMClient(llm, http_client=http) as client:

            async def one(text: str) -> str:
                value, _ = await client.json(classify_messages(text), LABEL_SCHEMA, name="label")
                return str(value["label"])

            labels = list(await asyncio.gather(*(one(t) for t in texts)))
        return labels, transport.opened

    labels, opened = asyncio.run(main())
    assert labels == [intended_label(t, LABELS) for t in texts]
    assert opened <= 8  # 200 calls, at most one connection per slot
