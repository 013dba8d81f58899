"""The names an application uses to embed a SeGW or a FAP, in one place.

Everything here is also importable from ``ikecp`` itself (``from ikecp import Gateway``);
``import ikecp`` stays light and loads this module on first use. See ``docs/library.md``.

- roles: ``Gateway`` (SeGW), ``Femto`` (FAP) and its ``FapStatus``;
- settings: ``SegwConfig``, ``FapConfig`` (validated at construction: ``ConfigError``),
  ``load_segw`` / ``load_fap`` (the same from TOML);
- authentication: ``Authenticator`` (the protocol an application's own implements),
  ``PskAuthenticator``, ``Identity``;
- CP attributes: ``AttributeProvider`` (SeGW), ``AttributeHandler`` (FAP), ``CpContext``,
  ``CpFailure``, ``Deferred`` (a value that comes later);
- the binding table: ``BindingStore`` (the protocol), ``Binding`` (a row),
  ``MemoryBindingStore``, ``BindingRegistry`` (SQLite), ``open_store``;
- events: ``BindingChanged``, ``SaFailure``, ``PublicAddressUpdate`` (the role callbacks),
  ``Event`` (every engine event, ``ikecp.events``), ``CpValueDeferred``;
- errors: ``ConfigError``, ``IkeError`` (the base of the protocol and codec errors).
"""

from __future__ import annotations

from .config import ConfigError, FapConfig, SegwConfig, load_fap, load_segw
from .cp import AttributeHandler, AttributeProvider, CpContext, CpFailure, Deferred
from .engine import Authenticator, Identity, PskAuthenticator
from .errors import IkeError
from .events import (
    BindingChanged,
    CpValueDeferred,
    Event,
    PublicAddressUpdate,
    SaFailure,
)
from .roles.bindings import BindingRegistry, open_store
from .roles.femto import FapStatus, Femto
from .roles.gateway import Gateway
from .roles.store import Binding, BindingStore, MemoryBindingStore

__all__ = [
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
    "load_fap",
    "load_segw",
    "open_store",
]
