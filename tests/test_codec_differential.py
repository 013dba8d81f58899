"""Differential tests: the native and pure-Python codecs must agree on every input.

Valid messages must encode to the same bytes and decode back; arbitrary and mutated bytes must
give equal messages or equal ``ParseError`` (what, offset, payload). Any other exception fails.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikecp._backend import load
from ikecp.errors import ParseError
from ikecp.message import (
    CP,
    EAP,
    KE,
    SA,
    SK,
    SKF,
    Auth,
    Cert,
    CertReq,
    ConfigAttribute,
    Delete,
    IDi,
    IDr,
    Message,
    Nonce,
    Notify,
    Proposal,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
)

PY = load("python")
NATIVE = load("native")
KNOWN = {*range(33, 49), 53}

settings.register_profile("codec", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("codec")

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
data = st.binary(max_size=40)
crit = st.booleans()

attr = st.one_of(
    st.builds(TransformAttribute, st.integers(0, 0x7FFF), u16),
    st.builds(TransformAttribute, st.integers(0, 0x7FFF), st.binary(max_size=8)),
)
transform = st.builds(Transform, u8, u16, st.lists(attr, max_size=3).map(tuple))
proposal = st.builds(Proposal, u8, u8, st.binary(max_size=8),
                     st.lists(transform, max_size=4).map(tuple))
selector = st.one_of(
    st.builds(TrafficSelector, st.just(7), u8, u16, u16, st.binary(min_size=4, max_size=4),
              st.binary(min_size=4, max_size=4)),
    st.builds(TrafficSelector, st.just(8), u8, u16, u16, st.binary(min_size=16, max_size=16),
              st.binary(min_size=16, max_size=16)),
)
selectors = st.lists(selector, max_size=4).map(tuple)


@st.composite
def delete(draw: st.DrawFn) -> Delete:
    size = draw(st.sampled_from([0, 4, 8]))
    spis = () if size == 0 else tuple(draw(st.lists(st.binary(min_size=size, max_size=size),
                                                    max_size=4)))
    return Delete(draw(u8), size, spis, draw(crit))


@st.composite
def skf(draw: st.DrawFn) -> SKF:
    total = draw(st.integers(1, 0xFFFF))
    return SKF(draw(u8), draw(st.integers(1, total)), total, draw(data), draw(crit))


inner_payload = st.one_of(
    st.builds(SA, st.lists(proposal, min_size=1, max_size=3).map(tuple), crit),
    st.builds(KE, u16, data, crit),
    *(st.builds(cls, u8, data, crit) for cls in (IDi, IDr, Cert, CertReq, Auth)),
    *(st.builds(cls, data, crit) for cls in (Nonce, VendorId, EAP)),
    st.builds(Notify, u8, u16, st.binary(max_size=16), data, crit),
    delete(),
    st.builds(TSi, selectors, crit),
    st.builds(TSr, selectors, crit),
    st.builds(CP, u8, st.lists(st.builds(ConfigAttribute, st.integers(0, 0x7FFF),
                                         st.binary(max_size=8)), max_size=4).map(tuple), crit),
    st.builds(UnknownPayload, st.integers(1, 255).filter(lambda t: t not in KNOWN), data, crit),
)
last_payload = st.one_of(st.builds(SK, u8, data, crit), skf())


@st.composite
def chain(draw: st.DrawFn) -> tuple:
    payloads = draw(st.lists(inner_payload, max_size=6))
    if draw(st.booleans()):
        payloads.append(draw(last_payload))
    return tuple(payloads)


messages = st.builds(Message, st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8),
                     u8, u8, u32, chain(), st.integers(0, 15), st.integers(0, 15))


def outcome(fn: Callable[..., object], *args: object) -> tuple:
    """The result, or the ParseError's fields; any other exception propagates and fails."""
    try:
        return ("ok", fn(*args))
    except ParseError as e:
        return ("error", type(e), e.what, e.offset, e.payload)


def assert_same_decode(wire: bytes) -> None:
    assert outcome(PY.decode_message, wire) == outcome(NATIVE.decode_message, wire)


@given(messages)
def test_encoders_agree_and_round_trip(msg: Message) -> None:
    wire = PY.encode_message(msg)
    assert NATIVE.encode_message(msg) == wire
    assert PY.decode_message(wire) == msg
    assert NATIVE.decode_message(wire) == msg


@given(chain())
def test_payload_chains_agree(payloads: tuple) -> None:
    first, wire = PY.encode_payloads(payloads)
    assert NATIVE.encode_payloads(payloads) == (first, wire)
    assert NATIVE.decode_payloads(first, wire) == payloads == PY.decode_payloads(first, wire)


@given(st.binary(max_size=200))
def test_random_bytes(wire: bytes) -> None:
    assert_same_decode(wire)


@given(st.sampled_from(sorted(KNOWN | {0, 1, 99})), st.binary(max_size=120))
def test_random_chains(first: int, body: bytes) -> None:
    assert outcome(PY.decode_payloads, first, body) == outcome(NATIVE.decode_payloads, first, body)
    wire = bytes(16) + bytes([first, 0x20, 34, 8]) + struct.pack(">II", 0, 28 + len(body)) + body
    assert_same_decode(wire)


def _fix_len(wire: bytes) -> bytes:
    return wire[:24] + struct.pack(">I", len(wire)) + wire[28:] if len(wire) >= 28 else wire


@given(messages, st.data())
def test_mutated_messages(msg: Message, draw: st.DataObject) -> None:
    wire = bytearray(PY.encode_message(msg))
    for _ in range(draw.draw(st.integers(1, 4))):
        i = draw.draw(st.integers(0, len(wire) - 1))
        wire[i] ^= draw.draw(st.integers(1, 255))
    assert_same_decode(bytes(wire))
    assert_same_decode(_fix_len(bytes(wire)))


@given(messages, st.data())
def test_truncated_messages(msg: Message, draw: st.DataObject) -> None:
    wire = PY.encode_message(msg)
    cut = wire[:draw.draw(st.integers(0, len(wire)))]
    assert_same_decode(cut)
    assert_same_decode(_fix_len(cut))


@given(messages, messages, st.data())
def test_spliced_messages(a: Message, b: Message, draw: st.DataObject) -> None:
    wa, wb = PY.encode_message(a), PY.encode_message(b)
    i = draw.draw(st.integers(28, len(wa)))
    j = draw.draw(st.integers(28, len(wb)))
    spliced = _fix_len(wa[:i] + wb[j:])
    assert_same_decode(spliced)


BAD_VALUES = (-1, 256, 65536, 1 << 32, "x", 1.5, None, b"xx", True)


def _field_variants(obj: object):
    """Every copy of ``obj`` with one field (at any depth) replaced by a bad value."""
    from dataclasses import fields, is_dataclass, replace

    if not is_dataclass(obj):
        return
    for f in fields(obj):
        value = getattr(obj, f.name)
        for bad in BAD_VALUES:
            yield replace(obj, **{f.name: bad})
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                for variant in _field_variants(item):
                    yield replace(obj, **{f.name: (*value[:i], variant, *value[i + 1:])})


def encode_outcome(fn: Callable[..., object], *args: object) -> tuple:
    try:
        return ("ok", fn(*args))
    except (TypeError, ValueError, AttributeError) as e:
        return ("error", next(c for c in (TypeError, ValueError, AttributeError)
                              if isinstance(e, c)))


def test_bad_fields_raise_the_same_exception_class() -> None:
    import samples

    checked = 0
    for msg in samples.all_samples():
        for variant in _field_variants(msg):
            assert encode_outcome(PY.encode_message, variant) == \
                encode_outcome(NATIVE.encode_message, variant), variant
            checked += 1
    assert checked > 1000
