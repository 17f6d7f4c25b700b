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
- Each plain HTTP request is sent with `Connection: close` (any `Upgrade` removed), so a
  connection carries one request and every request is routed on its own path and gets its own
  `X-Forwarded-For` (no keep-alive reuse across targets). Only a websocket handshake (a GET with
  `Connection: upgrade` and `Upgrade: websocket`) keeps its connection: the client's bytes go on
  only once the backend answered 101, and a backend that has not answered within
  BACKEND_HEAD_SECONDS is dropped with the client.
- `X-Forwarded-For` gets the client's address appended, as one line; the backends trust one hop
  (REFLEX_TRUSTED_PROXY_HOPS=1) and take the right-most address, so per-address rate limits see
  the browser, not us, and not what the browser wrote. A head a backend could parse differently
  (a bare LF, a folded line, not HTTP/1.x) is refused with 400; one not complete within
  HEAD_SECONDS or past HEAD_LIMIT is dropped.
- A plain request is dropped (both sides closed) once no byte has moved either way for
  IDLE_SECONDS: a client that never sends the body it announced, or a backend whose answer stalls,
  holds neither a socket here nor a request there. The limit is per chunk, so a slow but steady
  upload and a long answer that keeps sending (the CSV export) go through whatever they last.
  A websocket has no such limit (it may be quiet between events).

Run alone: `python -m billing_app.balancer --port 3000 --backend 127.0.0.1:8001 --backend
127.0.0.1:8002 --frontend 127.0.0.1:3001`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import signal
import time

log = logging.getLogger("billing_app.balancer")

# Reflex's backend endpoints (reflex_base.constants.Endpoint) plus our /api routes.
BACKEND_PREFIXES = (b"/_event", b"/api", b"/_upload", b"/ping", b"/_health", b"/_all_routes", b"/auth-codespace")
HEAD_LIMIT = 64 * 1024
HEAD_SECONDS = 10.0  # a client that has not sent its request head by then is dropped (slowloris)
CONNECT_TIMEOUT = 2.0
BACKEND_HEAD_SECONDS = 10.0  # a backend that has not answered a websocket handshake by then is dropped
DEAD_SECONDS = 1.0  # a backend that refused is skipped this long
IDLE_SECONDS = 10.0  # a plain request with no byte moving either way this long is dropped (both sides)

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def goes_to_backend(path: bytes) -> bool:
    return any(path == p or path.startswith(p + b"/") or path.startswith(p + b"?") for p in BACKEND_PREFIXES)


# The request line of HTTP/1.x, the only protocol the backends are spoken to in.
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\x00-\x20\x7f]+ HTTP/1\.[01]")


class BadHead(ValueError):
    """A request head the balancer refuses to pass on (answered 400, connection closed)."""


def is_websocket_upgrade(lines: list[bytes]) -> bool:
    """A websocket handshake as RFC 6455 has it (and a backend reads it): a GET whose `Connection`
    has the `upgrade` token and whose `Upgrade` has `websocket`. Anything else is a plain request."""
    return (lines[0].startswith(b"GET ") and b"upgrade" in _tokens(lines, b"connection")
            and b"websocket" in _tokens(lines, b"upgrade"))


def _name(line: bytes) -> bytes:
    return line.split(b":", 1)[0].strip().lower()


def _tokens(lines: list[bytes], name: bytes) -> set[bytes]:
    """The comma-separated values of every `name` header line, lower-cased."""
    return {token.strip().lower() for line in lines[1:] if _name(line) == name
            for token in line.partition(b":")[2].split(b",")}


def rewrite_head(head: bytes, client_ip: str) -> bytes:
    """The head as the backend gets it: our X-Forwarded-For, and `Connection: close` unless it is a
    websocket upgrade (which keeps its headers: the connection then carries frames, not requests).

    Refuses (BadHead) a head a backend could read differently from us: a bare LF or CR, an obs-fold,
    a request line that is not HTTP/1.x. Otherwise a header hidden there would reach the backend
    unseen here (an X-Forwarded-For of the client's choosing).
    """
    lines = head[:-4].split(b"\r\n")
    if any(b"\n" in line or b"\r" in line or line[:1] in (b" ", b"\t") for line in lines):
        raise BadHead("bare CR/LF or obs-fold")
    if not REQUEST_LINE.fullmatch(lines[0]):
        raise BadHead("not an HTTP/1.x request line")
    websocket = is_websocket_upgrade(lines)
    kept, forwarded = [lines[0]], []
    for line in lines[1:]:
        name = _name(line)
        if name == b"x-forwarded-for":
            forwarded.append(line.split(b":", 1)[1].strip())
            continue
        if not websocket and name in (b"connection", b"keep-alive", b"proxy-connection", b"upgrade"):
            continue
        kept.append(line)
    # One line: the chain the client sent (untrusted: backends count hops from the right) and the peer.
    kept.append(b"X-Forwarded-For: " + b", ".join([*filter(None, forwarded), client_ip.encode()]))
    if not websocket:
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
                head = await asyncio.wait_for(client_reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, TimeoutError):
                return
            peer = client_writer.get_extra_info("peername") or ("unknown",)
            try:
                upstream_head = rewrite_head(head, str(peer[0]))
            except BadHead as error:
                log.info("balancer: refused a request head from %s: %s", peer[0], error)
                client_writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await client_writer.drain()
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
            upstream_writer.write(upstream_head)
            if is_websocket_upgrade(upstream_head.split(b"\r\n")):
                # Frames go upstream only once the backend switched protocols: a refused upgrade
                # leaves an HTTP connection, where more bytes would be requests we never rewrote.
                # Bounded: a client that leaves meanwhile is not read, so only this lets both sides go.
                answer = await asyncio.wait_for(upstream_reader.readuntil(b"\r\n\r\n"), BACKEND_HEAD_SECONDS)
                client_writer.write(answer)
                if not answer.startswith((b"HTTP/1.1 101 ", b"HTTP/1.0 101 ")):
                    upstream_writer.write_eof()
                    await _pipe(upstream_reader, client_writer, _Idle(IDLE_SECONDS))
                    return
                idle = None  # a websocket: quiet between events is normal
            else:
                idle = _Idle(IDLE_SECONDS)  # one clock for both directions: either one moving keeps it
            to_upstream = asyncio.create_task(_pipe(client_reader, upstream_writer, idle))
            try:
                # The exchange is over when the upstream is done answering (it closes after a plain
                # request; a websocket ends when either side closes), or, for a plain request, when
                # nothing moved either way for IDLE_SECONDS (both pipes see the same clock run out).
                await _pipe(upstream_reader, client_writer, idle)
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


class _Idle:
    """When a plain request last moved a byte either way; it is dropped `seconds` after that."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last = time.monotonic()

    def moved(self) -> None:
        self.last = time.monotonic()

    def left(self) -> float:
        return self.last + self.seconds - time.monotonic()


async def _read(reader: asyncio.StreamReader, idle: _Idle | None) -> bytes:
    """The next chunk; TimeoutError once nothing moved either way for the idle limit (None: no limit)."""
    if idle is None:
        return await reader.read(65536)
    while True:
        try:
            # A cancelled read loses nothing: what arrived stays in the reader's buffer.
            data = await asyncio.wait_for(reader.read(65536), max(idle.left(), 0.01))
        except TimeoutError:
            if idle.left() <= 0:
                raise
            continue  # the other direction moved meanwhile
        idle.moved()
        return data


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: _Idle | None = None) -> None:
    """Copy until EOF, then pass the half-close on (the other direction may still be talking).

    With `idle`, give up (closing `writer`) once nothing moved either way for its limit."""
    try:
        while data := await _read(reader, idle):
            writer.write(data)
            if idle is None:
                await writer.drain()
            else:  # a peer that stops reading what it is sent holds us no longer than one that stops sending
                await asyncio.wait_for(writer.drain(), idle.seconds)
                idle.moved()
        if writer.can_write_eof():
            writer.write_eof()
    except TimeoutError:
        log.info("balancer: dropped a request idle for %.0f s", idle.seconds if idle else 0)
        writer.close()
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
