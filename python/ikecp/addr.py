"""Textual IP address <-> packed octets, fast enough for the per-message path (the
``ipaddress`` module costs several microseconds per parse)."""

from __future__ import annotations

import socket
from functools import lru_cache

#: A UDP endpoint: (IP address as text, port). The one definition every module imports.
Address = tuple[str, int]


@lru_cache(maxsize=65536)
def pack(ip: str) -> bytes:
    """4 or 16 octets for an IPv4 or IPv6 address in text form; ValueError if invalid."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except OSError:
        raise ValueError(f"not an IP address: {ip!r}") from None


def unpack(packed: bytes) -> str:
    """Text form of 4 or 16 packed octets; ValueError for any other length."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    if len(packed) == 16:
        return socket.inet_ntop(socket.AF_INET6, packed)
    raise ValueError(f"packed address must be 4 or 16 octets, not {len(packed)}")
