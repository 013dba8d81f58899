"""Diffie-Hellman for the KE payload: MODP-2048 (14), P-256 (19), P-384 (20), Curve25519 (31).

Both backends use this module; it does the peer-value checks that RFC 7296 §5, RFC 6989 and
RFC 8031 §2.1 ask for, turning every failure into ``CryptoError``. The elliptic curves come
from ``cryptography``; MODP comes from the active backend (``modp_public`` /
``modp_shared``: native constant-time Montgomery code, or Python's ``pow`` in the reference
twin), as ``cryptography`` deprecates finite-field DH.
Encodings: MODP public values and shared secrets are big-endian, padded to the prime length
(RFC 7296 §3.4, §2.14); ECP public values are x | y and the shared secret is x (RFC 5903 §7).
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric import ec as _ec
from cryptography.hazmat.primitives.asymmetric import x25519 as _x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import _backend
from .errors import CryptoError

MODP_2048 = 14
ECP_256 = 19
ECP_384 = 20
CURVE25519 = 31

#: Octets of a MODP private exponent: 224 bits, twice the group's 112-bit security strength
#: as NIST SP 800-56A Rev. 3 §5.6.1.1.4 asks for safe-prime groups (RFC 3526 §8 estimates
#: 220-320 bits), and what OpenSSL picks for this group. The exponent's length, not its
#: value, is all the native code's timing shows.
MODP_EXPONENT_LEN = 28


class _Modp:
    """A MODP private exponent; the arithmetic is the backend's."""

    __slots__ = ("private",)

    def __init__(self, private: bytes) -> None:
        self.private = private


_CURVES: dict[int, tuple[type[_ec.EllipticCurve], int]] = {
    ECP_256: (_ec.SECP256R1, 32),
    ECP_384: (_ec.SECP384R1, 48),
}

GROUPS = (MODP_2048, ECP_256, ECP_384, CURVE25519)


class DhPrivate:
    """One ephemeral key pair: ``public_bytes`` goes into KE, ``exchange`` gives g^ir."""

    __slots__ = ("_key", "group", "public_bytes")

    def __init__(self, group: int, key: object) -> None:
        self.group = group
        self._key = key
        self.public_bytes = _public_bytes(group, key)

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret g^ir for the peer's KE data; invalid peer values → CryptoError."""
        peer_public = bytes(peer_public)
        key = self._key
        if isinstance(key, _x25519.X25519PrivateKey):
            if len(peer_public) != 32:
                raise CryptoError("Curve25519 public value must be 32 octets")
            try:
                secret = key.exchange(_x25519.X25519PublicKey.from_public_bytes(peer_public))
            except ValueError:  # cryptography rejects the all-zero result itself
                raise CryptoError("Curve25519 shared secret is all zero") from None
            if not any(secret):  # RFC 8031 §2.1
                raise CryptoError("Curve25519 shared secret is all zero")
            return secret
        if isinstance(key, _ec.EllipticCurvePrivateKey):
            curve, size = _CURVES[self.group]
            if len(peer_public) != 2 * size:
                raise CryptoError("ECP public value has the wrong length")
            try:
                peer = _ec.EllipticCurvePublicKey.from_encoded_point(
                    curve(), b"\x04" + peer_public
                )
            except ValueError:
                raise CryptoError("ECP public value is not a point on the curve") from None
            return key.exchange(_ec.ECDH(), peer)
        assert isinstance(key, _Modp)
        # RFC 6989 §2.1: 0, 1, p-1, values >= p and values outside the subgroup are refused
        return _backend.backend.modp_shared(self.group, key.private, peer_public)


def _public_bytes(group: int, key: object) -> bytes:
    if isinstance(key, _x25519.X25519PrivateKey):
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if isinstance(key, _ec.EllipticCurvePrivateKey):
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return point[1:]
    assert isinstance(key, _Modp)
    return _backend.backend.modp_public(group, key.private)



def generate(group: int) -> DhPrivate:
    """A fresh key pair for ``group``; unsupported groups → CryptoError."""
    if group == CURVE25519:
        return DhPrivate(group, _x25519.X25519PrivateKey.generate())
    if group in _CURVES:
        return DhPrivate(group, _ec.generate_private_key(_CURVES[group][0]()))
    if group == MODP_2048:
        private = secrets.token_bytes(MODP_EXPONENT_LEN)
        while not any(private):  # x = 0 is no key (probability 2^-256)
            private = secrets.token_bytes(MODP_EXPONENT_LEN)
        return DhPrivate(group, _Modp(private))
    raise CryptoError(f"unsupported Diffie-Hellman group {group}")


def from_private_bytes(group: int, private: bytes) -> DhPrivate:
    """Rebuild a key pair from a known private value (big-endian scalar/exponent, or the raw
    32-octet X25519 key); for known-answer tests and reproducible traces."""
    private = bytes(private)
    try:
        if group == CURVE25519:
            return DhPrivate(group, _x25519.X25519PrivateKey.from_private_bytes(private))
        if group in _CURVES:
            scalar = int.from_bytes(private, "big")
            return DhPrivate(group, _ec.derive_private_key(scalar, _CURVES[group][0]()))
        if group == MODP_2048:
            return DhPrivate(group, _Modp(private))
    except ValueError as exc:
        raise CryptoError(f"invalid private value: {exc}") from None
    raise CryptoError(f"unsupported Diffie-Hellman group {group}")
