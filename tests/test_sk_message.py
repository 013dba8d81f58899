"""Whole-message seal_message/open_message: the codec and an SkCipher in one call.

The first test runs the reference twin against a tiny local codec (Nonce payloads only), so a
broken codec cannot mask a broken composition; the others use each backend's own codec.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from ikecp import _backend
from ikecp._reference import SkCipher
from ikecp._reference import sk as reference_sk
from ikecp.errors import IntegrityError
from ikecp.message import SK, Auth, IDi, Message, Nonce, Notify


def _tiny_codec() -> SimpleNamespace:
    def encode_message(msg: Message) -> bytes:
        assert msg.payloads == ()
        return (msg.spi_i + msg.spi_r
                + struct.pack(">BBBBII", 0, 0x20, msg.exchange, msg.flags, msg.message_id, 28))

    def encode_payloads(payloads):
        out = b""
        for i, p in enumerate(payloads):
            nxt = 40 if i + 1 < len(payloads) else 0
            out += struct.pack(">BBH", nxt, 0, 4 + len(p.data)) + p.data
        return (40 if payloads else 0), out

    def decode_payloads(first, data):
        out, off, kind = [], 0, first
        while kind:
            assert kind == 40
            nxt, _, length = struct.unpack_from(">BBH", data, off)
            out.append(Nonce(data[off + 4:off + length]))
            off, kind = off + length, nxt
        return tuple(out)

    def decode_message(data: bytes) -> Message:
        _, _, exchange, flags, mid, _ = struct.unpack_from(">BBBBII", data, 16)
        sk_payload = SK(next_payload=data[28], data=data[32:])
        return Message(data[:8], data[8:16], exchange, flags, mid, (sk_payload,))

    return SimpleNamespace(encode_message=encode_message, encode_payloads=encode_payloads,
                           decode_payloads=decode_payloads, decode_message=decode_message)


def test_seal_open_message_with_local_codec(monkeypatch):
    monkeypatch.setattr(reference_sk, "codec", _tiny_codec())
    cipher = SkCipher(20, bytes(range(36)), 0, b"")
    msg = Message(b"\x01" * 8, b"\x02" * 8, 35, 0x08, 1, (Nonce(b"abc"), Nonce(b"de" * 20)))
    data = reference_sk.seal_message(cipher, msg, iv=bytes(8))
    assert data[16] == 46 and data[28] == 40
    assert int.from_bytes(data[24:28], "big") == len(data)
    assert reference_sk.open_message(cipher, data) == msg
    with pytest.raises(IntegrityError):
        reference_sk.open_message(cipher, data[:-1] + bytes((data[-1] ^ 1,)))


@pytest.mark.parametrize("name", ["python", "native"])
def test_seal_open_message_with_backend_codec(name):
    backend = _backend.load(name)
    msg = Message(b"\x01" * 8, b"\x02" * 8, 35, 0x08, 1,
                  (IDi(2, b"fap.example"), Auth(2, b"a" * 32), Nonce(b"n" * 32)))
    for keys in [(12, bytes(32), 12, bytes(32)), (20, bytes(36), 0, b""), (28, bytes(36), 0, b"")]:
        cipher = backend.SkCipher(*keys)
        data = backend.seal_message(cipher, msg)
        assert data[16] == 46 and data[28] == 35
        assert backend.open_message(cipher, data) == msg
        assert backend.open_message(_backend.load("python").SkCipher(*keys), data) == msg


@pytest.mark.parametrize("name", ["python", "native"])
def test_open_message_keeps_clear_payloads(name):
    backend = _backend.load(name)
    clear = Notify(0, 16430)  # IKEV2_FRAGMENTATION_SUPPORTED, in the clear before SK
    head = backend.encode_message(Message(b"\x01" * 8, b"\x02" * 8, 35, 0x08, 1, (clear,)))
    prefix = bytearray(head)
    prefix[28] = 46  # the clear payload's next-payload now points at SK
    cipher = backend.SkCipher(20, bytes(36), 0, b"")
    first, body = backend.encode_payloads((Nonce(b"n" * 16),))
    data = cipher.seal(bytes(prefix), first, body)
    opened = backend.open_message(cipher, data)
    assert opened.payloads == (clear, Nonce(b"n" * 16))
    assert (opened.spi_i, opened.exchange, opened.message_id) == (b"\x01" * 8, 35, 1)
