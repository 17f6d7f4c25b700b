"""The balancer in front of `serve --backends N`: path routing, round-robin, a dead backend skipped,
the client's address passed on, one request per connection (no PostgreSQL or Redis needed)."""

from __future__ import annotations

import asyncio

import httpx

from billing_app.balancer import Balancer, goes_to_backend, rewrite_head
from tests.aio import run_async
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
