"""Pure-Python twin of the native MODP Diffie-Hellman (RFC 3526 group 14, generator 2).

Python's ``pow`` on big integers: correct and simple, several times slower than the native
Montgomery code, and not constant time (CPython's ``pow`` skips work for zero bits). It is
the oracle for the differential tests; the native backend is what runs by default.
"""

from __future__ import annotations

from ..errors import CryptoError

MODP_2048 = 14
MODP_2048_LEN = 256

# RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, generator 2.
MODP_2048_P = int(
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


def _exponent(group: int, private: bytes) -> int:
    if group != MODP_2048:
        raise CryptoError("unsupported MODP group")
    if not 1 <= len(private) <= MODP_2048_LEN:
        raise CryptoError("MODP private value must be 1-256 octets")
    x = int.from_bytes(private, "big")
    if x == 0:
        raise CryptoError("MODP private value must not be zero")
    return x


def jacobi(a: int, n: int) -> int:
    """The Jacobi symbol (a/n) for odd n > 0."""
    a %= n
    result = 1
    while a:
        while a % 2 == 0:
            a //= 2
            if n % 8 in (3, 5):
                result = -result
        a, n = n, a
        if a % 4 == 3 and n % 4 == 3:
            result = -result
        a %= n
    return result if n == 1 else 0


def modp_public(group: int, private: bytes) -> bytes:
    """Our public value g^x mod p, big-endian, padded to the prime's length (RFC 7296 §3.4)."""
    x = _exponent(group, bytes(private))
    return pow(2, x, MODP_2048_P).to_bytes(MODP_2048_LEN, "big")


def modp_shared(group: int, private: bytes, peer_public: bytes) -> bytes:
    """y^x mod p for the peer's value y, which must satisfy 1 < y < p - 1 (RFC 6989 §2.1) and
    lie in the prime-order subgroup: (y/p) = 1, as p is a safe prime."""
    x = _exponent(group, bytes(private))
    if len(peer_public) != MODP_2048_LEN:
        raise CryptoError("MODP public value has the wrong length")
    y = int.from_bytes(peer_public, "big")
    if not 1 < y < MODP_2048_P - 1:
        raise CryptoError("MODP public value out of range")
    if jacobi(y, MODP_2048_P) != 1:
        raise CryptoError("MODP public value is not in the prime-order subgroup")
    return pow(y, x, MODP_2048_P).to_bytes(MODP_2048_LEN, "big")
