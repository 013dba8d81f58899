"""Pure-Python twin of the native bytes-level calls behind ``ikecp.lowlevel``.

Same signatures, results and exceptions as ``ikecp._native``; the differential tests hold the
two to that. Byte arguments take any buffer-protocol object; anything else is the
``TypeError`` of ``memoryview(obj)``.
"""

from __future__ import annotations

import hmac as _std_hmac
import struct
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import CryptoError, IntegrityError, ParseError, UnsupportedCriticalPayloadError
from . import crypto
from .buf import as_bytes

if TYPE_CHECKING:
    from .._backend import Buffer, SkCipherLike

_HEADER = struct.Struct(">8s8sBBBBII")
_KNOWN_TYPES = frozenset((*range(33, 49), 53))
_SK, _SKF = 46, 53
_AES_CBC, _AES_GCM_16, _CHACHA20_POLY1305 = 12, 20, 28
_BAD_ENCR_KEY = "wrong key length for the encryption transform"


def _integ(integ_id: int, key: bytes) -> tuple[object, int]:
    if not isinstance(integ_id, int):
        raise CryptoError("unsupported integrity transform")
    try:
        algorithm, key_len, icv_len = crypto._INTEG[integ_id]
    except (KeyError, TypeError):
        raise CryptoError("unsupported integrity transform") from None
    if len(key) != key_len:
        raise CryptoError("wrong key length for the integrity transform")
    return algorithm, icv_len


def integ_compute(integ_id: int, key: Buffer, data: Buffer) -> bytes:
    """The truncated ICV of ``data`` (RFC 2404, RFC 4868 §2.1)."""
    key, data = as_bytes(key), as_bytes(data)
    algorithm, icv_len = _integ(integ_id, key)
    mac = _hmac.HMAC(key, algorithm())  # type: ignore[operator]
    mac.update(data)
    return mac.finalize()[:icv_len]


def integ_verify(integ_id: int, key: Buffer, data: Buffer, icv: Buffer) -> bool:
    """Whether ``icv`` is the ICV of ``data``; constant-time comparison."""
    icv = as_bytes(icv)
    return _std_hmac.compare_digest(integ_compute(integ_id, key, data), icv)


def _aead(encr_id: int, key: bytes, iv: bytes) -> tuple[AESGCM | ChaCha20Poly1305, bytes]:
    """The keyed AEAD and the nonce (salt | IV) after the key and IV length checks."""
    sizes = (16, 32) if encr_id == _AES_GCM_16 else (32,)
    if len(key) - 4 not in sizes:
        raise CryptoError(_BAD_ENCR_KEY)
    if len(iv) != 8:
        raise CryptoError("wrong IV length")
    cls = AESGCM if encr_id == _AES_GCM_16 else ChaCha20Poly1305
    return cls(key[:-4]), key[-4:] + iv


def _cbc_checks(key: bytes, iv: bytes, aad: bytes) -> None:
    if len(key) not in (16, 32):
        raise CryptoError(_BAD_ENCR_KEY)
    if len(iv) != 16:
        raise CryptoError("wrong IV length")
    if aad:
        raise CryptoError("AES-CBC takes no AAD: its ICV covers the datagram (integ_compute)")


def _is_aead(encr_id: object) -> bool:
    if not isinstance(encr_id, int):
        raise CryptoError("unsupported encryption transform")
    if encr_id in (_AES_GCM_16, _CHACHA20_POLY1305):
        return True
    if encr_id == _AES_CBC:
        return False
    raise CryptoError("unsupported encryption transform")


def encrypt_body(encr_id: int, key: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer) -> bytes:
    """plaintext | padding | pad length, encrypted (RFC 7296 §3.14); AEADs append the ICV."""
    key, iv, aad, plaintext = as_bytes(key), as_bytes(iv), as_bytes(aad), as_bytes(plaintext)
    if _is_aead(encr_id):
        aead, nonce = _aead(encr_id, key, iv)
        return aead.encrypt(nonce, plaintext + b"\x00", aad)
    _cbc_checks(key, iv, aad)
    pad = 15 - len(plaintext) % 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(plaintext + bytes(pad) + bytes((pad,))) + encryptor.finalize()


def decrypt_body(encr_id: int, key: Buffer, iv: Buffer, aad: Buffer, body: Buffer) -> bytes:
    """The plaintext of an SK body, padding removed; IntegrityError if it does not verify."""
    key, iv, aad, body = as_bytes(key), as_bytes(iv), as_bytes(aad), as_bytes(body)
    if _is_aead(encr_id):
        aead, nonce = _aead(encr_id, key, iv)
        if len(body) < 16:
            raise IntegrityError()
        try:
            padded = aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise IntegrityError() from None
    else:
        _cbc_checks(key, iv, aad)
        if len(body) % 16:
            raise IntegrityError()
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
    if not padded or padded[-1] >= len(padded):
        raise IntegrityError()
    return padded[:len(padded) - 1 - padded[-1]]


def seal_datagram(cipher: SkCipherLike, prefix: Buffer, next_payload: int, plaintext: Buffer,
                  *, iv: Buffer | None = None) -> bytes:
    """``cipher.seal`` with any buffers; the Next Payload before SK is set to 46."""
    return cipher.seal(as_bytes(prefix), next_payload, as_bytes(plaintext),
                       iv=None if iv is None else as_bytes(iv))


def open_datagram(cipher: SkCipherLike, data: Buffer) -> tuple[int, bytes, bytes]:
    """(first inner payload type, IV, inner chain) of the SK payload that ends ``data``."""
    data = as_bytes(data)
    first, plaintext = cipher.open(data)
    iv_at = crypto._find_sk(data) + 4
    return first, data[iv_at:iv_at + cipher.iv_size], plaintext


_Header = tuple[bytes, bytes, int, int, int, int, int, int, int]
_Frame = tuple[int, bool, int, int]


def decode_header(data: Buffer) -> _Header:
    """(spi_i, spi_r, next_payload, major, minor, exchange, flags, message_id, length)."""
    data = as_bytes(data)
    if len(data) < 28:
        raise ParseError("truncated header", 0, None)
    spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = \
        _HEADER.unpack_from(data)
    return (spi_i, spi_r, next_payload, version >> 4, version & 0x0F, exchange, flags,
            message_id, length)


def _walk(ty: int, data: bytes, pos: int) -> tuple[_Frame, ...]:
    end = len(data)
    frames = []
    last = None
    while ty:
        if end - pos < 4:
            raise ParseError("truncated payload", pos, ty)
        following, flags, length = data[pos], data[pos + 1], (data[pos + 2] << 8) | data[pos + 3]
        if length < 4:
            raise ParseError("bad payload length", pos, ty)
        if length > end - pos:
            raise ParseError("truncated payload", pos, ty)
        critical = flags >= 0x80
        if critical and ty not in _KNOWN_TYPES:
            raise UnsupportedCriticalPayloadError("unsupported critical payload", pos, ty)
        frames.append((ty, critical, pos, length))
        last = ty
        pos += length
        if ty in (_SK, _SKF):
            break
        ty = following
    if pos != end:
        raise ParseError("trailing data", pos, last)
    return tuple(frames)


def walk_payloads(first_type: int, data: Buffer, offset: int = 0) -> tuple[_Frame, ...]:
    """((type, critical, offset, length), ...) of the chain starting at ``offset``; the first
    fault in wire order raises (see ``ikecp.lowlevel``)."""
    data = as_bytes(data)  # argument checks in the order the native call makes them
    if not isinstance(offset, int):
        raise TypeError("offset must be an int")
    if not isinstance(first_type, int):
        raise TypeError("first_type must be an int")
    if not 0 <= first_type <= 255:
        raise ValueError("first_type must be an int in 0..255")
    if not 0 <= offset <= len(data):
        raise ValueError("offset must be an int in 0..len(data)")
    return _walk(first_type, data, offset)


def walk_message(data: Buffer) -> tuple[_Header, tuple[_Frame, ...]]:
    """(header, frames) of a whole datagram; its length field must match."""
    data = as_bytes(data)
    header = decode_header(data)
    if header[8] != len(data):
        raise ParseError("length mismatch", 0, None)
    return header, _walk(header[2], data, 28)


_ENCR_KEY_BITS = {_AES_CBC: (128, 256), _AES_GCM_16: (128, 256), _CHACHA20_POLY1305: (None,)}
_NO_KEY_LENGTH = {2: (2, 5, 6, 7), 3: (0, 2, 12, 13, 14), 4: (14, 19, 20, 31), 5: (0, 1)}


def transform_supported(transform_type: int, transform_id: int,
                        key_length: int | None = None) -> bool:
    """Whether ikecp implements the transform (RFC 7296 §3.3.2); ``key_length`` is the Key
    Length attribute in bits, ``None`` when the proposal carries none."""
    for v in (transform_type, transform_id) + (() if key_length is None else (key_length,)):
        if not isinstance(v, int):
            raise TypeError("transform arguments must be ints")
    if transform_type == 1:
        return key_length in _ENCR_KEY_BITS.get(transform_id, ())
    return key_length is None and transform_id in _NO_KEY_LENGTH.get(transform_type, ())
