"""The public surface: ``ikecp`` re-exports exactly ``ikecp.api``'s names, each one the
object its home module defines, and loads them only when asked."""

from __future__ import annotations

import subprocess
import sys

import ikecp
import ikecp.api
import pytest
from ikecp.events import BindingChanged
from ikecp.roles.gateway import Gateway
from ikecp.roles.store import BindingStore


def test_ikecp_re_exports_the_api_and_nothing_else() -> None:
    assert set(ikecp.__all__) - {"BACKEND_NAME", "__version__", "backend"} == \
        set(ikecp.api.__all__)
    for name in ikecp.api.__all__:
        assert getattr(ikecp, name) is getattr(ikecp.api, name)
    assert ikecp.Gateway is Gateway and ikecp.BindingChanged is BindingChanged
    assert ikecp.BindingStore is BindingStore
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        ikecp.Nonesuch  # noqa: B018


def test_star_import_gives_the_roles() -> None:
    code = ("from ikecp import *; "
            "print(Gateway.__name__, Femto.__name__, SegwConfig.__name__, BACKEND_NAME)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[:3] == ["Gateway", "Femto", "SegwConfig"]
