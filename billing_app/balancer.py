"""The front of `serve --prod --backends N`: one address for browsers, N backends behind it.

A small asyncio TCP proxy that reads each connection's request head and picks where it goes:
Reflex's backend paths (`/_event` the websocket, `/api`, `/_upload`, ...) round-robin over the
backends, everything else to the static frontend server. It is the simplest real thing that
needs nothing installed: any HTTP load balancer (nginx, HAProxy, a cloud one) does the same job
in production, see README "Deployment".

- A backend that refuses the connection is skipped (and not tried again for a second), so a
  killed backend costs a page one reconnect, never an error while another one answers.
- A websocket is one TCP connection, so it stays on the backend it connected to; Reflex's
  Redis state manager lets its next connection land on any backend.
- Each plain HTTP request is sent with `Connection: close`, so a connection carries one
  request and every request is routed on its own path (no keep-alive reuse across targets).
- `X-Forwarded-For` gets the client's address appended; the backends trust one hop
  (REFLEX_TRUSTED_PROXY_HOPS=1), so per-address rate limits see the browser, not us.

Run alone: `python -m billing_app.balancer --port 3000 --backend 127.0.0.1:8001 --backend
127.0.0.1:8002 --frontend 127.0.0.1:3001`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import time

log = logging.getLogger("billing_app.balancer")

# Reflex's backend endpoints (reflex_base.constants.Endpoint) plus our /api routes.
BACKEND_PREFIXES = (b"/_event", b"/api", b"/_upload", b"/ping", b"/_health", b"/_all_routes", b"/auth-codespace")
HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 2.0
DEAD_SECONDS = 1.0  # a backend that refused is skipped this long

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def goes_to_backend(path: bytes) -> bool:
    return any(path == p or path.startswith(p + b"/") or path.startswith(p + b"?") for p in BACKEND_PREFIXES)


def rewrite_head(head: bytes, client_ip: str) -> bytes:
    """Add X-Forwarded-For; make a plain request the connection's last (a websocket upgrade keeps its headers)."""
    lines = head[:-4].split(b"\r\n")
    upgrade = any(line.lower().startswith(b"upgrade:") for line in lines[1:])
    kept, forwarded = [lines[0]], None
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name == b"x-forwarded-for":
            forwarded = line.split(b":", 1)[1].strip()
            continue
        if not upgrade and name in (b"connection", b"keep-alive", b"proxy-connection"):
            continue
        kept.append(line)
    chain = (forwarded + b", " if forwarded else b"") + client_ip.encode()
    kept.append(b"X-Forwarded-For: " + chain)
    if not upgrade:
        kept.append(b"Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n"


class Balancer:
    def __init__(self, backends: list[Address], frontend: Address | None = None):
        if not backends:
            raise ValueError("at least one backend")
        self.backends = backends
        self.frontend = frontend
        self._next = itertools.count()
        self._dead_until: dict[Address, float] = {}
        self.picked: dict[Address, int] = {b: 0 for b in backends}  # connections per backend (for tests and logs)

    def _candidates(self) -> list[Address]:
        """The backends in round-robin order, those that just refused last."""
        start = next(self._next) % len(self.backends)
        ordered = self.backends[start:] + self.backends[:start]
        now = time.monotonic()
        return sorted(ordered, key=lambda b: self._dead_until.get(b, 0) > now)

    async def _connect(self, targets: list[Address]):
        for target in targets:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as error:
                self._dead_until[target] = time.monotonic() + DEAD_SECONDS
                log.warning("balancer: %s:%s unreachable (%s), trying the next", *target, error)
                continue
            self._dead_until.pop(target, None)
            return target, reader, writer
        return None

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        try:
            try:
                head = await client_reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            parts = head.split(b" ", 2)
            path = parts[1] if len(parts) > 1 else b"/"
            to_backend = goes_to_backend(path) or self.frontend is None
            picked = await self._connect(self._candidates() if to_backend else [self.frontend])
            if picked is None:
                client_writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                    b"Content-Length: 24\r\nConnection: close\r\n\r\nNo backend is reachable.")
                await client_writer.drain()
                return
            target, upstream_reader, upstream_writer = picked
            if to_backend:
                self.picked[target] = self.picked.get(target, 0) + 1
            peer = client_writer.get_extra_info("peername") or ("unknown",)
            upstream_writer.write(rewrite_head(head, str(peer[0])))
            to_upstream = asyncio.create_task(_pipe(client_reader, upstream_writer))
            try:
                # The exchange is over when the upstream is done answering (it closes after a plain
                # request; a websocket ends when either side closes).
                await _pipe(upstream_reader, client_writer)
            finally:
                to_upstream.cancel()
        except Exception as error:  # one connection's trouble never stops the balancer
            log.info("balancer: connection ended: %s", error)
        finally:
            for writer in (upstream_writer, client_writer):
                if writer is not None:
                    writer.close()

    async def serve(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.handle, host, port, limit=HEAD_LIMIT, reuse_address=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on (the other direction may still be talking)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing_app.balancer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True, help="host:port of a backend (repeat)")
    parser.add_argument("--frontend", help="host:port of the static frontend server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    balancer = Balancer([parse_address(b) for b in args.backend], parse_address(args.frontend) if args.frontend else None)

    async def run() -> None:
        server = await balancer.serve(args.host, args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("balancer on %s:%s -> backends %s, frontend %s", args.host, args.port, args.backend, args.frontend)
        await stop.wait()
        server.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
