"""Whole-message SK protection through the active backend (``ikecp._backend.backend``).

Thin forwarders rather than a re-bound name: the backend is looked up per call, so a test
or bench that swaps ``_backend.backend`` swaps these too.
"""

from __future__ import annotations

from . import _backend
from ._backend import SkCipherLike
from .message import Message


def seal_message(cipher: SkCipherLike, msg: Message, *, iv: bytes | None = None) -> bytes:
    """Encode ``msg``'s header, encrypt its payloads into one SK payload, return the datagram."""
    return _backend.backend.seal_message(cipher, msg, iv=iv)


def open_message(cipher: SkCipherLike, data: bytes) -> Message:
    """Verify and decrypt ``data``; the SK payload is replaced by the payloads it carried."""
    return _backend.backend.open_message(cipher, data)
