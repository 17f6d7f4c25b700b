"""Who is calling over HTTP: the client's address, for the limits per address (logins, sign-ups,
refused API tokens). One place, for the session routes and the REST API alike."""

from __future__ import annotations

from starlette.requests import Request


def client_ip(request: Request) -> str:
    """The caller's address; X-Forwarded-For only through Reflex's trusted_proxy_hops (as the socket does).

    With N trusted hops it is the Nth address from the right over every X-Forwarded-For line: each
    proxy appends the address it saw, so anything to the left of ours is what the client wrote.
    """
    from reflex.config import get_config

    hops = get_config().trusted_proxy_hops
    if hops:
        chain = ",".join(request.headers.getlist("x-forwarded-for"))
        forwarded = [ip.strip() for ip in chain.split(",") if ip.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.client.host if request.client else "unknown"
