"""Shared fixtures: every codec test runs against both backends."""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp._backend import load

BACKENDS = ("python", "native")


@pytest.fixture(params=BACKENDS)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)
