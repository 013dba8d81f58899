"""Pure-Python twin of the native whole-message calls: the reference codec composed with an
``SkCipher`` (RFC 7296 §3.14).

``seal_message`` encrypts every payload of ``msg`` into one SK payload; ``open_message``
verifies and decrypts, returning the message with the SK payload replaced by the payloads it
carried (any payloads sent in the clear before SK are kept in front of them).

Both build and read the fixed 28-octet header directly and leave only the payload chain to
the codec (``dataclasses.replace`` alone costs more than the encryption).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..const import PayloadType
from ..message import SK, Message
from . import codec

if TYPE_CHECKING:
    from .._backend import SkCipherLike

_HEADER = struct.Struct(">8s8sBBBBII")


def seal_message(cipher: SkCipherLike, msg: Message, *, iv: bytes | None = None) -> bytes:
    """Encode ``msg``'s header, encrypt its payloads into SK, return the datagram."""
    # The codec validates the header fields; the empty payload chain keeps that cheap.
    header = bytearray(codec.encode_message(Message(
        msg.spi_i, msg.spi_r, msg.exchange, msg.flags, msg.message_id, (),
        msg.major_version, msg.minor_version)))
    header[16] = PayloadType.SK
    first_type, body = codec.encode_payloads(msg.payloads)
    return cipher.seal(bytes(header), first_type, body, iv=iv)


def open_message(cipher: SkCipherLike, data: bytes) -> Message:
    """Verify and decrypt ``data``; IntegrityError / ParseError as ``SkCipher.open``."""
    first_type, plaintext = cipher.open(data)
    inner = codec.decode_payloads(first_type, plaintext)
    spi_i, spi_r, first, version, exchange, flags, message_id, _ = _HEADER.unpack_from(data)
    clear: tuple = ()
    if first != PayloadType.SK:
        clear = tuple(p for p in codec.decode_message(data).payloads if not isinstance(p, SK))
    return Message(spi_i, spi_r, exchange, flags, message_id, clear + inner,
                   version >> 4, version & 0x0F)
