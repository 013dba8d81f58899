"""Engine tests run once per backend; ``ikecp.sk`` reads the global backend, so the fixture
switches that too."""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp import _backend


@pytest.fixture(params=("python", "native"))
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = _backend.load(request.param)
    monkeypatch.setattr(_backend, "backend", module)
    return module
