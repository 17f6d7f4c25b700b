"""The balancer in front of `serve --backends N`: path routing, round-robin, a dead backend skipped,
the client's address passed on, one request per connection (no PostgreSQL or Redis needed)."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

from billing_app import balancer as balancer_module
from billing_app.balancer import Balancer, goes_to_backend, rewrite_head
from billing_app.serve import PROJECT_ROOT
from tests.aio import run_async
from tests.api.helpers import served_granian
from tests.scale.helpers import free_port


async def _echo_server(name: str):
    """An HTTP server answering `name` and the request head it received."""

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        body = name.encode() + b"\n" + head
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_backend_paths_round_robin_and_the_rest_goes_to_the_frontend():
    async def scenario():
        (b1, p1), (b2, p2), (front, pf) = await _echo_server("b1"), await _echo_server("b2"), await _echo_server("front")
        dead = free_port()  # nothing listens: skipped
        balancer = Balancer([("127.0.0.1", p1), ("127.0.0.1", dead), ("127.0.0.1", p2)], ("127.0.0.1", pf))
        port = free_port()
        server = await balancer.serve("127.0.0.1", port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            api = [(await client.get("/api/health", headers={"X-Forwarded-For": "10.0.0.1"})).text for _ in range(4)]
            page = (await client.get("/billing")).text
        for s in (server, b1, b2, front):
            s.close()
        return api, page

    api, page = run_async(scenario())
    assert sorted(text.split("\n")[0] for text in api) == ["b1", "b1", "b2", "b2"]
    assert all("X-Forwarded-For: 10.0.0.1, 127.0.0.1" in text and "Connection: close" in text for text in api)
    assert page.startswith("front\n")


def test_routing_rules_and_head_rewrite():
    assert goes_to_backend(b"/_event/?EIO=4") and goes_to_backend(b"/api/ready") and goes_to_backend(b"/_upload")
    assert not goes_to_backend(b"/billing") and not goes_to_backend(b"/apiary") and not goes_to_backend(b"/")
    upgrade = b"GET /_event/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    rewritten = rewrite_head(upgrade, "1.2.3.4")
    assert b"Connection: Upgrade" in rewritten and b"Connection: close" not in rewritten
    assert rewritten.endswith(b"X-Forwarded-For: 1.2.3.4\r\n\r\n")
    plain = rewrite_head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n", "1.2.3.4")
    assert b"keep-alive" not in plain.lower() and b"Connection: close" in plain


def test_only_a_get_asking_connection_upgrade_is_a_websocket_upgrade():
    # RFC 6455: GET, `Connection` with the `upgrade` token, `Upgrade: websocket`. Anything else is a
    # plain request to the backend, so it is sent as one: no Upgrade, `Connection: close`.
    for head in (b"POST /api/x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 10\r\n\r\n",
                 b"GET /_event/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
                 b"GET /_event/ HTTP/1.1\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n"):
        rewritten = rewrite_head(head, "1.2.3.4")
        assert b"upgrade" not in rewritten.lower() and rewritten.endswith(b"Connection: close\r\n\r\n"), rewritten
    split = b"GET /_event/ HTTP/1.1\r\nConnection: keep-alive\r\nconnection: UPGRADE\r\nUpgrade: WebSocket\r\n\r\n"
    assert b"Connection: close" not in rewrite_head(split, "1.2.3.4")


@pytest.fixture
def whoami_backend():
    """A real Granian backend (trusting one proxy hop) answering the address `client_ip` sees; its port."""
    env = {**os.environ, "REFLEX_TRUSTED_PROXY_HOPS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    with served_granian("tests.scale.whoami_app:app", "/api/whoami", env=env) as port:
        yield port


async def _exchange(port: int, data: bytes, seconds: float = 2.0) -> bytes:
    """Send raw bytes; everything answered until the server closes (or is quiet for `seconds`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    got = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), seconds):
            got += chunk
    except TimeoutError:
        pass
    writer.close()
    return got


def _through_balancer(backend_port: int, data: bytes) -> bytes:
    async def scenario():
        port = free_port()
        server = await Balancer([("127.0.0.1", backend_port)]).serve("127.0.0.1", port)
        try:
            return await _exchange(port, data)
        finally:
            server.close()

    return run_async(scenario())


WHOAMI = b"GET /api/whoami HTTP/1.1\r\nHost: x\r\n"
CHOSEN = b"X-Forwarded-For: 6.6.6.6\r\n"


def test_the_backend_sees_the_real_address_whatever_forwarded_for_the_client_sends(whoami_backend):
    got = _through_balancer(whoami_backend, WHOAMI + CHOSEN + b"\r\n")
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n127.0.0.1\n"), got


def test_a_header_hidden_behind_a_bare_lf_or_a_fold_is_refused(whoami_backend):
    for head in (WHOAMI + b"Accept: */*\n" + CHOSEN + b"\r\n",
                 WHOAMI + b"Accept: */*\r\n " + CHOSEN + b"\r\n",
                 b"GET /api/whoami HTTP/2.0\r\nHost: x\r\n" + CHOSEN + b"\r\n"):
        got = _through_balancer(whoami_backend, head)
        assert got.startswith(b"HTTP/1.1 400 ") and b"6.6.6.6" not in got, got


def test_a_second_request_on_an_upgraded_connection_cannot_pick_its_address(whoami_backend):
    second = WHOAMI + CHOSEN + b"Connection: close\r\n\r\n"
    for upgrade in (b"Upgrade: h2c\r\nConnection: keep-alive, Upgrade\r\n",
                    # a websocket upgrade the backend refuses leaves an HTTP connection
                    (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")):
        got = _through_balancer(whoami_backend, WHOAMI + upgrade + b"\r\n" + second)
        assert b"6.6.6.6" not in got, got


def _handled_connections(monkeypatch) -> list[float]:
    """When each of the balancer's connections ended (appended as its handler returns)."""
    ended: list[float] = []
    real_handle = Balancer.handle

    async def counted(self, reader, writer):
        try:
            await real_handle(self, reader, writer)
        finally:
            ended.append(time.monotonic())

    monkeypatch.setattr(Balancer, "handle", counted)
    return ended


def test_a_client_gone_during_a_pretend_upgrade_does_not_hold_the_balancer(whoami_backend, monkeypatch):
    # `Upgrade: websocket` on a POST the backend reads as a plain request: the backend waits for the
    # body, which never comes. Once the client leaves, both connections end, as without the header;
    # they were held for good (a socket here, a socket and a request on the backend, per client).
    ended = _handled_connections(monkeypatch)

    async def scenario():
        port = free_port()
        server = await Balancer([("127.0.0.1", whoami_backend)]).serve("127.0.0.1", port)
        try:
            for upgrade in (b"", b"Upgrade: websocket\r\n", b"Connection: Upgrade\r\nUpgrade: websocket\r\n"):
                before = len(ended)
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /api/length HTTP/1.1\r\nHost: x\r\n" + upgrade + b"Content-Length: 10\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.3)
                writer.close()  # gone, the body never sent
                deadline = time.monotonic() + 3  # well within the wait for a backend's answer
                while len(ended) == before and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert len(ended) > before, f"the balancer still holds a connection the client left ({upgrade!r})"
        finally:
            server.close()

    run_async(scenario())


def test_a_backend_that_does_not_answer_an_upgrade_is_let_go(monkeypatch):
    monkeypatch.setattr(balancer_module, "BACKEND_HEAD_SECONDS", 0.5, raising=False)

    async def scenario():
        async def silent(reader, writer):  # reads the handshake, never answers
            await reader.read()

        backend = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = free_port()
        server = await Balancer([("127.0.0.1", backend.sockets[0].getsockname()[1])]).serve("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /_event/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        try:
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
            server.close()
            backend.close()

    assert run_async(scenario()) == b""  # closed by the balancer, not by the 5 s wait


def test_a_websocket_still_passes_through(whoami_backend):
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        CloseConnection,
        Message,
        Request,
        TextMessage,
    )

    async def scenario():
        port = free_port()
        server = await Balancer([("127.0.0.1", whoami_backend)]).serve("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        writer.write(ws.send(Request(host="x", target="/_event")))
        got: list = []
        while not any(isinstance(e, (Message, CloseConnection)) for e in got):
            ws.receive_data(await asyncio.wait_for(reader.read(65536), 5) or None)
            for event in ws.events():
                got.append(event)
                if isinstance(event, AcceptConnection):
                    writer.write(ws.send(TextMessage("hello")))
        writer.close()
        server.close()
        return got

    events = run_async(scenario())
    assert isinstance(events[0], AcceptConnection)
    assert [e.data for e in events if isinstance(e, TextMessage)] == ["hello"]


def test_a_client_that_sends_no_request_head_is_dropped(monkeypatch):
    monkeypatch.setattr(balancer_module, "HEAD_SECONDS", 0.5)

    async def scenario():
        port = free_port()
        server = await Balancer([("127.0.0.1", free_port())]).serve("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/whoami HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
        try:
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
            server.close()

    assert run_async(scenario()) == b""  # closed by the balancer, not by the 5 s wait


def test_the_app_takes_the_address_its_trusted_proxy_added_over_every_forwarded_line(whoami_backend):
    got = run_async(_exchange(whoami_backend, WHOAMI + CHOSEN + b"X-Forwarded-For: 10.0.0.1, 127.0.0.9\r\n"
                                                       b"Connection: close\r\n\r\n"))
    assert got.endswith(b"\r\n\r\n127.0.0.9\n"), got


async def _held_or_closed(port: int, data: bytes, seconds: float) -> tuple[str, bytes, float]:
    """Send `data` and stay connected: ("closed", what came, when) or ("still open", ..., seconds)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    started = time.monotonic()
    try:
        got = await asyncio.wait_for(reader.read(), seconds)
        return "closed", got, time.monotonic() - started
    except TimeoutError:
        return "still open", b"", seconds
    finally:
        writer.close()


def test_a_body_never_sent_does_not_hold_the_balancer_or_a_backend_request(whoami_backend, monkeypatch):
    # The client stays connected and never sends the 10 bytes it announced: the backend waits for
    # them, so nothing moves either way. Both sides are closed after IDLE_SECONDS, not held for good.
    monkeypatch.setattr(balancer_module, "IDLE_SECONDS", 0.5, raising=False)
    ended = _handled_connections(monkeypatch)

    async def scenario():
        port = free_port()
        server = await Balancer([("127.0.0.1", whoami_backend)]).serve("127.0.0.1", port)
        try:
            return await _held_or_closed(port, b"POST /api/length HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", 5)
        finally:
            server.close()

    state, _, after = run_async(scenario())
    assert state == "closed" and after < 3, f"a body never sent held the connection: {state} after {after:.1f} s"
    assert ended, "the balancer's handler still runs"


def test_a_slow_but_steady_body_and_a_plain_request_still_go_through(whoami_backend, monkeypatch):
    monkeypatch.setattr(balancer_module, "IDLE_SECONDS", 1.0, raising=False)

    async def scenario():
        port = free_port()
        server = await Balancer([("127.0.0.1", whoami_backend)]).serve("127.0.0.1", port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /api/length HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
            for _ in range(10):  # 3 s in all, three times the idle limit, a byte every 0.3 s
                await asyncio.sleep(0.3)
                writer.write(b"x")
                await writer.drain()
            slow = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            plain = await _exchange(port, WHOAMI + b"\r\n")
            return slow, plain
        finally:
            server.close()

    slow, plain = run_async(scenario())
    assert slow.startswith(b"HTTP/1.1 200") and slow.endswith(b"\r\n\r\n10\n"), slow
    assert plain.startswith(b"HTTP/1.1 200") and plain.endswith(b"\r\n\r\n127.0.0.1\n"), plain


def test_an_answer_that_keeps_sending_goes_through_and_one_that_stalls_is_let_go(monkeypatch):
    monkeypatch.setattr(balancer_module, "IDLE_SECONDS", 1.0, raising=False)

    async def streaming(reader, writer):  # a long answer (like the CSV export): a line every 0.3 s
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for i in range(10):
            await asyncio.sleep(0.3)
            writer.write(b"row %d\n" % i)
            await writer.drain()
        writer.close()

    async def stalling(reader, writer):  # starts answering, then goes quiet
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nrow 0\n")
        await writer.drain()
        await asyncio.sleep(30)

    async def scenario(handler):
        backend = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = free_port()
        server = await Balancer([("127.0.0.1", backend.sockets[0].getsockname()[1])]).serve("127.0.0.1", port)
        try:
            return await _held_or_closed(port, b"GET /api/export HTTP/1.1\r\nHost: x\r\n\r\n", 6)
        finally:
            server.close()
            backend.close()

    state, got, _ = run_async(scenario(streaming))
    assert state == "closed" and got.endswith(b"row 9\n"), (state, got)
    state, got, after = run_async(scenario(stalling))
    assert state == "closed" and after < 4, f"a stalled answer held the connection: {state} after {after:.1f} s"
