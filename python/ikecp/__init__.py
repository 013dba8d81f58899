"""ikecp: IKEv2 for Python with a Rust hot path.

``ikecp.backend`` is the active codec + crypto backend (native by default,
``IKECP_BACKEND=python`` for the pure-Python twin). The application-facing names (``Gateway``,
``Femto``, ``SegwConfig``, ``FapConfig``, the callback events, ``ConfigError``, the binding
store protocol, ...) live in ``ikecp.api`` and are re-exported here; they are loaded on first
use, so ``import ikecp`` for the accelerator alone stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._backend import NAME as BACKEND_NAME
from ._backend import backend

if TYPE_CHECKING:
    from .api import (
        AttributeHandler,
        AttributeProvider,
        Authenticator,
        Binding,
        BindingChanged,
        BindingRegistry,
        BindingStore,
        ConfigError,
        CpContext,
        CpFailure,
        CpValueDeferred,
        Deferred,
        Event,
        FapConfig,
        FapStatus,
        Femto,
        Gateway,
        Identity,
        IkeError,
        MemoryBindingStore,
        PskAuthenticator,
        PublicAddressUpdate,
        SaFailure,
        SegwConfig,
        load_fap,
        load_segw,
        open_store,
    )

__version__ = "0.1.0"

__all__ = [
    "BACKEND_NAME",
    "AttributeHandler",
    "AttributeProvider",
    "Authenticator",
    "Binding",
    "BindingChanged",
    "BindingRegistry",
    "BindingStore",
    "ConfigError",
    "CpContext",
    "CpFailure",
    "CpValueDeferred",
    "Deferred",
    "Event",
    "FapConfig",
    "FapStatus",
    "Femto",
    "Gateway",
    "Identity",
    "IkeError",
    "MemoryBindingStore",
    "PskAuthenticator",
    "PublicAddressUpdate",
    "SaFailure",
    "SegwConfig",
    "__version__",
    "backend",
    "load_fap",
    "load_segw",
    "open_store",
]

#: The names ``__getattr__`` fetches from ``ikecp.api``.
_API = frozenset(__all__) - {"BACKEND_NAME", "__version__", "backend"}


def __getattr__(name: str) -> Any:
    """PEP 562: the ``ikecp.api`` names, imported when first asked for."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ikecp' has no attribute {name!r}")
