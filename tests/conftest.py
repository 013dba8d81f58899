"""Shared fixtures: both backends for the codec tests, and the kernel-NAPT namespace topology."""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp._backend import load
from ikecp.lab import netns
from ikecp.testing.facility import require

BACKENDS = ("python", "native")


@pytest.fixture(params=BACKENDS)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


@pytest.fixture
def topo():
    """fap / rtr / segw namespaces with kernel NAPT (docs/net-testing.md); removed after the test.
    Fails rather than skips when CI=true and the machine cannot make them."""
    require(netns.probe())
    with netns.nat_topology() as t:
        yield t
    assert not t.exists()
