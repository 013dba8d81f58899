"""Differential tests for the whole-message calls: native ``open_message``/``seal_message``
against the pure-Python twin, with either backend's ``SkCipher``.

Sealing with a fixed IV must give identical bytes; opening valid, mutated or truncated datagrams
must give equal messages or the same exception class (ParseError with equal fields).
"""

from __future__ import annotations

import dataclasses

import pytest
import samples
from hypothesis import given
from hypothesis import strategies as st
from ikecp._backend import load
from ikecp.errors import IkeError, ParseError
from ikecp.message import Message, Nonce
from test_codec_differential import inner_payload, messages

PY = load("python")
NATIVE = load("native")
# (encr id, key, integ id, key): AES-GCM-256, AES-CBC-256 + HMAC-SHA256-128, ChaCha20-Poly1305.
KEYS = [(20, bytes(range(36)), 0, b""), (12, bytes(range(32)), 12, bytes(range(32))),
        (28, bytes(range(36)), 0, b"")]
ZERO_IV = {20: bytes(8), 12: bytes(16), 28: bytes(8)}


def outcome(fn, *args: object, **kw: object) -> tuple:
    """The result, or the exception's class name (plus a ParseError's fields)."""
    try:
        return ("ok", fn(*args, **kw))
    except ParseError as e:
        return (type(e).__name__, e.what, e.offset, e.payload)
    except (IkeError, TypeError, ValueError) as e:
        return (type(e).__name__,)


def ciphers(keys: tuple) -> list:
    """Every (backend, cipher backend) combination: the calls must accept either cipher."""
    return [(be, cb.SkCipher(*keys)) for be in (NATIVE, PY) for cb in (NATIVE, PY)]


def same_outcome(fn_name: str, keys: tuple, *args: object, **kw: object) -> object:
    results = [outcome(getattr(be, fn_name), c, *args, **kw) for be, c in ciphers(keys)]
    assert all(r == results[0] for r in results), results
    return results[0]


def auth_request(payloads: tuple) -> Message:
    return Message(samples.SPI_I, samples.SPI_R, 35, 0x08, 1, payloads)


@pytest.mark.parametrize("keys", KEYS)
def test_sample_round_trip_identical(keys):
    msg = auth_request(samples.inner_auth_payloads())
    sealed = same_outcome("seal_message", keys, msg, iv=ZERO_IV[keys[0]])
    assert sealed[0] == "ok"
    assert same_outcome("open_message", keys, sealed[1]) == ("ok", msg)


@given(msg=messages, keys=st.sampled_from(KEYS))
def test_seal_open_agree(msg, keys):
    sealed = same_outcome("seal_message", keys, msg, iv=ZERO_IV[keys[0]])
    if sealed[0] == "ok":
        opened = same_outcome("open_message", keys, sealed[1])
        assert opened == ("ok", msg)


@given(payloads=st.lists(inner_payload, max_size=4).map(tuple), keys=st.sampled_from(KEYS),
       data=st.data())
def test_open_mutated_agree(payloads, keys, data):
    sealed = PY.seal_message(PY.SkCipher(*keys), auth_request(payloads), iv=ZERO_IV[keys[0]])
    pos = data.draw(st.integers(0, len(sealed) - 1))
    cut = data.draw(st.booleans())
    flipped = sealed[:pos] + bytes((sealed[pos] ^ 0x5A,)) + sealed[pos + 1:]
    mutated = sealed[:pos] if cut else flipped
    same_outcome("open_message", keys, mutated)


@pytest.mark.parametrize("keys", KEYS)
def test_inner_parse_error_fields_agree(keys):
    """A correctly protected but malformed inner chain: the same ParseError from both."""
    cipher = PY.SkCipher(*keys)
    head = PY.encode_message(auth_request(()))
    prefix = head[:16] + b"\x2e" + head[17:]
    bad_chain = b"\x00\x00\x00\x09abc"  # Nonce claiming 9 octets, 7 present
    sealed = cipher.seal(prefix, 40, bad_chain, iv=ZERO_IV[keys[0]])
    result = same_outcome("open_message", keys, sealed)
    assert result[0] == ParseError.__name__


@pytest.mark.parametrize("bad", [
    {"spi_i": b"short"}, {"exchange": 256}, {"message_id": -1}, {"payloads": (object(),)},
    {"payloads": (Nonce("text"),)},
])
def test_seal_bad_message_agree(bad):
    msg = dataclasses.replace(auth_request((Nonce(b"n" * 16),)), **bad)
    result = same_outcome("seal_message", KEYS[0], msg, iv=ZERO_IV[20])
    assert result[0] in {"TypeError", "ValueError"}


def test_seal_bad_iv_agree():
    msg = auth_request((Nonce(b"n" * 16),))
    result = same_outcome("seal_message", KEYS[0], msg, iv=bytes(3))
    assert result[0] == "CryptoError"


def test_fields_read_as_they_are_now():
    """The native codec reads fields straight from their slots: a value swapped in after
    construction (``object.__setattr__`` gets past ``frozen``) must be the one encoded, and
    decoded objects must hold their values where the class's own descriptors look."""
    nonce = Nonce(b"old")
    object.__setattr__(nonce, "data", b"new")
    assert NATIVE.encode_payloads((nonce,)) == PY.encode_payloads((Nonce(b"new"),))
    decoded = NATIVE.decode_payloads(*PY.encode_payloads((Nonce(b"n" * 16),)))
    assert decoded[0].data == b"n" * 16 and decoded[0].critical is False
