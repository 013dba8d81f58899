"""The standard attributes: an address pool and fixed values (RFC 7296 §3.15.1).

INTERNAL_IP4_ADDRESS holds 4 octets; INTERNAL_IP6_ADDRESS 16 octets plus a prefix-length
octet; NETMASK and DNS attributes are plain packed addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from ..const import ConfigAttr, NotifyType
from .registry import CpContext, CpFailure


def _host_count(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """How many addresses ``net.hosts()`` yields, without walking them."""
    n = net.num_addresses
    if n <= 2:
        return n
    return n - 2 if net.version == 4 else n - 1


class AddressPool:
    """Hands out host addresses of one network, lowest first, and takes them back.

    ``share`` (index, count): only the index-th of ``count`` consecutive, equal slices of the
    host addresses, so that each worker process of a SeGW hands out its own addresses.
    """

    def __init__(self, cidr: str, *, share: tuple[int, int] = (0, 1)) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        index, count = share
        if not 0 <= index < count:
            raise ValueError(f"share {index} of {count}")
        self._hosts: Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]
        if count == 1:
            self._hosts = self.network.hosts()
        else:
            first = next(self.network.hosts())
            size = _host_count(self.network)
            lo, hi = index * size // count, (index + 1) * size // count
            self._hosts = (ipaddress.ip_address(int(first) + i) for i in range(lo, hi))
        self._free: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        self.in_use: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()

    def allocate(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        addr = self._free.pop() if self._free else next(self._hosts, None)
        if addr is not None:
            self.in_use.add(addr)
        return addr

    def release(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if addr in self.in_use:
            self.in_use.remove(addr)
            self._free.append(addr)


class PoolProvider:
    """INTERNAL_IP4_ADDRESS or INTERNAL_IP6_ADDRESS from a pool; INTERNAL_ADDRESS_FAILURE
    when the pool is empty (RFC 7296 §3.15.4)."""

    def __init__(self, pool: AddressPool) -> None:
        self.pool = pool
        self.v6 = pool.network.version == 6
        self.attr_type = ConfigAttr.INTERNAL_IP6_ADDRESS if self.v6 else \
            ConfigAttr.INTERNAL_IP4_ADDRESS

    def provide(self, ctx: CpContext, requested: list[bytes]) -> list[bytes]:
        addr = self.pool.allocate()
        if addr is None:
            raise CpFailure(NotifyType.INTERNAL_ADDRESS_FAILURE, "address pool exhausted")
        value = addr.packed + (bytes((self.pool.network.prefixlen,)) if self.v6 else b"")
        ctx.assigned[self.attr_type] = [value]
        return [value]

    def release(self, ctx: CpContext) -> None:
        for value in ctx.assigned.pop(self.attr_type, []):
            self.pool.release(ipaddress.ip_address(value[:16] if self.v6 else value[:4]))


class StaticProvider:
    """Answers a requested attribute with fixed values (netmask, DNS servers, ...)."""

    def __init__(self, attr_type: int, values: Iterable[bytes]) -> None:
        self.attr_type = attr_type
        self.values = list(values)

    @classmethod
    def addresses(cls, attr_type: int, addrs: Iterable[str]) -> StaticProvider:
        return cls(attr_type, [ipaddress.ip_address(a).packed for a in addrs])

    def provide(self, ctx: CpContext, requested: list[bytes]) -> list[bytes]:
        return list(self.values)

    def release(self, ctx: CpContext) -> None:
        return None


class RequestHandler:
    """Initiator: always asks for one attribute type; the reply reaches the application in
    the ``ConfigReceived`` event."""

    def __init__(self, attr_type: int) -> None:
        self.attr_type = attr_type

    def request(self, ctx: CpContext) -> bytes | None:
        return b""

    def handle(self, ctx: CpContext, values: list[bytes]) -> None:
        return None
