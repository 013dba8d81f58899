"""UDP/4500 datagram classification (RFC 3948 §2)."""

from __future__ import annotations

import pytest
from ikecp.framing import Kind, add_marker, classify


def test_keepalive() -> None:
    assert classify(b"\xff") == (Kind.KEEPALIVE, b"")


def test_ike_with_marker() -> None:
    msg = bytes(range(1, 29))
    wire = add_marker(msg)
    assert wire == b"\x00\x00\x00\x00" + msg
    assert classify(wire) == (Kind.IKE, msg)
    assert classify(b"\x00\x00\x00\x00") == (Kind.IKE, b"")


def test_esp() -> None:
    esp = bytes.fromhex("c001d00d" "00000001") + b"payload"
    assert classify(esp) == (Kind.ESP, esp)
    assert classify(esp[:8]) == (Kind.ESP, esp[:8])


@pytest.mark.parametrize("junk", [b"", b"\x00", b"\x00\x00\x00", b"\xff\xff", b"\x01\x02\x03",
                                  b"\xc0\x01\xd0\x0d\x00\x00\x00", b"\xfe"])
def test_short_garbage_is_invalid(junk: bytes) -> None:
    assert classify(junk) == (Kind.INVALID, junk)
