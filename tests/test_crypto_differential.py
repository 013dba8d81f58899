"""Differential tests: the Rust backend and the pure-Python twin give identical results, and
identical error classes (and ParseError fields) on hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikecp._backend import load
from ikecp.errors import ParseError

NATIVE = load("native")
PYTHON = load("python")

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Mostly supported prf ids, sometimes not.
prf_ids = st.sampled_from([2, 5, 6, 7, 2, 5, 6, 7, 0, 1, 4, 8, -1, 256])
small = st.binary(max_size=80)


def outcome(fn, *args, **kwargs):
    """What a call did, comparable across backends."""
    try:
        return ("ok", fn(*args, **kwargs))
    except ParseError as exc:
        return ("err", "ParseError", exc.what, exc.offset, exc.payload)
    except Exception as exc:  # the class is what gets compared
        return ("err", type(exc).__name__)


def same(name, *args, **kwargs):
    a = outcome(getattr(NATIVE, name), *args, **kwargs)
    b = outcome(getattr(PYTHON, name), *args, **kwargs)
    assert a == b
    return a


@SETTINGS
@given(prf_ids, small, small)
def test_prf(prf_id, key, data):
    same("prf", prf_id, key, data)


@SETTINGS
@given(prf_ids, small, small, st.integers(-3, 1200))
def test_prf_plus(prf_id, key, seed, length):
    same("prf_plus", prf_id, key, seed, length)


@SETTINGS
@given(prf_ids, small, small, small, small)
def test_skeyseeds(prf_id, a, b, c, d):
    same("skeyseed", prf_id, a, b, c)
    same("rekey_skeyseed", prf_id, a, b, c, d)


@SETTINGS
@given(prf_ids, small, small, small, st.binary(min_size=7, max_size=9),
       st.binary(min_size=7, max_size=9), st.integers(-1, 68), st.integers(-1, 68))
def test_ike_keys(prf_id, seed, ni, nr, spi_i, spi_r, encr, integ):
    same("ike_keys", prf_id, seed, ni, nr, spi_i, spi_r, encr, integ)


@SETTINGS
@given(prf_ids, small, small, small, st.integers(-1, 600), small)
def test_child_keymat(prf_id, sk_d, ni, nr, length, gir):
    same("child_keymat", prf_id, sk_d, ni, nr, length)
    same("child_keymat", prf_id, sk_d, ni, nr, length, shared_secret=gir)


@SETTINGS
@given(prf_ids, small, small, small, st.integers(-2, 258), small, small)
def test_auth(prf_id, message, nonce, sk_p, id_type, id_data, psk):
    result = same("signed_octets", prf_id, message, nonce, sk_p, id_type, id_data)
    if result[0] == "ok":
        same("psk_auth", prf_id, psk, result[1])


@SETTINGS
@given(st.binary(min_size=7, max_size=9), st.binary(min_size=8, max_size=8),
       st.binary(max_size=18), st.integers(-2, 70000))
def test_nat_detection(spi_i, spi_r, ip, port):
    same("nat_detection_hash", spi_i, spi_r, ip, port)


# (encr_id, key length incl. salt, integ_id, integ key length)
TRANSFORMS = [(20, 20, 0, 0), (20, 36, 0, 0), (28, 36, 0, 0), (12, 16, 2, 20),
              (12, 16, 12, 32), (12, 32, 13, 48), (12, 32, 14, 64)]


@st.composite
def keyed(draw):
    encr_id, klen, integ_id, ilen = draw(st.sampled_from(TRANSFORMS))
    ekey = draw(st.binary(min_size=klen, max_size=klen))
    ikey = draw(st.binary(min_size=ilen, max_size=ilen))
    return (encr_id, ekey, integ_id, ikey)


@st.composite
def prefixes(draw):
    """An IKE header with a chain of zero to two clear payloads before SK (neither SK nor SKF,
    which would end the chain early)."""
    clear = draw(st.lists(st.binary(max_size=12), max_size=2))
    types = draw(st.lists(st.integers(1, 255).filter(lambda t: t not in (46, 53)),
                          min_size=len(clear), max_size=len(clear)))
    chain = b""
    for i, body in enumerate(clear):
        nxt = types[i + 1] if i + 1 < len(clear) else 46
        chain += bytes((nxt, 0)) + (4 + len(body)).to_bytes(2, "big") + body
    first = types[0] if clear else 46
    head = draw(st.binary(min_size=16, max_size=16)) + bytes((first,)) \
        + draw(st.binary(min_size=11, max_size=11))
    return head + chain


@SETTINGS
@given(keyed(), prefixes(), st.integers(0, 255), st.binary(max_size=600), st.data())
def test_seal_identical_and_open_round_trip(keys, prefix, next_payload, plaintext, data):
    native, python = NATIVE.SkCipher(*keys), PYTHON.SkCipher(*keys)
    assert (native.iv_size, native.icv_size) == (python.iv_size, python.icv_size)
    iv = data.draw(st.binary(min_size=native.iv_size, max_size=native.iv_size))
    sealed = native.seal(prefix, next_payload, plaintext, iv=iv)
    assert sealed == python.seal(prefix, next_payload, plaintext, iv=iv)
    assert native.open(sealed) == python.open(sealed) == (next_payload, plaintext)


def _mutate(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "set"]))
    if kind == "flip" and buf:
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del buf[draw(st.integers(0, len(buf))):]
    elif kind == "extend":
        buf += draw(st.binary(min_size=1, max_size=20))
    elif buf:
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] = draw(st.integers(0, 255))
    return bytes(buf)


@SETTINGS
@given(keyed(), prefixes(), st.binary(max_size=100), st.data())
def test_open_mutated_agrees(keys, prefix, plaintext, data):
    native, python = NATIVE.SkCipher(*keys), PYTHON.SkCipher(*keys)
    sealed = native.seal(prefix, 35, plaintext, iv=bytes(native.iv_size))
    for _ in range(3):
        mutated = _mutate(sealed, data.draw)
        a, b = outcome(native.open, mutated), outcome(python.open, mutated)
        assert a == b


@pytest.mark.parametrize("method", ["open", "open_fragment"])
@SETTINGS
@given(keyed(), st.binary(max_size=200))
def test_open_random_bytes_agrees(method, keys, junk):
    a = outcome(getattr(NATIVE.SkCipher(*keys), method), junk)
    b = outcome(getattr(PYTHON.SkCipher(*keys), method), junk)
    assert a == b
    assert a[0] == "err"


@SETTINGS
@given(st.integers(-1, 40), st.binary(max_size=40), st.integers(-1, 16),
       st.binary(max_size=70))
def test_construction_errors_agree(encr_id, ekey, integ_id, ikey):
    a = outcome(NATIVE.SkCipher, encr_id, ekey, integ_id, ikey)
    b = outcome(PYTHON.SkCipher, encr_id, ekey, integ_id, ikey)
    assert a[0] == b[0]
    if a[0] == "err":
        assert a == b


@pytest.mark.parametrize("iv_len", [0, 7, 9, 15, 17])
def test_seal_bad_iv_agrees(iv_len):
    for keys in [(20, bytes(20), 0, b""), (12, bytes(16), 12, bytes(32))]:
        a = outcome(NATIVE.SkCipher(*keys).seal, bytes(28), 35, b"", iv=bytes(iv_len))
        b = outcome(PYTHON.SkCipher(*keys).seal, bytes(28), 35, b"", iv=bytes(iv_len))
        assert a == b


def _skf_prefix(prefix: bytes) -> bytes:
    """The same header and clear chain, ending in SKF (53) instead of SK."""
    head = bytearray(prefix)
    if head[16] == 46:
        head[16] = 53
    else:  # the last clear payload's Next Payload names the encrypted one
        off = 28
        while off + int.from_bytes(head[off + 2:off + 4], "big") < len(head):
            off += int.from_bytes(head[off + 2:off + 4], "big")
        head[off] = 53
    return bytes(head)


@SETTINGS
@given(keyed(), prefixes(), st.integers(0, 255), st.integers(1, 65535), st.data(),
       st.binary(max_size=300))
def test_seal_fragment_identical_and_open_round_trip(keys, prefix, next_payload, total, data,
                                                      plaintext):
    native, python = NATIVE.SkCipher(*keys), PYTHON.SkCipher(*keys)
    prefix = _skf_prefix(prefix)
    number = data.draw(st.integers(1, total))
    iv = data.draw(st.binary(min_size=native.iv_size, max_size=native.iv_size))
    sealed = native.seal_fragment(prefix, next_payload, number, total, plaintext, iv=iv)
    assert sealed == python.seal_fragment(prefix, next_payload, number, total, plaintext, iv=iv)
    assert native.open_fragment(sealed) == python.open_fragment(sealed) \
        == (next_payload, number, total, plaintext)
    for _ in range(3):
        mutated = _mutate(sealed, data.draw)
        assert outcome(native.open_fragment, mutated) == outcome(python.open_fragment, mutated)


@SETTINGS
@given(keyed(), st.integers(-2, 70000), st.integers(-2, 70000))
def test_seal_fragment_number_errors_agree(keys, number, total):
    a = outcome(NATIVE.SkCipher(*keys).seal_fragment, bytes(28), 0, number, total, b"x",
                iv=None)
    b = outcome(PYTHON.SkCipher(*keys).seal_fragment, bytes(28), 0, number, total, b"x",
                iv=None)
    assert a[0] == b[0]
    if a[0] == "err":
        assert a == b
