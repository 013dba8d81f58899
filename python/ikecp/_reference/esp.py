"""Pure-Python twin of the native per-packet ESP pieces: ``EspTransform`` seals and opens one
tunnel-mode ESP packet (RFC 4303 §2) with AES-GCM-16 (RFC 4106), ChaCha20-Poly1305
(RFC 7634) or AES-CBC with HMAC (RFC 3602, RFC 4868); ``ReplayWindow`` is the receiver's
anti-replay window (RFC 4303 §3.4.3 and Appendix A for extended sequence numbers).

Same signatures, results, error classes and ``ParseError`` phrases as ``ikecp._native``.
"""

from __future__ import annotations

import hmac as _std_hmac
import operator
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import CryptoError, IntegrityError, ParseError
from .crypto import keyed

_HEADER_LEN = 8
_BLOCK = 16


def _uint(value: object, bits: int, what: str) -> int:
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise CryptoError(what) from None
    if not 0 <= n < 1 << bits:
        raise CryptoError(what)
    return n


class EspTransform:
    """One direction of an ESP SA's keyed transform; AEAD keys end with the 4-octet salt."""

    __slots__ = ("_aead", "_align", "_cbc_key", "_integ", "_integ_key", "_salt", "icv_size",
                 "iv_size")

    def __init__(self, encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes) -> None:
        k = keyed(encr_id, encr_key, integ_id, integ_key)
        self._aead, self._salt, self._cbc_key, self._integ, self._integ_key = k.as_tuple()
        self.iv_size, self.icv_size = k.iv_size, k.icv_size
        self._align = 4 if self._aead is not None else _BLOCK

    def _mac(self, *parts: bytes) -> bytes:
        assert self._integ is not None
        algorithm, _, icv_len = self._integ
        mac = _hmac.HMAC(self._integ_key, algorithm())
        for p in parts:
            mac.update(p)
        return mac.finalize()[:icv_len]

    def _default_iv(self, spi: int, seq: int) -> bytes:
        """AEAD: the sequence number; CBC: E_K(SPI | 0 | seq) (NIST SP 800-38A App. C)."""
        if self._aead is not None:
            return seq.to_bytes(8, "big")
        enc = Cipher(algorithms.AES(self._cbc_key), modes.ECB()).encryptor()
        return enc.update(struct.pack(">I4xQ", spi, seq)) + enc.finalize()

    def seal(self, spi: int, seq: int, next_header: int, payload: bytes, *,
             esn: bool = False, iv: bytes | None = None) -> bytes:
        """SPI | low half of ``seq`` | IV | ciphertext | ICV (high half in the ICV with ESN)."""
        spi = _uint(spi, 32, "SPI must fit 32 bits")
        seq = _uint(seq, 64, "sequence number must fit 64 bits")
        next_header = _uint(next_header, 8, "next header must fit one octet")
        payload = bytes(payload)
        if iv is None:
            iv = self._default_iv(spi, seq)
        elif len(iv) != self.iv_size:
            raise CryptoError("wrong IV length")
        iv = bytes(iv)
        pad = (self._align - (len(payload) + 2) % self._align) % self._align
        body = payload + bytes(range(1, pad + 1)) + bytes((pad, next_header))
        head = struct.pack(">II", spi, seq & 0xFFFF_FFFF)
        seq_hi = (seq >> 32).to_bytes(4, "big")
        if self._aead is not None:
            aad = head[:4] + seq_hi + head[4:] if esn else head
            return head + iv + self._aead.encrypt(self._salt + iv, body, aad)
        enc = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv)).encryptor()
        signed = head + iv + enc.update(body) + enc.finalize()
        return signed + (self._mac(signed, seq_hi) if esn else self._mac(signed))

    def open(self, packet: bytes, *, seq_hi: int | None = None) -> tuple[int, bytes]:
        """(next header, payload): IntegrityError on a bad ICV, ParseError when malformed."""
        packet = bytes(packet)
        hi = None if seq_hi is None else _uint(seq_hi, 32, "seq_hi must fit 32 bits")
        body_start = _HEADER_LEN + self.iv_size
        icv_start = len(packet) - self.icv_size
        if icv_start < body_start + 2:
            raise ParseError("truncated ESP packet", len(packet))
        if (icv_start - body_start) % self._align:
            raise ParseError("ESP payload not aligned to the cipher block", body_start)
        iv, body, icv = packet[_HEADER_LEN:body_start], packet[body_start:icv_start], \
            packet[icv_start:]
        hi_bytes = b"" if hi is None else hi.to_bytes(4, "big")
        if self._aead is not None:
            aad = packet[:4] + hi_bytes + packet[4:8]
            try:
                plain = self._aead.decrypt(self._salt + iv, body + icv, aad)
            except InvalidTag:
                raise IntegrityError() from None
        else:
            if not _std_hmac.compare_digest(self._mac(packet[:icv_start], hi_bytes), icv):
                raise IntegrityError()
            dec = Cipher(algorithms.AES(self._cbc_key), modes.CBC(iv)).decryptor()
            plain = dec.update(body) + dec.finalize()
        pad, next_header = plain[-2], plain[-1]
        end = len(plain) - 2 - pad
        if end < 0:
            raise ParseError("ESP pad length exceeds the payload", icv_start - 2)
        if plain[end:-2] != bytes(range(1, pad + 1)):
            raise ParseError("ESP padding is not 1, 2, 3, ...", body_start + end)
        return next_header, plain[:end]


class ReplayWindow:
    """The receiver's window: ``size`` packets left of the highest one received (rounded up
    to a multiple of 64, at most 2^20)."""

    __slots__ = ("_esn", "_seen", "size", "top")

    def __init__(self, size: int = 1024, esn: bool = False) -> None:
        size = operator.index(size)
        if size < 0:
            raise OverflowError("can't convert negative int to unsigned")
        self.size = max(1, -(-min(size, 1 << 20) // 64)) * 64
        self.top = 0
        self._esn = bool(esn)
        self._seen = 0  # bit i set: top - i received

    def _infer(self, seq_lo: int) -> int | None:
        if not self._esn:
            return seq_lo
        tl, th, w = self.top & 0xFFFF_FFFF, self.top >> 32, self.size
        bottom = (tl - w + 1) & 0xFFFF_FFFF
        if tl >= w - 1:
            hi = th if seq_lo >= bottom else th + 1
        else:
            hi = th - 1 if seq_lo >= bottom else th
        if not 0 <= hi <= 0xFFFF_FFFF:
            return None
        return hi << 32 | seq_lo

    def _fresh(self, seq: int) -> bool:
        if seq == 0:
            return False
        if seq > self.top:
            return True
        return self.top - seq < self.size and not self._seen >> (self.top - seq) & 1

    def check(self, seq_lo: int) -> int | None:
        """The full sequence number for ``seq_lo``, or None for a replay or a too-old one."""
        if not 0 <= operator.index(seq_lo) <= 0xFFFF_FFFF:
            raise OverflowError("out of range integral type conversion attempted")
        seq = self._infer(seq_lo)
        return seq if seq is not None and self._fresh(seq) else None

    def accept(self, seq: int) -> bool:
        """Mark ``seq`` received (after its ICV passed); False if it was not fresh."""
        if not 0 <= operator.index(seq) < 1 << 64:
            raise OverflowError("out of range integral type conversion attempted")
        if not self._fresh(seq):
            return False
        if seq > self.top:
            self._seen = (self._seen << (seq - self.top)) & ((1 << self.size) - 1) \
                if seq - self.top < self.size else 0
            self.top = seq
        self._seen |= 1 << (self.top - seq)
        return True
