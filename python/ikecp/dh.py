"""Diffie-Hellman for the KE payload: MODP-2048 (14), P-256 (19), P-384 (20), Curve25519 (31).

Both backends use this module; it wraps ``cryptography`` and does the peer-value checks that
RFC 7296 §5, RFC 6989 and RFC 8031 §2.1 ask for, turning every failure into ``CryptoError``.
Encodings: MODP public values and shared secrets are big-endian, padded to the prime length
(RFC 7296 §3.4, §2.14); ECP public values are x | y and the shared secret is x (RFC 5903 §7).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import dh as _dh
from cryptography.hazmat.primitives.asymmetric import ec as _ec
from cryptography.hazmat.primitives.asymmetric import x25519 as _x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import CryptoError

MODP_2048 = 14
ECP_256 = 19
ECP_384 = 20
CURVE25519 = 31

# RFC 3526 §3, 2048-bit MODP group: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 },
# generator 2. (Checked against OpenSSL's built-in "modp_2048" group and the formula.)
_MODP_2048_P = int(
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74"
    "020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437"
    "4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED"
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05"
    "98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB"
    "9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B"
    "E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718"
    "3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AACAA68 FFFFFFFF FFFFFFFF".replace(" ", ""),
    16,
)
_MODP_2048 = _dh.DHParameterNumbers(_MODP_2048_P, 2)
_MODP_2048_PARAMS = _MODP_2048.parameters()
_MODP_LEN = 256

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
        assert isinstance(key, _dh.DHPrivateKey)
        if len(peer_public) != _MODP_LEN:
            raise CryptoError("MODP public value has the wrong length")
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < _MODP_2048_P - 1:  # RFC 6989 §2.1: reject 0, 1, p-1 and >= p
            raise CryptoError("MODP public value out of range")
        peer_dh = _dh.DHPublicNumbers(y, _MODP_2048).public_key()
        return key.exchange(peer_dh).rjust(_MODP_LEN, b"\x00")


def _public_bytes(group: int, key: object) -> bytes:
    if isinstance(key, _x25519.X25519PrivateKey):
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if isinstance(key, _ec.EllipticCurvePrivateKey):
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return point[1:]
    assert isinstance(key, _dh.DHPrivateKey)
    return key.public_key().public_numbers().y.to_bytes(_MODP_LEN, "big")


def generate(group: int) -> DhPrivate:
    """A fresh key pair for ``group``; unsupported groups → CryptoError."""
    if group == CURVE25519:
        return DhPrivate(group, _x25519.X25519PrivateKey.generate())
    if group in _CURVES:
        return DhPrivate(group, _ec.generate_private_key(_CURVES[group][0]()))
    if group == MODP_2048:
        return DhPrivate(group, _MODP_2048_PARAMS.generate_private_key())
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
            x = int.from_bytes(private, "big")
            y = pow(2, x, _MODP_2048_P)
            numbers = _dh.DHPrivateNumbers(x, _dh.DHPublicNumbers(y, _MODP_2048))
            return DhPrivate(group, numbers.private_key())
    except ValueError as exc:
        raise CryptoError(f"invalid private value: {exc}") from None
    raise CryptoError(f"unsupported Diffie-Hellman group {group}")
