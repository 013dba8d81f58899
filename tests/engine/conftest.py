"""Engine tests run once per backend; the fixture also switches the global backend, which the
SeGW/FAP helpers that build SAs without an explicit backend read."""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp import _backend


@pytest.fixture(params=("python", "native"))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = _backend.load(request.param)
    monkeypatch.setattr(_backend, "backend", module)
    return module
