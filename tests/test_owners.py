"""Claim owners: a process that was killed, even one not yet reaped (a zombie), holds nothing."""

import os
import signal
import subprocess
import time

from billing_app import owners


def test_a_killed_child_not_yet_reaped_counts_as_dead():
    child = subprocess.Popen(["sleep", "30"])
    token = owners.new_claim_token(owners.Owner(owners.this_process().host, child.pid, "n0nce000"))
    assert not owners.is_dead(token)
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not owners._zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert owners._zombie(child.pid)  # killed, not reaped: signal 0 still finds it
    assert owners.is_dead(token)
    child.wait()


def test_another_host_or_a_live_process_is_never_dead():
    me = owners.this_process()
    assert not owners.is_dead(owners.new_claim_token(owners.Owner("elsewhere@00000000", 1, "abcd1234")))
    assert not owners.is_dead(owners.new_claim_token(me))
    assert owners.is_dead(owners.new_claim_token(owners.Owner(me.host, me.pid, "0ld1ncar")))
