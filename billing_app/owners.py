"""Who holds a claim (on the event log, on an org's purchase), named so a restarted process can tell its dead predecessors.

Every claim is written on its rows as a token `host:pid:nonce:n`: the claiming process
(`this_process()`) and a number of its own, so each claim is unique and fences off the
marks of an older one. `host` is the hostname with the kernel's boot id (two machines that
share a hostname never pass for one); `nonce` is drawn when the process starts, so a
process restarted under the same pid (a container's restarted main process often is) is
a different owner from its predecessor.

`is_dead(token)` is the start-up test: true only for a claim this process can prove no
live process holds, i.e. one made on this host by a pid that no longer runs, or by an
earlier incarnation of our own pid. Anything else (another host, a pid that runs, even
one reused by an unrelated program) is left to its lease. Hostnames are assumed unique
among the workers sharing a database (Docker and Kubernetes give each container its own).
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _host() -> str:
    try:
        boot = _BOOT_ID.read_text().strip()[:8]
    except OSError:  # not Linux: the hostname alone
        boot = ""
    return f"{socket.gethostname()[:100]}@{boot}"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"


_me: Owner | None = None
_claims = itertools.count(1)


def this_process() -> Owner:
    """This process as a claim owner (a new one in a forked child)."""
    global _me
    if _me is None or _me.pid != os.getpid():
        _me = Owner(_host(), os.getpid(), secrets.token_hex(4))
    return _me


def new_claim_token(owner: Owner | None = None) -> str:
    """A token for one claim: its owner (default this process) and a number unique within it."""
    return f"{owner or this_process()}:{next(_claims)}"


def owner_of(token: str) -> Owner | None:
    """The owner a claim token names (None if it is not one)."""
    parts = token.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return Owner(parts[0], int(parts[1]), parts[2])


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process not yet reaped by its parent still answers signal 0, but it holds nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat[stat.rfind(")") + 2:][:1] == "Z"


def is_dead(token: str) -> bool:
    """Whether the claim `token` was made by a process of this host that is gone (see the module doc)."""
    owner, me = owner_of(token), this_process()
    if owner is None or owner.host != me.host:
        return False
    if owner.pid == me.pid:
        return owner.nonce != me.nonce  # our pid, an earlier incarnation
    return not _runs(owner.pid)
