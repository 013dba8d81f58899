"""Shared fixtures: every codec test runs against both backends."""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp._backend import load

# TEMPORARY until the native codec lands in this branch.
BACKENDS = ("python", "native") if hasattr(load("native"), "decode_message") else ("python",)


@pytest.fixture(params=BACKENDS)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)
