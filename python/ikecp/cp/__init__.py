"""Configuration payload attributes: the registry, the standard attributes and the NAT-info
extension. See ``registry`` for how an application adds its own attribute."""

from .nat_info import Mode, NatInfoHandler, NatInfoProvider, PushMode
from .registry import (
    AttributeHandler,
    AttributeProvider,
    CpContext,
    CpFailure,
    CpRegistry,
    Deferred,
)
from .standard import AddressPool, PoolProvider, RequestHandler, StaticProvider

__all__ = [
    "AddressPool",
    "AttributeHandler",
    "AttributeProvider",
    "CpContext",
    "CpFailure",
    "CpRegistry",
    "Deferred",
    "Mode",
    "NatInfoHandler",
    "NatInfoProvider",
    "PoolProvider",
    "PushMode",
    "RequestHandler",
    "StaticProvider",
]
