"""SKF fragment protection (RFC 7383 §2.5) in both backends: layout, what the ICV covers,
and the Fragment Number / Total Fragments rules."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ikecp._backend import load
from ikecp.errors import CryptoError, IntegrityError, ParseError

SKF = 53


@pytest.fixture(params=["python", "native"])
def be(request):
    return load(request.param)


TRANSFORMS = [(20, 36, 0, 0), (28, 36, 0, 0), (12, 16, 2, 20), (12, 32, 14, 64)]


def make(be, t):
    encr_id, klen, integ_id, ilen = t
    return be.SkCipher(encr_id, bytes(range(klen)), integ_id, bytes(range(1, ilen + 1)))


def header() -> bytes:
    return bytes(range(16)) + bytes((SKF, 0x20, 35, 0x08, 0, 0, 0, 1)) + bytes(4)


@pytest.mark.parametrize("t", TRANSFORMS)
def test_round_trip_and_layout(be, t):
    cipher = make(be, t)
    plaintext = os.urandom(333)
    out = cipher.seal_fragment(header(), 37, 3, 4, plaintext)
    assert int.from_bytes(out[24:28], "big") == len(out)
    np, _, length, number, total = struct.unpack_from(">BBHHH", out, 28)
    assert (np, length, number, total) == (37, len(out) - 28, 3, 4)
    assert make(be, t).open_fragment(out) == (37, 3, 4, plaintext)


def test_aead_associated_data_includes_the_fragment_fields(be):
    """RFC 7383 §2.5: for AEAD the associated data is the IKE header and the whole SKF
    header (8 octets), checked with an independent AES-GCM."""
    key = bytes(range(36))
    cipher = be.SkCipher(20, key, 0, b"")
    iv = bytes(8)
    out = cipher.seal_fragment(header(), 0, 2, 2, b"inner", iv=iv)
    aad, body = out[:36], out[44:]
    plain = AESGCM(key[:32]).decrypt(key[32:] + iv, body, aad)
    assert plain == b"inner\x00"  # no padding, pad length 0


@pytest.mark.parametrize("t", TRANSFORMS)
def test_every_octet_is_under_the_icv(be, t):
    cipher = make(be, t)
    out = cipher.seal_fragment(header(), 0, 1, 2, b"x" * 40)
    for i in range(len(out)):
        bad = bytearray(out)
        bad[i] ^= 0x04
        with pytest.raises((IntegrityError, ParseError)):
            cipher.open_fragment(bytes(bad))


@pytest.mark.parametrize(("number", "total"), [(0, 1), (2, 1), (1, 0), (1, 65536), (-1, 3)])
def test_seal_refuses_bad_numbers(be, number, total):
    with pytest.raises(CryptoError):
        make(be, TRANSFORMS[0]).seal_fragment(header(), 0, number, total, b"x")


def test_open_refuses_bad_numbers_before_the_key(be):
    cipher = make(be, TRANSFORMS[0])
    out = bytearray(cipher.seal_fragment(header(), 0, 1, 1, b"x"))
    out[33] = 5  # fragment 5 of 1
    with pytest.raises(ParseError) as info:
        cipher.open_fragment(bytes(out))
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("bad fragment number", 28, SKF)


def test_sk_and_skf_are_not_interchangeable(be):
    cipher = make(be, TRANSFORMS[0])
    sk_head = header()[:16] + bytes((46,)) + header()[17:]
    with pytest.raises(ParseError):
        cipher.open_fragment(cipher.seal(sk_head, 35, b"x"))
    with pytest.raises(ParseError):
        cipher.open(cipher.seal_fragment(header(), 35, 1, 1, b"x"))
