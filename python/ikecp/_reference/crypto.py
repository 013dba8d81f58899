"""Pure-Python crypto twin of ``ikecp._native``: prf/prf+, the IKEv2 key schedule, AUTH
octets, NAT-D and SK payload protection (RFC 7296 §2.13-2.18, §2.23, §3.14; RFC 5282; RFC 7634).

Built on ``cryptography``; every error class and ``ParseError`` phrase matches the Rust core so
the differential tests can compare the two backends on hostile input.
"""

from __future__ import annotations

import hashlib
import hmac as _std_hmac
import itertools
import os
import struct
import typing

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import CryptoError, IntegrityError, ParseError
from .buf import as_bytes

_HEADER_LEN = 28
_GENERIC_LEN = 4
_SK = 46
_SKF = 53
_SKF_HEADER_LEN = 8  # generic header, Fragment Number, Total Fragments (RFC 7383 §2.5)
_SPI_LEN = 8

# PRF transform id -> (hash, output length) (RFC 7296 §3.3.2, RFC 4868 for SHA-2).
_PRF_HASHES: dict[int, tuple[type[hashes.HashAlgorithm], int]] = {
    2: (hashes.SHA1, 20),
    5: (hashes.SHA256, 32),
    6: (hashes.SHA384, 48),
    7: (hashes.SHA512, 64),
}

# INTEG transform id -> (hash, key length, truncated ICV length) (RFC 2404, RFC 4868 §2.1).
_INTEG: dict[int, tuple[type[hashes.HashAlgorithm], int, int]] = {
    2: (hashes.SHA1, 20, 12),
    12: (hashes.SHA256, 32, 16),
    13: (hashes.SHA384, 48, 24),
    14: (hashes.SHA512, 64, 32),
}

ENCR_AES_CBC = 12
ENCR_AES_GCM_16 = 20
ENCR_CHACHA20_POLY1305 = 28
_SALT_LEN = 4


def _hash(prf_id: int) -> tuple[type[hashes.HashAlgorithm], int]:
    try:
        return _PRF_HASHES[prf_id]
    except KeyError:
        raise CryptoError(f"unsupported PRF transform {prf_id}") from None


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """HMAC-based prf of RFC 7296 §2.13."""
    mac = _hmac.HMAC(as_bytes(key), _hash(prf_id)[0]())
    mac.update(as_bytes(data))
    return mac.finalize()


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+ (§2.13): T1 | T2 | ... with Tn = prf(K, Tn-1 | S | n), at most 255 blocks."""
    digest_size = _hash(prf_id)[1]
    if length < 0:
        raise CryptoError("prf+ length must not be negative")
    if length > 255 * digest_size:
        raise CryptoError("prf+ would need more than 255 iterations")
    key, seed = as_bytes(key), as_bytes(seed)
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = prf(prf_id, key, block + seed + bytes((counter,)))
        out += block
        counter += 1
    return bytes(out[:length])


def skeyseed(prf_id: int, nonce_i: bytes, nonce_r: bytes, shared_secret: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (§2.14)."""
    return prf(prf_id, as_bytes(nonce_i) + as_bytes(nonce_r), shared_secret)


def rekey_skeyseed(prf_id: int, sk_d_old: bytes, shared_secret: bytes,
                   nonce_i: bytes, nonce_r: bytes) -> bytes:
    """SKEYSEED of a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (§2.18)."""
    return prf(prf_id, sk_d_old, as_bytes(shared_secret) + as_bytes(nonce_i) + as_bytes(nonce_r))


def ike_keys(prf_id: int, skeyseed: bytes, nonce_i: bytes, nonce_r: bytes,
             spi_i: bytes, spi_r: bytes, encr_key_len: int,
             integ_key_len: int) -> tuple[bytes, ...]:
    """(SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr) = prf+(SKEYSEED, Ni|Nr|SPIi|SPIr)."""
    if len(spi_i) != _SPI_LEN or len(spi_r) != _SPI_LEN:
        raise CryptoError("IKE SPIs must be 8 octets")
    if encr_key_len < 0 or integ_key_len < 0:
        raise CryptoError("key lengths must not be negative")
    prf_len = _hash(prf_id)[1]
    sizes = (prf_len, integ_key_len, integ_key_len, encr_key_len, encr_key_len,
             prf_len, prf_len)
    seed = as_bytes(nonce_i) + as_bytes(nonce_r) + as_bytes(spi_i) + as_bytes(spi_r)
    stream = prf_plus(prf_id, skeyseed, seed, sum(sizes))
    keys = []
    pos = 0
    for size in sizes:
        keys.append(stream[pos:pos + size])
        pos += size
    return tuple(keys)


def child_keymat(prf_id: int, sk_d: bytes, nonce_i: bytes, nonce_r: bytes,
                 length: int, shared_secret: bytes = b"") -> bytes:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17)."""
    seed = as_bytes(shared_secret) + as_bytes(nonce_i) + as_bytes(nonce_r)
    return prf_plus(prf_id, sk_d, seed, length)


def signed_octets(prf_id: int, message: bytes, nonce: bytes, sk_p: bytes,
                  id_type: int, id_data: bytes) -> bytes:
    """message | nonce | prf(SK_p, RestOfIDPayload) (§2.15)."""
    if not 0 <= id_type <= 255:
        raise CryptoError("ID type must fit one octet")
    rest_of_id = bytes((id_type, 0, 0, 0)) + as_bytes(id_data)
    return as_bytes(message) + as_bytes(nonce) + prf(prf_id, sk_p, rest_of_id)


_KEY_PAD = b"Key Pad for IKEv2"


def psk_auth(prf_id: int, psk: bytes, signed_octets: bytes) -> bytes:
    """AUTH data for SHARED_KEY_MIC: prf(prf(psk, "Key Pad for IKEv2"), octets) (§2.15)."""
    return prf(prf_id, prf(prf_id, psk, _KEY_PAD), signed_octets)


def nat_detection_hash(spi_i: bytes, spi_r: bytes, ip: bytes, port: int) -> bytes:
    """NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (§2.23)."""
    if len(spi_i) != _SPI_LEN or len(spi_r) != _SPI_LEN:
        raise ValueError("IKE SPIs must be 8 octets")
    if len(ip) not in (4, 16):
        raise ValueError("ip must be 4 (IPv4) or 16 (IPv6) packed octets")
    if not 0 <= port <= 0xFFFF:
        raise ValueError("port must be 0-65535")
    return hashlib.sha1(
        as_bytes(spi_i) + as_bytes(spi_r) + as_bytes(ip) + port.to_bytes(2, "big")
    ).digest()


Integ = tuple[type[hashes.HashAlgorithm], int, int]


class Keyed(typing.NamedTuple):
    """A checked, keyed transform (shared by SK and ESP): an AEAD with its salt, or AES-CBC
    with an HMAC (hash, key length, ICV length) and its key."""

    aead: AESGCM | ChaCha20Poly1305 | None
    salt: bytes
    cbc_key: bytes
    integ: Integ | None
    integ_key: bytes
    iv_size: int
    icv_size: int

    def as_tuple(self) -> tuple[AESGCM | ChaCha20Poly1305 | None, bytes, bytes, Integ | None,
                                bytes]:
        return self.aead, self.salt, self.cbc_key, self.integ, self.integ_key


def keyed(encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes) -> Keyed:
    """Check transform ids and key lengths as the Rust core does; AEAD keys end with the salt."""
    encr_key, integ_key = as_bytes(encr_key), as_bytes(integ_key)
    if encr_id in (ENCR_AES_GCM_16, ENCR_CHACHA20_POLY1305):
        if integ_id != 0 or integ_key:
            raise CryptoError("AEAD transforms take no integrity algorithm")
        sizes = (16, 32) if encr_id == ENCR_AES_GCM_16 else (32,)
        if len(encr_key) - _SALT_LEN not in sizes:
            raise CryptoError("wrong key length for the encryption transform")
        key, salt = encr_key[:-_SALT_LEN], encr_key[-_SALT_LEN:]
        aead = AESGCM(key) if encr_id == ENCR_AES_GCM_16 else ChaCha20Poly1305(key)
        return Keyed(aead, salt, b"", None, b"", 8, 16)
    if encr_id == ENCR_AES_CBC:
        if len(encr_key) not in (16, 32):
            raise CryptoError("wrong key length for the encryption transform")
        integ = _INTEG.get(integ_id)
        if integ is None:
            raise CryptoError(f"unsupported integrity transform {integ_id}")
        if len(integ_key) != integ[1]:
            raise CryptoError("wrong key length for the integrity transform")
        return Keyed(None, b"", encr_key, integ, integ_key, 16, integ[2])
    raise CryptoError(f"unsupported encryption transform {encr_id}")


class SkCipher:
    """One direction's keyed SK payload protection; keys are set up once per IKE SA."""

    __slots__ = ("_aead", "_cbc_key", "_integ", "_integ_key", "_iv_start", "_ivs_used", "_salt",
                 "icv_size", "iv_size")

    def __init__(self, encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes) -> None:
        k = keyed(encr_id, encr_key, integ_id, integ_key)
        self._aead, self._salt, self._cbc_key, self._integ, self._integ_key = k.as_tuple()
        self.iv_size, self.icv_size = k.iv_size, k.icv_size
        if self._aead is not None:
            # Fresh IVs come from a 64-bit counter starting at a random point (RFC 5282 §3.1).
            # next() on itertools.count is atomic under the GIL: threads never share an IV.
            self._iv_start = int.from_bytes(os.urandom(8), "big")
            self._ivs_used = itertools.count()

    def _fresh_iv(self) -> bytes:
        if self._aead is None:
            return os.urandom(16)
        used = next(self._ivs_used)
        if used >= (1 << 64) - 1:  # as many as the Rust core allows
            raise CryptoError("IV space exhausted; rekey the SA")
        return ((self._iv_start + used) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")

    def _mac(self, data: bytes) -> bytes:
        assert self._integ is not None
        algorithm, _, icv_len = self._integ
        mac = _hmac.HMAC(self._integ_key, algorithm())
        mac.update(data)
        return mac.finalize()[:icv_len]

    def seal(self, prefix: bytes, next_payload: int, plaintext: bytes,
             *, iv: bytes | None = None) -> bytes:
        """prefix (length field and the Next Payload naming SK rewritten) | SK header | IV |
        ciphertext | ICV. The prefix is the 28-octet header and any clear payloads."""
        return self._seal(prefix, next_payload, _SK, b"", plaintext, iv)

    def seal_fragment(self, prefix: bytes, next_payload: int, fragment_number: int,
                      total_fragments: int, plaintext: bytes, *,
                      iv: bytes | None = None) -> bytes:
        """prefix (length and the Next Payload naming SKF rewritten) | SKF header | IV |
        ciphertext | ICV (RFC 7383 §2.5): the fragment fields sit before the IV, so the ICV
        covers them."""
        if not (isinstance(fragment_number, int) and isinstance(total_fragments, int)
                and 1 <= fragment_number <= total_fragments <= 0xFFFF):
            raise CryptoError("fragment number must be 1..total, total at most 65535")
        extra = struct.pack(">HH", fragment_number, total_fragments)
        return self._seal(prefix, next_payload, _SKF, extra, plaintext, iv)

    def _seal(self, prefix: bytes, next_payload: int, kind: int, extra: bytes,
              plaintext: bytes, iv: bytes | None) -> bytes:
        prefix, plaintext = as_bytes(prefix), as_bytes(plaintext)
        if len(prefix) < _HEADER_LEN:
            raise CryptoError("prefix must start with the 28-octet IKE header")
        if not 0 <= next_payload <= 255:
            raise CryptoError("next payload must fit one octet")
        if iv is None:
            iv = self._fresh_iv()
        elif len(iv) != self.iv_size:
            raise CryptoError("wrong IV length")
        iv = as_bytes(iv)
        if self._aead is not None:
            body_len = len(plaintext) + 1
        else:
            body_len = (len(plaintext) + 1 + 15) // 16 * 16
        sk_len = _GENERIC_LEN + len(extra) + self.iv_size + body_len + self.icv_size
        if sk_len > 0xFFFF:
            raise CryptoError("SK payload too long")
        total = len(prefix) + sk_len
        if total > 0xFFFF_FFFF:
            raise CryptoError("message too long")
        building = bytearray(prefix[:24] + struct.pack(">I", total) + prefix[_HEADER_LEN:]
                             + struct.pack(">BBH", next_payload, 0, sk_len) + extra)
        building[_last_clear_payload(prefix)] = kind
        head = bytes(building)
        if self._aead is not None:
            sealed = self._aead.encrypt(self._salt + iv, plaintext + b"\x00", head)
            return head + iv + sealed
        pad_len = body_len - len(plaintext) - 1
        padded = plaintext + bytes(pad_len) + bytes((pad_len,))
        encryptor = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv)).encryptor()
        out = head + iv + encryptor.update(padded) + encryptor.finalize()
        return out + self._mac(out)

    def open(self, data: bytes) -> tuple[int, bytes]:
        """Verify and decrypt the SK payload that ends ``data``; return (first inner type,
        plaintext). Structure errors raise ParseError, anything keyed IntegrityError."""
        data = as_bytes(data)
        return self._open(data, _find_last(data, _SK), _GENERIC_LEN, _SK)

    def open_fragment(self, data: bytes) -> tuple[int, int, int, bytes]:
        """Verify and decrypt the SKF payload that ends ``data``: (Next Payload, Fragment
        Number, Total Fragments, plaintext). A number of 0 or above the total is a
        ParseError, found before any key is used."""
        data = as_bytes(data)
        off = _find_last(data, _SKF)
        if off + _SKF_HEADER_LEN > len(data):
            raise ParseError("bad SKF payload length", off, _SKF)
        number, total = struct.unpack_from(">HH", data, off + _GENERIC_LEN)
        if not 1 <= number <= total:
            raise ParseError("bad fragment number", off, _SKF)
        first, plaintext = self._open(data, off, _SKF_HEADER_LEN, _SKF)
        return first, number, total, plaintext

    def _open(self, data: bytes, sk_off: int, header_len: int, kind: int) -> tuple[int, bytes]:
        first_inner = data[sk_off]
        body_off = sk_off + header_len + self.iv_size
        body_len = len(data) - body_off - self.icv_size
        if body_len < 1 or (self._aead is None and body_len % 16):
            what = "bad SK payload length" if kind == _SK else "bad SKF payload length"
            raise ParseError(what, sk_off, kind)
        iv = data[sk_off + header_len:body_off]
        if self._aead is not None:
            try:
                padded = self._aead.decrypt(self._salt + iv, data[body_off:],
                                            data[:sk_off + header_len])
            except InvalidTag:
                raise IntegrityError() from None
        else:
            icv_off = len(data) - self.icv_size
            if not _std_hmac.compare_digest(self._mac(data[:icv_off]), data[icv_off:]):
                raise IntegrityError()
            decryptor = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv)).decryptor()
            padded = decryptor.update(data[body_off:icv_off]) + decryptor.finalize()
        pad_len = padded[-1]
        if pad_len >= len(padded):
            raise IntegrityError()
        return first_inner, padded[:len(padded) - 1 - pad_len]


def _last_clear_payload(prefix: bytes) -> int:
    """Offset of the octet that must name SK: the last clear payload's Next Payload, or the
    header's when there is none. The payload lengths must add up to the prefix, and no Next
    Payload of 0, SK or SKF may end the chain before its last payload."""
    next_type, offset, last, last_type = prefix[16], _HEADER_LEN, 16, None
    while offset < len(prefix):
        if offset + _GENERIC_LEN > len(prefix):
            raise ParseError("truncated payload", offset, next_type)
        length = int.from_bytes(prefix[offset + 2:offset + 4], "big")
        if length < _GENERIC_LEN:
            raise ParseError("bad payload length", offset, next_type)
        if offset + length > len(prefix):
            raise ParseError("truncated payload", offset, next_type)
        if next_type == 0:
            raise ParseError("trailing data", offset, last_type)
        if next_type in (_SK, _SKF):
            raise ParseError("trailing data", offset + length, next_type)
        last, last_type, next_type, offset = offset, next_type, prefix[offset], offset + length
    return last


def _find_sk(data: bytes) -> int:
    """Offset of the SK payload's generic header, checking it is last and ends the datagram."""
    return _find_last(data, _SK)


def _find_last(data: bytes, kind: int) -> int:
    """Offset of the generic header of the encrypted payload ``kind`` (SK or SKF), checking
    it is last and ends the datagram.

    The ``what`` phrases are the codec's where the fault is the same one.
    """
    if len(data) < _HEADER_LEN:
        raise ParseError("truncated header", 0, None)
    if int.from_bytes(data[24:28], "big") != len(data):
        raise ParseError("length mismatch", 0, None)
    next_type = data[16]
    offset = _HEADER_LEN
    while True:
        if next_type == 0:
            raise ParseError("no SK payload" if kind == _SK else "no SKF payload", offset, None)
        if offset + _GENERIC_LEN > len(data):
            raise ParseError("truncated payload", offset, next_type)
        length = int.from_bytes(data[offset + 2:offset + 4], "big")
        if length < _GENERIC_LEN:
            raise ParseError("bad payload length", offset, next_type)
        if offset + length > len(data):
            raise ParseError("truncated payload", offset, next_type)
        if next_type == kind:
            if offset + length != len(data):
                raise ParseError("trailing data", offset + length, kind)
            return offset
        next_type = data[offset]
        offset += length
