"""``ikecp.lowlevel`` behaviour in both backends: the contracts docs/accelerating.md states
(error precedence, IV from open, the SK body against the datagram layout, the capability
query against what the constructors accept)."""

from __future__ import annotations

import pytest
import samples
from ikecp import dh, lowlevel
from ikecp._backend import load
from ikecp.errors import (
    CryptoError,
    IntegrityError,
    ParseError,
    UnsupportedCriticalPayloadError,
)
from ikecp.message import Message


@pytest.fixture(params=["python", "native"])
def be(request):
    return load(request.param)


def payload(next_type: int, body: bytes, flags: int = 0) -> bytes:
    return bytes((next_type, flags)) + (4 + len(body)).to_bytes(2, "big") + body


def test_lowlevel_is_the_active_backend():
    from ikecp._backend import backend
    assert lowlevel.walk_payloads is backend.walk_payloads
    assert lowlevel.SkCipher is backend.SkCipher


# --- error precedence ----------------------------------------------------------------------

def test_walk_reports_the_first_fault_in_wire_order(be):
    unknown_critical = payload(40, b"x", flags=0x80)  # type 99 (set by the caller), critical
    broken = bytes((0, 0, 0, 200))                    # a Nonce claiming 200 octets
    with pytest.raises(UnsupportedCriticalPayloadError) as info:
        be.walk_payloads(99, unknown_critical + broken)
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("unsupported critical payload", 0, 99)
    with pytest.raises(ParseError) as info:
        be.walk_payloads(40, broken[:1] + bytes((99, 0, 0)) + unknown_critical)
    assert type(info.value) is ParseError
    assert (info.value.what, info.value.offset) == ("bad payload length", 0)
    # Unknown but not critical: a frame like any other.
    assert be.walk_payloads(99, payload(0, b"x")) == ((99, False, 0, 5),)


def test_record_decoder_reports_framing_before_unknown_critical(be):
    # The other precedence, documented: decode_payloads parses the whole chain first and
    # hands unknown critical payloads back as UnknownPayload for the engine to reject.
    chain = payload(40, b"x", flags=0x80) + bytes((0, 0, 0, 200))
    with pytest.raises(ParseError) as info:
        be.decode_payloads(99, chain)
    assert type(info.value) is ParseError and info.value.what == "truncated payload"
    (p,) = be.decode_payloads(99, payload(0, b"x", flags=0x80))
    assert (p.type, p.critical) == (99, True)


def test_offsets_are_into_the_buffer_given(be):
    lead = b"\xff" * 5
    chain = payload(41, b"nonce") + payload(0, b"\x00\x00\x40\x04")
    frames = be.walk_payloads(40, lead + chain, 5)
    assert frames == ((40, False, 5, 9), (41, False, 14, 8))
    with pytest.raises(ParseError) as info:
        be.walk_payloads(40, lead + chain + b"\x00", 5)
    assert (info.value.what, info.value.offset, info.value.payload) == ("trailing data", 22, 41)


def test_frames_match_the_record_decoder_on_ike_auth(be):
    msg = Message(samples.SPI_I, samples.SPI_R, 35, 0x08, 1, samples.inner_auth_payloads())
    first, chain = be.encode_payloads(msg.payloads)
    frames = be.walk_payloads(first, memoryview(chain))
    assert [f[0] for f in frames] == [p.payload_type for p in msg.payloads]
    assert sum(f[3] for f in frames) == len(chain)
    for (_, _, off, length), p in zip(frames, msg.payloads, strict=True):
        alone = b"\x00" + chain[off + 1:off + length]  # its Next Payload zeroed: a chain of one
        assert be.decode_payloads(p.payload_type, alone) == (p,)


# --- whole datagrams -----------------------------------------------------------------------

def _header(first: int) -> bytes:
    return samples.SPI_I + samples.SPI_R + bytes((first, 0x20, 35, 0x08)) + bytes(8)


@pytest.mark.parametrize("keys", [(20, bytes(range(36)), 0, b""),
                                  (12, bytes(range(16)), 2, bytes(range(20)))])
def test_seal_fixes_the_chain_and_open_returns_the_iv(be, keys):
    cipher = be.SkCipher(*keys)
    # The caller left the header's Next Payload at N (41) with a clear Notify whose Next
    # Payload is 0: seal_datagram must make that Notify point at SK.
    clear = payload(0, bytes((0, 0, 0x40, 0x2e)))
    iv = bytes(range(cipher.iv_size))
    wire = be.seal_datagram(cipher, bytearray(_header(41) + clear), 35, memoryview(b"inner"),
                            iv=memoryview(iv))
    header, frames = be.walk_message(wire)
    assert header[2] == 41 and header[8] == len(wire)
    assert [(f[0], f[2]) for f in frames] == [(41, 28), (46, 36)]
    assert wire[28] == 46
    assert be.open_datagram(cipher, memoryview(wire)) == (35, iv, b"inner")
    with pytest.raises(IntegrityError):
        be.open_datagram(cipher, wire[:-1] + bytes((wire[-1] ^ 1,)))


@pytest.mark.parametrize("keys", [(20, bytes(range(36)), 0, b""),
                                  (28, bytes(range(36)), 0, b""),
                                  (12, bytes(range(32)), 14, bytes(range(64)))])
def test_body_and_integrity_calls_rebuild_the_datagram(be, keys):
    # A host that lays out the datagram itself gets the same octets as SkCipher.seal.
    encr_id, ekey, integ_id, ikey = keys
    cipher = be.SkCipher(*keys)
    iv = bytes(range(cipher.iv_size))
    wire = be.seal_datagram(cipher, _header(46), 35, b"IDi|AUTH|SA", iv=iv)
    sk_head = wire[28:32]
    if integ_id == 0:
        body = be.encrypt_body(encr_id, ekey, iv, wire[:32], b"IDi|AUTH|SA")
        assert wire == wire[:32] + iv + body
        assert be.decrypt_body(encr_id, ekey, iv, wire[:32], body) == b"IDi|AUTH|SA"
    else:
        body = be.encrypt_body(encr_id, ekey, iv, b"", b"IDi|AUTH|SA")
        signed = _header(46)[:24] + wire[24:28] + sk_head + iv + body
        icv = be.integ_compute(integ_id, ikey, signed)
        assert wire == signed + icv
        assert be.integ_verify(integ_id, ikey, signed, icv)
        assert not be.integ_verify(integ_id, ikey, signed, icv[:-1] + bytes((icv[-1] ^ 1,)))
        with pytest.raises(CryptoError):
            be.encrypt_body(encr_id, ekey, iv, b"aad", b"")


def test_decode_header_does_not_need_the_rest(be):
    head = _header(33)[:24] + (5000).to_bytes(4, "big")
    assert be.decode_header(head) == (samples.SPI_I, samples.SPI_R, 33, 2, 0, 35, 0x08, 0, 5000)
    with pytest.raises(ParseError) as info:
        be.decode_header(head[:27])
    assert (info.value.what, info.value.offset, info.value.payload) == \
        ("truncated header", 0, None)
    with pytest.raises(ParseError) as info:
        be.walk_message(head)
    assert info.value.what == "length mismatch"


# --- capability query ----------------------------------------------------------------------

def _builds(fn, *args) -> bool:
    try:
        fn(*args)
    except CryptoError:
        return False
    return True


def test_encr_answers_match_skcipher(be):
    for encr_id in range(0, 40):
        for bits in (None, 64, 128, 192, 256):
            octets = (bits or 256) // 8
            if encr_id == 12:
                built = _builds(be.SkCipher, 12, bytes(octets), 12, bytes(32))
            else:
                built = _builds(be.SkCipher, encr_id, bytes(octets + 4), 0, b"")
            want = built and ((bits is None) == (encr_id == 28))
            assert be.transform_supported(1, encr_id, bits) == want, (encr_id, bits)


def test_prf_integ_and_dh_answers_match_the_calls(be):
    for tid in range(0, 20):
        assert be.transform_supported(2, tid) == _builds(be.prf, tid, b"k", b"d")
        integ_ok = any(_builds(be.integ_compute, tid, bytes(n), b"") for n in (20, 32, 48, 64))
        assert be.transform_supported(3, tid) == (integ_ok or tid == 0)
        assert not be.transform_supported(2, tid, 128)
    for group in (1, 2, 5, 14, 15, 19, 20, 21, 31, 32):
        assert be.transform_supported(4, group) == _builds(dh.generate, group)
    assert be.transform_supported(5, 0) and be.transform_supported(5, 1)
    assert not be.transform_supported(5, 2)
    assert not be.transform_supported(9, 1)
    with pytest.raises(TypeError):
        be.transform_supported(1, "12", 128)


def test_the_example_in_docs_runs():
    import pathlib
    import re

    doc = pathlib.Path(__file__).parent.parent / "docs" / "accelerating.md"
    (code,) = re.findall(r"## Example.*?```python\n(.*?)```", doc.read_text(), re.S)
    exec(compile(code, str(doc), "exec"), {})
