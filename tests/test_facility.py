"""The skip-or-fail policy for tests that need root, namespaces or a peer."""

from __future__ import annotations

import pytest
from ikecp.testing.facility import require


def test_missing_facility_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no strongSwan"):
        require("no strongSwan")


def test_missing_facility_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no strongSwan"):
        require("no strongSwan")


def test_present_facility_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require(None)
