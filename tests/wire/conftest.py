"""Wire tests: the dispatcher in memory runs once per backend; the socket tests use the
configured backend (the fixture also switches the global one, which SAs built without an
explicit backend read)."""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp import _backend


@pytest.fixture(params=("python", "native"))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = _backend.load(request.param)
    monkeypatch.setattr(_backend, "backend", module)
    return module
