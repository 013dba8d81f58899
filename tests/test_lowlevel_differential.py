"""Differential tests for the bytes-level calls (``ikecp.lowlevel``): the Rust backend and the
pure-Python twin return equal results and raise the same exception classes (ParseError with
equal fields) on valid, malformed and mutated input, with every byte argument passed as
``bytes``, ``bytearray``, ``memoryview`` or a sliced ``memoryview``."""

from __future__ import annotations

import array

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikecp._backend import load
from ikecp.errors import ParseError

NATIVE = load("native")
PYTHON = load("python")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _sliced(b: bytes) -> memoryview:
    return memoryview(b"\xee\xee" + b + b"\xee")[2:-1]


WRAPPERS = [bytes, bytearray, memoryview, _sliced]
wrap = st.sampled_from(WRAPPERS)


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except ParseError as exc:
        return ("err", type(exc).__name__, exc.what, exc.offset, exc.payload)
    except Exception as exc:
        return ("err", type(exc).__name__)


def same(name, *args, **kwargs):
    a = outcome(getattr(NATIVE, name), *args, **kwargs)
    b = outcome(getattr(PYTHON, name), *args, **kwargs)
    assert a == b, (name, a, b)
    return a


integ_ids = st.sampled_from([2, 12, 13, 14, 2, 12, 13, 14, 0, 1, 5, 15, -1, 2**70])
INTEG_KEY = {2: 20, 12: 32, 13: 48, 14: 64}


@SETTINGS
@given(integ_ids, st.data(), st.binary(max_size=200), wrap, wrap)
def test_integ(integ_id, data, msg, w1, w2):
    klen = INTEG_KEY.get(integ_id, 16)
    key = data.draw(st.one_of(st.binary(min_size=klen, max_size=klen), st.binary(max_size=70)))
    r = same("integ_compute", integ_id, w1(key), w2(msg))
    if r[0] == "ok":
        icv = r[1]
        assert same("integ_verify", integ_id, w2(key), w1(msg), w1(icv)) == ("ok", True)
        bad = data.draw(st.binary(max_size=40))
        assert same("integ_verify", integ_id, key, msg, w2(bad)) == ("ok", bad == icv)


# (encr id, key length incl. salt, IV length, takes AAD)
ENCR = [(20, 20, 8, True), (20, 36, 8, True), (28, 36, 8, True), (12, 16, 16, False),
        (12, 32, 16, False)]


@st.composite
def body_args(draw):
    encr_id, klen, ivlen, aead = draw(st.sampled_from(ENCR))
    if draw(st.integers(0, 9)) == 0:  # sometimes a bad id, key, IV or AAD
        encr_id = draw(st.sampled_from([encr_id, 3, 13, 0, -5, 2**70]))
        klen = draw(st.sampled_from([klen, klen - 1, 24, 0]))
        ivlen = draw(st.sampled_from([ivlen, 7, 16, 0]))
    key = draw(st.binary(min_size=klen, max_size=klen)) if klen >= 0 else b""
    iv = draw(st.binary(min_size=ivlen, max_size=ivlen))
    aad = draw(st.binary(max_size=40)) if aead or draw(st.booleans()) is False else b"x"
    return encr_id, key, iv, aad


@SETTINGS
@given(body_args(), st.binary(max_size=300), wrap, wrap, st.data())
def test_body_round_trip_and_tamper(args, plaintext, w1, w2, data):
    encr_id, key, iv, aad = args
    r = same("encrypt_body", encr_id, w1(key), w2(iv), w1(aad), w2(plaintext))
    if r[0] != "ok":
        return
    body = r[1]
    assert same("decrypt_body", encr_id, w2(key), w1(iv), w2(aad), w1(body)) == \
        ("ok", plaintext)
    bad = bytearray(body)
    kind = data.draw(st.sampled_from(["flip", "cut", "grow"]))
    if kind == "flip" and bad:
        bad[data.draw(st.integers(0, len(bad) - 1))] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        del bad[data.draw(st.integers(0, len(bad))):]
    else:
        bad += data.draw(st.binary(min_size=1, max_size=20))
    same("decrypt_body", encr_id, key, iv, aad, w1(bytes(bad)))


@SETTINGS
@given(body_args(), st.binary(max_size=200))
def test_decrypt_body_on_garbage(args, garbage):
    encr_id, key, iv, aad = args
    same("decrypt_body", encr_id, key, iv, aad, garbage)


# --- whole datagrams -----------------------------------------------------------------------

KEYS = [(20, bytes(range(36)), 0, b""), (12, bytes(range(32)), 12, bytes(range(32))),
        (28, bytes(range(36)), 0, b"")]


@st.composite
def prefixes(draw):
    """A header and zero to two clear payloads; the Next Payload fields are arbitrary, since
    seal must point the last one at SK itself."""
    chain = b""
    for body in draw(st.lists(st.binary(max_size=12), max_size=2)):
        chain += bytes((draw(st.integers(0, 255)), 0)) + (4 + len(body)).to_bytes(2, "big") + body
    if draw(st.integers(0, 7)) == 0:  # sometimes a chain whose lengths do not add up
        chain += draw(st.binary(min_size=1, max_size=6))
    return draw(st.binary(min_size=28, max_size=28)) + chain


@SETTINGS
@given(st.sampled_from(KEYS), prefixes(), st.integers(0, 255), st.binary(max_size=300),
       wrap, wrap, st.data())
def test_seal_and_open_datagram(keys, prefix, next_payload, plaintext, w1, w2, data):
    native, python = NATIVE.SkCipher(*keys), PYTHON.SkCipher(*keys)
    iv = bytes(range(native.iv_size))
    results = {outcome(be.seal_datagram, c, w1(prefix), next_payload, w2(plaintext), iv=w1(iv))
               for be in (NATIVE, PYTHON) for c in (native, python)}
    assert len(results) == 1, results
    (r,) = results
    if r[0] != "ok":
        assert r[:2] == ("err", "ParseError")
        assert r[2] in ("truncated payload", "bad payload length", "trailing data")
        return
    wire = r[1]
    opened = {outcome(be.open_datagram, c, w2(wire)) for be in (NATIVE, PYTHON)
              for c in (native, python)}
    assert opened == {("ok", (next_payload, iv, plaintext))}
    bad = bytearray(wire)
    bad[data.draw(st.integers(0, len(bad) - 1))] ^= data.draw(st.integers(1, 255))
    cut = wire[:data.draw(st.integers(0, len(wire)))]
    for hostile in (bytes(bad), cut):
        assert len({outcome(be.open_datagram, c, w1(hostile)) for be in (NATIVE, PYTHON)
                    for c in (native, python)}) == 1


# --- structure without objects -------------------------------------------------------------

@st.composite
def chains(draw):
    """Payload chains, mostly well formed, with unknown and critical payloads mixed in."""
    types = draw(st.lists(st.sampled_from([33, 35, 39, 40, 41, 44, 47, 46, 53, 99, 200, 0]),
                          max_size=6))
    out = b""
    first = types[0] if types else 0
    for i in range(len(types)):
        nxt = types[i + 1] if i + 1 < len(types) else 0
        body = draw(st.binary(max_size=20))
        flags = draw(st.sampled_from([0, 0, 0x80, 0x01]))
        out += bytes((nxt, flags)) + (4 + len(body)).to_bytes(2, "big") + body
    return first, out


def _mutated(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    kind = draw(st.sampled_from(["none", "flip", "cut", "grow"]))
    if kind == "flip" and buf:
        buf[draw(st.integers(0, len(buf) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "cut":
        del buf[draw(st.integers(0, len(buf))):]
    elif kind == "grow":
        buf += draw(st.binary(min_size=1, max_size=8))
    return bytes(buf)


@SETTINGS
@given(chains(), wrap, st.data())
def test_walk_payloads(chain, w, data):
    first, raw = chain
    raw = _mutated(raw, data.draw)
    same("walk_payloads", first, w(raw))
    lead = data.draw(st.binary(max_size=5))
    same("walk_payloads", first, w(lead + raw), len(lead))
    same("walk_payloads", first, w(raw), data.draw(st.sampled_from([-1, 0, 3, 10**30, 1.5])))
    same("walk_payloads", data.draw(st.sampled_from([-1, 256, "x", None])), w(raw))


@SETTINGS
@given(chains(), st.binary(min_size=28, max_size=28), wrap, st.data())
def test_header_and_walk_message(chain, header, w, data):
    first, raw = chain
    head = bytearray(header)
    head[16] = first
    head[24:28] = (28 + len(raw)).to_bytes(4, "big")
    wire = _mutated(bytes(head) + raw, data.draw)
    same("decode_header", w(wire))
    same("walk_message", w(wire))


@SETTINGS
@given(st.integers(-1, 7), st.integers(-2, 300),
       st.one_of(st.none(), st.sampled_from([64, 128, 192, 256]), st.integers(-2, 2**70)))
def test_transform_supported(ty, tid, key_length):
    same("transform_supported", ty, tid, key_length)


def test_non_buffers_are_type_errors_in_both():
    for bad in (5, "text", None, [1, 2], 1.5):
        assert same("decode_header", bad)[1] == "TypeError"
        assert same("walk_payloads", 40, bad)[1] == "TypeError"
        assert same("integ_compute", 12, bytes(32), bad)[1] == "TypeError"
        assert same("encrypt_body", 20, bytes(36), bytes(8), b"", bad)[1] == "TypeError"
        assert same("prf", 5, bad, b"")[1] == "TypeError"
        assert same("decode_message", bad)[1] == "TypeError"


def test_other_buffer_types():
    key = array.array("B", range(32))
    assert same("integ_compute", 12, key, bytearray(b"abc"))[0] == "ok"
    assert same("prf", 5, key, memoryview(b"abc"))[0] == "ok"
    wide = array.array("H", [0x0102, 0x0304])  # raw octets, whatever the item size
    assert same("walk_payloads", 0, memoryview(b""))[1] == ()
    assert same("integ_compute", 2, bytes(20), wide)[0] == "ok"
