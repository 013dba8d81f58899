"""SkCipher behaviour in both backends: round trips for every transform and key size,
tampering, wrong keys, structural errors and the fresh-IV rules."""

from __future__ import annotations

import itertools
import os

import pytest
from ikecp._backend import load
from ikecp.errors import CryptoError, IntegrityError, ParseError


@pytest.fixture(params=["python", "native"])
def be(request):
    return load(request.param)


# (encr_id, encr key length incl. salt, integ_id, integ key length, iv size, icv size)
TRANSFORMS = [
    (20, 20, 0, 0, 8, 16),
    (20, 36, 0, 0, 8, 16),
    (28, 36, 0, 0, 8, 16),
    (12, 16, 2, 20, 16, 12),
    (12, 16, 12, 32, 16, 16),
    (12, 32, 13, 48, 16, 24),
    (12, 32, 14, 64, 16, 32),
    (12, 32, 12, 32, 16, 16),
]
IDS = [f"encr{t[0]}-{t[1]}-integ{t[2]}" for t in TRANSFORMS]


def make(be, t, seed=b"k"):
    encr_id, klen, integ_id, ilen = t[:4]
    key = (seed * 64)[:klen]
    return be.SkCipher(encr_id, key, integ_id, (seed[::-1] * 64)[:ilen])


def header(extra: bytes = b"", first: int = 46) -> bytes:
    return bytes(range(8)) + bytes(range(8, 16)) + bytes((first, 0x20, 35, 0x08, 0, 0, 0, 1)) \
        + bytes(4) + extra


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 300, 20000])  # 20000: GIL released
def test_round_trip(be, t, size):
    cipher = make(be, t)
    assert (cipher.iv_size, cipher.icv_size) == t[4:]
    plaintext = os.urandom(size)
    out = cipher.seal(header(), 35, plaintext)
    assert int.from_bytes(out[24:28], "big") == len(out)
    assert int.from_bytes(out[30:32], "big") == len(out) - 28
    if t[0] == 12:
        assert (len(out) - 28 - 4 - 16 - t[5]) % 16 == 0
    else:
        assert len(out) == 28 + 4 + 8 + size + 1 + 16
    assert make(be, t).open(out) == (35, plaintext)


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
def test_unencrypted_payload_before_sk(be, t):
    # A 12-octet Notify-like payload in the clear between header and SK.
    clear = bytes((46, 0, 0, 12)) + b"\x00" * 8
    cipher = make(be, t)
    out = cipher.seal(header(clear, first=41), 33, b"inner")
    assert out[28:40] == clear
    assert cipher.open(out) == (33, b"inner")


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
def test_every_byte_tamper_detected(be, t):
    cipher = make(be, t)
    out = cipher.seal(header(), 35, b"x" * 40)
    for i in range(len(out)):
        bad = bytearray(out)
        bad[i] ^= 0x01
        with pytest.raises((IntegrityError, ParseError)) as info:
            cipher.open(bytes(bad))
        # Only fields the parser reads (length fields, next-payload in the header) may give a
        # ParseError; everything else, including the SK header's first-inner-type, is keyed.
        if isinstance(info.value, ParseError):
            assert i in (16, 24, 25, 26, 27, 30, 31), i


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
def test_wrong_key(be, t):
    out = make(be, t).seal(header(), 35, b"secret")
    with pytest.raises(IntegrityError):
        make(be, t, seed=b"z").open(out)


def test_deterministic_with_iv(be):
    for t in TRANSFORMS:
        iv = bytes(range(t[4]))
        assert make(be, t).seal(header(), 35, b"abc", iv=iv) == \
            make(be, t).seal(header(), 35, b"abc", iv=iv)


def test_fresh_ivs_differ_and_count_up(be):
    cipher = make(be, TRANSFORMS[1])
    ivs = [cipher.seal(header(), 35, b"")[32:40] for _ in range(5)]
    counters = [int.from_bytes(iv, "big") for iv in ivs]
    assert all((b - a) % (1 << 64) == 1 for a, b in itertools.pairwise(counters))
    cbc = make(be, TRANSFORMS[3])
    assert cbc.seal(header(), 35, b"")[32:48] != cbc.seal(header(), 35, b"")[32:48]


@pytest.mark.parametrize(("args"), [
    (20, bytes(16), 0, b""),          # GCM without salt
    (20, bytes(28), 0, b""),          # AES-192 not offered
    (20, bytes(36), 12, bytes(32)),   # AEAD with an integrity transform
    (28, bytes(20), 0, b""),
    (12, bytes(24), 12, bytes(32)),
    (12, bytes(16), 12, bytes(20)),   # integ key too short
    (12, bytes(16), 0, b""),          # CBC without integrity
    (12, bytes(16), 1, bytes(16)),    # HMAC-MD5-96 not offered
    (3, bytes(24), 2, bytes(20)),
])
def test_bad_construction(be, args):
    with pytest.raises(CryptoError):
        be.SkCipher(*args)


def test_seal_argument_checks(be):
    cipher = make(be, TRANSFORMS[0])
    with pytest.raises(CryptoError):
        cipher.seal(b"short", 35, b"")
    with pytest.raises(CryptoError):
        cipher.seal(header(), 35, b"", iv=bytes(7))
    with pytest.raises(CryptoError):
        cipher.seal(header(), 256, b"")
    with pytest.raises(CryptoError):
        cipher.seal(header(), 35, bytes(70000))


def _parse_error(be, data, t=TRANSFORMS[0]):
    with pytest.raises(ParseError) as info:
        make(be, t).open(data)
    return info.value.what, info.value.offset, info.value.payload


def test_structural_errors(be):
    good = make(be, TRANSFORMS[0]).seal(header(), 35, b"hello")
    assert _parse_error(be, good[:20]) == ("truncated header", 0, None)
    assert _parse_error(be, good + b"\x00") == ("length mismatch", 0, None)
    # no SK payload at all
    bare = bytearray(header(first=0))
    bare[24:28] = (28).to_bytes(4, "big")
    assert _parse_error(be, bytes(bare)) == ("no SK payload", 28, None)
    # SK payload length not reaching the end of the datagram
    short = bytearray(good)
    short[30:32] = (int.from_bytes(good[30:32], "big") - 1).to_bytes(2, "big")
    assert _parse_error(be, bytes(short)) == ("trailing data", len(good) - 1, 46)
    # a clear payload whose length overruns the datagram
    clear = bytes((46, 0, 0, 12)) + bytes(8)
    over = bytearray(make(be, TRANSFORMS[0]).seal(header(clear, first=41), 35, b""))
    over[30:32] = (0x0FFF).to_bytes(2, "big")
    assert _parse_error(be, bytes(over)) == ("truncated payload", 28, 41)
    # a clear payload claiming less than its own generic header
    under = bytearray(over)
    under[30:32] = (3).to_bytes(2, "big")
    assert _parse_error(be, bytes(under)) == ("bad payload length", 28, 41)
    # SK too short to hold IV and ICV
    tiny = bytearray(header() + bytes((35, 0, 0, 12)) + bytes(8))
    tiny[24:28] = len(tiny).to_bytes(4, "big")
    assert _parse_error(be, bytes(tiny)) == ("bad SK payload length", 28, 46)
    # CBC ciphertext not a whole number of blocks
    t = TRANSFORMS[4]
    cbc = make(be, t).seal(header(), 35, b"abc")
    cut = bytearray(cbc[:-1])
    cut[24:28] = len(cut).to_bytes(4, "big")
    cut[30:32] = (len(cut) - 28).to_bytes(2, "big")
    assert _parse_error(be, bytes(cut), t) == ("bad SK payload length", 28, 46)


@pytest.mark.parametrize("t", [TRANSFORMS[3], TRANSFORMS[4]], ids=["sha1", "sha256"])
def test_bad_pad_length_is_integrity_error(be, t):
    # Build a CBC message whose (authentic) pad-length octet claims more than the plaintext.
    cipher = make(be, t)
    iv = bytes(16)
    good = cipher.seal(header(), 35, b"", iv=iv)  # one block: 15 zero pad + pad length 15
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = (b"k" * 64)[:t[1]]
    integ_key = (b"k" * 64)[:t[3]]
    block = bytes(15) + b"\x10"  # pad length 16 > 15 available octets
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = good[:48] + enc.update(block) + enc.finalize()
    mac = hmac.HMAC(integ_key, hashes.SHA1() if t[2] == 2 else hashes.SHA256())
    mac.update(body)
    forged = body + mac.finalize()[:t[5]]
    assert len(forged) == len(good)
    with pytest.raises(IntegrityError):
        cipher.open(forged)


@pytest.mark.parametrize("t", [t for t in TRANSFORMS if t[0] == 12], ids=[
    i for t, i in zip(TRANSFORMS, IDS, strict=True) if t[0] == 12])
def test_cbc_layout_against_independent_primitives(be, t):
    # RFC 7296 §3.14 with RFC 3602 (AES-CBC) and RFC 2404 / RFC 4868 (truncated HMAC ICV),
    # rebuilt from hashlib/hmac and cryptography's AES-CBC rather than read back by open().
    import hmac as std_hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = make(be, t)
    iv = bytes(range(16))
    plaintext = b"IDi|AUTH|SA|TSi|TSr" * 3
    out = cipher.seal(header(), 35, plaintext, iv=iv)
    digest = {2: "sha1", 12: "sha256", 13: "sha384", 14: "sha512"}[t[2]]
    integ_key = (b"k" * 64)[:t[3]]
    icv = out[-t[5]:]
    assert icv == std_hmac.digest(integ_key, out[:-t[5]], digest)[:t[5]]
    dec = Cipher(algorithms.AES((b"k" * 64)[:t[1]]), modes.CBC(iv)).decryptor()
    padded = dec.update(out[48:-t[5]]) + dec.finalize()
    pad_len = padded[-1]
    assert pad_len < 16 and (len(plaintext) + pad_len + 1) % 16 == 0
    assert padded == plaintext + bytes(pad_len) + bytes((pad_len,))


def test_fresh_ivs_unique_across_threads(be):
    # Four threads sealing through one cipher object must never draw the same AEAD IV.
    from concurrent.futures import ThreadPoolExecutor

    cipher = make(be, TRANSFORMS[1])

    def draw(_):
        return [cipher.seal(header(), 35, b"")[32:40] for _ in range(500)]

    with ThreadPoolExecutor(4) as pool:
        ivs = [iv for chunk in pool.map(draw, range(4)) for iv in chunk]
    assert len(set(ivs)) == len(ivs) == 2000


@pytest.mark.parametrize("t", TRANSFORMS, ids=IDS)
@pytest.mark.parametrize("clear", [b"", bytes((0, 0, 0, 12)) + bytes(8)], ids=["bare", "clear"])
def test_seal_sets_the_next_payload_that_points_at_sk(be, t, clear):
    # Defect (issue 12): seal() kept whatever the prefix said before SK (here 0 / 41 -> 0), so
    # the datagram it returned could not be opened. The header or the last clear payload must
    # name SK (46) whatever the caller wrote there.
    cipher = make(be, t)
    out = cipher.seal(header(clear, first=41 if clear else 0), 35, b"inner")
    assert (out[28] if clear else out[16]) == 46
    assert cipher.open(out) == (35, b"inner")


def test_seal_refuses_a_prefix_whose_chain_does_not_add_up(be):
    cipher = make(be, TRANSFORMS[0])
    with pytest.raises(ParseError) as info:  # a clear payload running past the prefix
        cipher.seal(header(bytes((46, 0, 0, 40)) + bytes(8), first=41), 35, b"")
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("truncated payload", 28, 41)
    with pytest.raises(ParseError) as info:  # a clear payload shorter than its own header
        cipher.seal(header(bytes((46, 0, 0, 2)) + bytes(8), first=41), 35, b"")
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("bad payload length", 28, 41)
    two = bytes((0, 0, 0, 8)) + bytes(4) + bytes((0, 0, 0, 4))
    with pytest.raises(ParseError) as info:  # the chain ends (0) before the second payload
        cipher.seal(header(two, first=41), 35, b"")
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("trailing data", 36, 41)
    with pytest.raises(ParseError) as info:  # the header says no payloads, yet one follows
        cipher.seal(header(bytes((0, 0, 0, 4)), first=0), 35, b"")
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("trailing data", 28, None)
    with pytest.raises(ParseError) as info:  # an SK in the clear part
        cipher.seal(header(bytes((41, 0, 0, 8)) + bytes(4) + bytes((0, 0, 0, 4)), first=46),
                    35, b"")
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("trailing data", 36, 46)
