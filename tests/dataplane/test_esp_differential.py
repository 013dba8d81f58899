"""ESP per packet: the Rust transform and replay window against their pure-Python twins
(identical bytes, identical errors on hostile input) and against published ESP packets."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikecp._backend import load
from ikecp.errors import IntegrityError, ParseError

NATIVE = load("native")
PYTHON = load("python")

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# (encr id, encr key length incl. salt, integ id, integ key length)
SUITES = [(20, 20, 0, 0), (20, 36, 0, 0), (28, 36, 0, 0), (12, 16, 2, 20), (12, 16, 12, 32),
          (12, 32, 13, 48), (12, 32, 14, 64)]
suites = st.sampled_from(SUITES)


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except ParseError as exc:
        return ("err", "ParseError", exc.what, exc.offset, exc.payload)
    except Exception as exc:
        return ("err", type(exc).__name__)


def pair(suite, seed=7):
    e, ek, i, ik = suite
    key, ikey = bytes([seed]) * ek, bytes([seed + 1]) * ik
    return NATIVE.EspTransform(e, key, i, ikey), PYTHON.EspTransform(e, key, i, ikey)


@SETTINGS
@given(suites, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(0, 255),
       st.binary(max_size=300), st.booleans())
def test_seal_then_open_agree(suite, spi, seq, nh, payload, esn):
    n, p = pair(suite)
    wire = n.seal(spi, seq, nh, payload, esn=esn)
    assert wire == p.seal(spi, seq, nh, payload, esn=esn)
    hi = seq >> 32 if esn else None
    assert n.open(wire, seq_hi=hi) == p.open(wire, seq_hi=hi) == (nh, payload)


@SETTINGS
@given(suites, st.binary(max_size=200), st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_open_garbage_agrees(suite, junk, hi):
    n, p = pair(suite)
    assert outcome(n.open, junk, seq_hi=hi) == outcome(p.open, junk, seq_hi=hi)


@SETTINGS
@given(suites, st.binary(min_size=1, max_size=100), st.data())
def test_tampered_or_truncated_agree(suite, payload, data):
    n, p = pair(suite)
    wire = bytearray(n.seal(0x1234, 99, 4, payload))
    if data.draw(st.booleans()):
        k = data.draw(st.integers(0, len(wire) - 1))
        wire[k] ^= data.draw(st.integers(1, 255))
    else:
        wire = wire[:data.draw(st.integers(0, len(wire) - 1))]
    a, b = outcome(n.open, bytes(wire)), outcome(p.open, bytes(wire))
    assert a == b
    assert a[0] == "err"


@SETTINGS
@given(st.binary(max_size=40), st.binary(min_size=2, max_size=2))
def test_authentic_packet_with_bad_trailer_is_refused_alike(payload, trailer):
    """AES-GCM packets sealed here by hand with any pad length / padding octets: authentic,
    so only the trailer checks can refuse them, and both backends refuse the same way."""
    key = bytes(20)
    head, iv = bytes.fromhex("0000123400000001"), bytes(8)
    body = payload + trailer
    body += bytes(-len(body) % 4)  # keep alignment; the trailer is then the last two octets
    body = body[:-2] + trailer if len(body) >= 2 else body
    wire = head + iv + AESGCM(key[:16]).encrypt(key[16:] + iv, body, head)
    n, p = NATIVE.EspTransform(20, key, 0, b""), PYTHON.EspTransform(20, key, 0, b"")
    a = outcome(n.open, wire)
    assert a == outcome(p.open, wire)
    pad = body[-2]
    good = pad <= len(body) - 2 and body[len(body) - 2 - pad:-2] == bytes(range(1, pad + 1))
    assert (a[0] == "ok") == good


def test_published_vector_through_both():
    """RFC 7634 Appendix A: the ChaCha20-Poly1305 ESP example packet."""
    key = bytes(range(0x80, 0xA0)) + bytes.fromhex("a0a1a2a3")
    plain = bytes.fromhex(
        "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10"
        "000736270809 0a0b0c0d0e0f10111213 1415161718191a1b1c1d1e1f20212223"
        "2425262728292a2b2c2d2e2f3031323334353637".replace(" ", ""))
    packet = bytes.fromhex(
        "01020304000000051011121314151617"
        "24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6"
        "14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3"
        "cbec163fac469b502773f6fb94e664da9165b82829f641e0"
        "76aaa8266b7fb0f7b11b369907e1ad43")
    iv = bytes.fromhex("1011121314151617")
    for be in (NATIVE, PYTHON):
        t = be.EspTransform(28, key, 0, b"")
        assert t.seal(0x01020304, 5, 4, plain, iv=iv) == packet
        assert t.open(packet) == (4, plain)
        with pytest.raises(IntegrityError):
            t.open(packet[:-1] + bytes([packet[-1] ^ 1]))


@pytest.mark.parametrize("args", [
    (20, b"k" * 16, 0, b""), (20, b"k" * 20, 12, b"a" * 32), (28, b"k" * 32, 0, b""),
    (12, b"k" * 24, 12, b"a" * 32), (12, b"k" * 16, 5, b"a" * 32), (12, b"k" * 16, 12, b"a"),
    (3, b"k" * 24, 2, b"a" * 20),
])
def test_bad_construction_alike(args):
    a = outcome(NATIVE.EspTransform, *args)
    assert a == outcome(PYTHON.EspTransform, *args)
    assert a == ("err", "CryptoError")


@pytest.mark.parametrize("call", [
    {"spi": -1}, {"spi": 2**32}, {"seq": -1}, {"seq": 2**64}, {"nh": 256}, {"iv": b"x"},
])
def test_seal_argument_checks_alike(call):
    args = {"spi": 1, "seq": 1, "nh": 4, "iv": None} | call
    outs = [outcome(t.seal, args["spi"], args["seq"], args["nh"], b"p", iv=args["iv"])
            for t in pair(SUITES[0])]
    assert outs[0] == outs[1] == ("err", "CryptoError")


# --- the replay window -----------------------------------------------------------------------

@SETTINGS
@given(st.sampled_from([0, 64, 100, 1024, 4096]), st.booleans(),
       st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 5000), max_size=200))
def test_replay_window_agrees(size, esn, arrivals):
    n, p = NATIVE.ReplayWindow(size, esn), PYTHON.ReplayWindow(size, esn)
    assert n.size == p.size >= 64
    for lo in arrivals:
        a, b = n.check(lo), p.check(lo)
        assert a == b
        if a is not None:
            assert n.accept(a) == p.accept(a) is True
        assert n.top == p.top


@SETTINGS
@given(st.booleans(), st.lists(st.integers(1, 3000), max_size=300))
def test_replay_window_accepts_each_number_once(esn, arrivals):
    for be in (NATIVE, PYTHON):
        w = be.ReplayWindow(1024, esn)
        accepted = []
        for lo in arrivals:
            seq = w.check(lo)
            if seq is not None and w.accept(seq):
                accepted.append(seq)
        assert len(accepted) == len(set(accepted))
        assert w.size == 1024
