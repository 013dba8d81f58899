"""Whole-message SK protection: the active backend's codec composed with an ``SkCipher``.

``seal_message`` encrypts every payload of ``msg`` into one SK payload; ``open_message``
verifies and decrypts, returning the message with the SK payload replaced by the payloads it
carried (any payloads sent in the clear before SK are kept in front of them).
"""

from __future__ import annotations

from dataclasses import replace

from . import _backend
from ._backend import SkCipherLike
from .const import IKE_HEADER_LEN, PayloadType
from .message import SK, Message


def seal_message(cipher: SkCipherLike, msg: Message, *, iv: bytes | None = None) -> bytes:
    """Encode ``msg``'s header, encrypt its payloads into SK, return the datagram."""
    backend = _backend.backend
    header = bytearray(backend.encode_message(replace(msg, payloads=())))
    header[16] = PayloadType.SK
    first_type, body = backend.encode_payloads(msg.payloads)
    return cipher.seal(bytes(header[:IKE_HEADER_LEN]), first_type, body, iv=iv)


def open_message(cipher: SkCipherLike, data: bytes) -> Message:
    """Verify and decrypt ``data``; IntegrityError / ParseError as ``SkCipher.open``."""
    backend = _backend.backend
    first_type, plaintext = cipher.open(data)
    outer = backend.decode_message(data)
    inner = backend.decode_payloads(first_type, plaintext)
    clear = tuple(p for p in outer.payloads if not isinstance(p, SK))
    return replace(outer, payloads=clear + tuple(inner))
