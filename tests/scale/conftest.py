"""One scaled topology (2 backends behind the balancer, PostgreSQL, Redis) shared by tests/scale."""

from __future__ import annotations

import pytest

from tests.scale.helpers import real_servers, start_topology, stop_topology


@pytest.fixture(scope="session")
def topology(tmp_path_factory):
    if (reason := real_servers()) is not None:
        pytest.skip(f"scale tests {reason}")
    topology = start_topology(tmp_path_factory.mktemp("scale"))
    try:
        yield topology
    finally:
        stop_topology(topology)
