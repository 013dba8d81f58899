"""Byte arguments as the native module takes them: ``bytes`` as is, any other buffer-protocol
object copied once; anything else raises the ``TypeError`` of ``memoryview(obj)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._backend import Buffer


def as_bytes(data: Buffer) -> bytes:
    """``data``'s octets as ``bytes`` (no copy for ``bytes`` itself)."""
    return data if type(data) is bytes else memoryview(data).tobytes()
