"""Skip-or-fail policy for tests that need a facility of the machine (root, netns, a peer).

Outside CI a missing facility skips the test; with CI=true it fails it, so a CI run can never
pass by silently skipping the interop and kernel-NAT tests.
"""

from __future__ import annotations

import os


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(missing: str | None) -> None:
    """``missing`` is None when the facility is there, else the reason it is not."""
    if missing is None:
        return
    import pytest

    if in_ci():
        pytest.fail(f"required facility missing (CI=true): {missing}")
    pytest.skip(missing)
