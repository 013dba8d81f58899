"""Codec behaviour on hand-built messages, run against both backends."""

from __future__ import annotations

import struct
from dataclasses import replace
from types import ModuleType

import pytest
import samples
from ikecp._backend import load
from ikecp.errors import ParseError
from ikecp.message import (
    CP,
    KE,
    SA,
    SK,
    SKF,
    ConfigAttribute,
    Delete,
    Message,
    Nonce,
    Notify,
    Proposal,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TSi,
    UnknownPayload,
)

# IKE_SA_INIT request of samples.sa_init_request(), assembled by hand field by field from the
# figures of RFC 7296 §3.1 (header), §3.2 (generic payload header), §3.3.1/§3.3.2/§3.3.5
# (proposal, transform, attribute), §3.4 (KE), §3.9 (Nonce), §3.10 (Notify), §3.12 (Vendor ID).
SA_INIT_HEX = "".join([
    # IKE header: SPIi, SPIr, next=SA(33), version 2.0, IKE_SA_INIT(34), flags I, msgid, length 232
    "0102030405060708", "0000000000000000", "21", "20", "22", "08", "00000000", "000000e8",
    # SA: next=KE(34), length 40; proposal: last, len 36, #1, IKE, spi size 0, 3 transforms
    "22000028", "00000024", "01010003",
    "0300000c", "01000014", "800e0100",  # ENCR AES_GCM_16, KEY_LENGTH (AF=1, type 14) = 256
    "03000008", "02000005",              # PRF HMAC_SHA2_256
    "00000008", "0400001f",              # DH 31 (Curve25519), last transform
    # KE: next=Nonce(40), length 40, group 31, reserved, 32 bytes
    "28000028", "001f0000", bytes(range(32)).hex(),
    # Nonce: next=Notify(41), length 36
    "29000024", bytes(range(100, 132)).hex(),
    # N(NAT_DETECTION_SOURCE_IP=16388), N(NAT_DETECTION_DESTINATION_IP=16389), protocol 0, no SPI
    "2900001c", "00004004", "11" * 20,
    "2900001c", "00004005", "22" * 20,
    # N(IKEV2_FRAGMENTATION_SUPPORTED=16430), next=Vendor ID(43)
    "2b000008", "0000402e",
    # Vendor ID, last payload
    "00000018", b"ikecp test vendor id".hex(),
])

# CP(CFG_REPLY) carrying EXTERNAL_SOURCE_IP4_NAT_INFO (type 23, 3GPP TS 29.139 §7.1.1.1):
# IPv4 100.64.0.1, UDP port 1187, per the RFC 7296 §3.15 / §3.15.1 figures.
CP_REPLY_HEX = "00000012" "02000000" "0017" "0006" "64400001" "04a3"


def test_sa_init_exact_bytes(codec: ModuleType) -> None:
    msg = samples.sa_init_request()
    wire = bytes.fromhex(SA_INIT_HEX)
    assert codec.encode_message(msg) == wire
    assert codec.decode_message(wire) == msg


def test_cp_nat_info_exact_bytes(codec: ModuleType) -> None:
    cp = CP(2, (ConfigAttribute(23, bytes([100, 64, 0, 1, 0x04, 0xA3])),))
    assert codec.encode_payloads([cp]) == (47, bytes.fromhex(CP_REPLY_HEX))
    assert codec.decode_payloads(47, bytes.fromhex(CP_REPLY_HEX)) == (cp,)


def test_cp_request_attribute_length_zero(codec: ModuleType) -> None:
    cp = CP(1, (ConfigAttribute(23),))
    first, data = codec.encode_payloads([cp])
    assert data == bytes.fromhex("0000000c" "01000000" "00170000")
    assert codec.decode_payloads(first, data) == (cp,)


def test_cp_reserved_top_bit_is_dropped(codec: ModuleType) -> None:
    data = bytes.fromhex("0000000c" "01000000" "80170000")
    assert codec.decode_payloads(47, data) == (CP(1, (ConfigAttribute(23),)),)


@pytest.mark.parametrize("msg", samples.all_samples(), ids=lambda m: f"x{m.exchange}")
def test_round_trip(codec: ModuleType, msg: Message) -> None:
    wire = codec.encode_message(msg)
    assert codec.decode_message(wire) == msg
    assert codec.encode_message(codec.decode_message(wire)) == wire


def test_payload_chain_round_trip(codec: ModuleType) -> None:
    payloads = samples.inner_auth_payloads()
    first, data = codec.encode_payloads(payloads)
    assert first == 35
    assert codec.decode_payloads(first, data) == payloads
    assert codec.encode_payloads([]) == (0, b"")
    assert codec.decode_payloads(0, b"") == ()


def test_header_fields(codec: ModuleType) -> None:
    msg = replace(samples.ike_auth_request(), flags=0x28, message_id=0xFFFFFFFF,
                  major_version=2, minor_version=1)
    wire = codec.encode_message(msg)
    assert wire[17] == 0x21 and wire[19] == 0x28 and wire[20:24] == b"\xff" * 4
    out = codec.decode_message(wire)
    assert out.is_response and out.from_initiator and out.minor_version == 1


def test_reserved_bits_ignored_and_critical_kept(codec: ModuleType) -> None:
    data = bytes.fromhex("00ff0008" "01020304")
    assert codec.decode_payloads(40, data) == (Nonce(b"\x01\x02\x03\x04", critical=True),)
    assert codec.encode_payloads([Nonce(b"\x01\x02\x03\x04", critical=True)])[1] == \
        bytes.fromhex("00800008" "01020304")


def test_sk_next_payload_is_inner_type(codec: ModuleType) -> None:
    first, data = codec.encode_payloads([Nonce(b"n"), SK(35, b"ivctICV")])
    assert first == 40
    assert data[0] == 46 and data[5] == 35
    assert codec.decode_payloads(first, data) == (Nonce(b"n"), SK(35, b"ivctICV"))


def test_unknown_payload_kept(codec: ModuleType) -> None:
    data = bytes.fromhex("00800007" "616263")
    assert codec.decode_payloads(99, data) == (UnknownPayload(99, b"abc", True),)


def test_traffic_selectors_v4_v6_and_reversed_ports(codec: ModuleType) -> None:
    odd = TrafficSelector(7, 6, 9000, 80, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x00")
    ts = TSi((samples.TS_V4, samples.TS_V6, odd))
    first, data = codec.encode_payloads([ts])
    assert len(data) == 8 + 16 + 40 + 16
    assert codec.decode_payloads(first, data) == (ts,)


def test_delete_spis(codec: ModuleType) -> None:
    d = Delete(3, 4, (b"abcd", b"efgh", b"ijkl"))
    first, data = codec.encode_payloads([d])
    assert data == bytes.fromhex("00000014" "03040003") + b"abcdefghijkl"
    assert codec.decode_payloads(first, data) == (d,)


def test_skf(codec: ModuleType) -> None:
    f = SKF(0, 2, 2, b"xyz")
    first, data = codec.encode_payloads([f])
    assert data == bytes.fromhex("0000000b" "00020002") + b"xyz"
    assert codec.decode_payloads(first, data) == (f,)


def test_tlv_transform_attribute(codec: ModuleType) -> None:
    sa = SA((Proposal(2, 3, b"", (Transform(1, 12, (TransformAttribute(7, b"tlv!"),
                                                       TransformAttribute(14, 128))),)),))
    first, data = codec.encode_payloads([sa])
    assert codec.decode_payloads(first, data) == (sa,)


# --- malformed input ------------------------------------------------------------------------


def _err(codec: ModuleType, fn: str, *args: object) -> tuple[str, int, int | None]:
    with pytest.raises(ParseError) as info:
        getattr(codec, fn)(*args)
    return info.value.what, info.value.offset, info.value.payload


def _fix_len(wire: bytes) -> bytes:
    return wire[:24] + struct.pack(">I", len(wire)) + wire[28:]


def test_every_truncation_is_a_parse_error(codec: ModuleType) -> None:
    for msg in samples.all_samples():
        wire = codec.encode_message(msg)
        for n in range(len(wire)):
            with pytest.raises(ParseError):
                codec.decode_message(wire[:n])
            if n >= 28:  # keep the header length consistent so the payload parser is reached
                with pytest.raises(ParseError):
                    codec.decode_message(_fix_len(wire[:n]))


def test_header_errors(codec: ModuleType) -> None:
    wire = bytes.fromhex(SA_INIT_HEX)
    assert _err(codec, "decode_message", b"") == ("truncated header", 0, None)
    assert _err(codec, "decode_message", wire[:27]) == ("truncated header", 0, None)
    assert _err(codec, "decode_message", wire + b"\x00") == ("length mismatch", 0, None)
    assert _err(codec, "decode_message", _fix_len(wire + b"\x00")) == ("trailing data", 232, 43)


def test_payload_length_errors(codec: ModuleType) -> None:
    assert _err(codec, "decode_payloads", 40, b"\x00\x00\x00") == ("truncated payload", 0, 40)
    assert _err(codec, "decode_payloads", 40, b"\x00\x00\x00\x03") == ("bad payload length", 0, 40)
    assert _err(codec, "decode_payloads", 40, b"\x00\x00\x00\x09abc") == \
        ("truncated payload", 0, 40)
    assert _err(codec, "decode_payloads", 34, b"\x00\x00\x00\x07abc") == \
        ("bad payload length", 0, 34)
    # next payload points at a payload that is not there
    assert _err(codec, "decode_payloads", 40, b"\x28\x00\x00\x04") == ("truncated payload", 4, 40)
    assert _err(codec, "decode_payloads", 0, b"\x00") == ("trailing data", 0, None)
    # SK must end the chain
    assert _err(codec, "decode_payloads", 46, b"\x28\x00\x00\x04\x00\x00\x00\x04") == \
        ("trailing data", 4, 46)


def test_long_payload_chain_terminates(codec: ModuleType) -> None:
    # 16384 empty Nonce payloads, each pointing to the next: consumed 4 bytes at a time.
    data = b"\x28\x00\x00\x04" * 16383 + b"\x00\x00\x00\x04"
    assert len(codec.decode_payloads(40, data)) == 16384
    assert _err(codec, "decode_payloads", 40, data[:-4] + b"\x28\x00\x00\x04") == \
        ("truncated payload", len(data), 40)


def _sa_body(*props: bytes) -> bytes:
    body = b"".join(props)
    return struct.pack(">BBH", 0, 0, 4 + len(body)) + body


def test_sa_errors(codec: ModuleType) -> None:
    t_last = bytes.fromhex("00000008" "0400001f")
    t_more = bytes.fromhex("03000008" "0400001f")
    good = bytes.fromhex("00000010" "01010001") + t_last
    assert codec.decode_payloads(33, _sa_body(good))[0].proposals[0].transforms == \
        (Transform(4, 31),)
    # empty SA, proposal marker 1, proposal claims "more" but none follows
    assert _err(codec, "decode_payloads", 33, _sa_body()) == ("bad proposal", 4, 33)
    assert _err(codec, "decode_payloads", 33, _sa_body(b"\x01" + good[1:])) == \
        ("bad proposal", 4, 33)
    assert _err(codec, "decode_payloads", 33, _sa_body(b"\x02" + good[1:])) == \
        ("bad proposal", 20, 33)
    # a last proposal followed by more bytes
    assert _err(codec, "decode_payloads", 33, _sa_body(good, good)) == ("bad proposal", 20, 33)
    # proposal length past the payload, and smaller than its header
    assert _err(codec, "decode_payloads", 33, _sa_body(good[:3] + b"\x11" + good[4:])) == \
        ("bad proposal", 4, 33)
    assert _err(codec, "decode_payloads", 33, _sa_body(good[:3] + b"\x07" + good[4:])) == \
        ("bad proposal", 4, 33)
    # SPI size beyond the proposal
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000010" "01010901") + t_last)) == ("bad spi size", 4, 33)
    # 255 transforms announced, one present; count 2 with a wrong last marker
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000010" "010100ff") + t_last)) == \
        ("bad transform", 12, 33)
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000018" "01010002") + t_last + t_last)) == \
        ("bad transform", 12, 33)
    # count 1 but two transforms present
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000018" "01010001") + t_more + t_last)) == \
        ("bad transform", 12, 33)
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000018" "01010001") + t_last + t_last)) == \
        ("bad proposal", 4, 33)
    # truncated TLV attribute, and a lone 2-byte attribute fragment
    t_tlv = bytes.fromhex("0000000e" "01000014" "000e0009" "0000")
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000016" "01010001") + t_tlv)) == \
        ("bad attribute", 20, 33)
    t_frag = bytes.fromhex("0000000a" "01000014" "800e")
    assert _err(codec, "decode_payloads", 33,
                _sa_body(bytes.fromhex("00000012" "01010001") + t_frag)) == \
        ("bad attribute", 20, 33)


def test_ts_errors(codec: ModuleType) -> None:
    sel = bytes.fromhex("07000010" "0000ffff" "00000000" "ffffffff")
    ok = b"\x00\x00\x00\x18" + b"\x01\x00\x00\x00" + sel
    assert len(codec.decode_payloads(44, ok)[0].selectors) == 1
    assert _err(codec, "decode_payloads", 44, ok[:4] + b"\xff" + ok[5:]) == \
        ("bad traffic selector", 24, 44)
    assert _err(codec, "decode_payloads", 44, ok[:4] + b"\x00" + ok[5:]) == \
        ("bad traffic selector", 8, 44)
    bad_len = sel[:3] + b"\x28" + sel[4:]
    assert _err(codec, "decode_payloads", 45, ok[:8] + bad_len) == ("bad traffic selector", 8, 45)
    bad_type = b"\x09" + sel[1:]
    assert _err(codec, "decode_payloads", 44, ok[:8] + bad_type) == ("bad traffic selector", 8, 44)


def test_notify_delete_skf_cp_errors(codec: ModuleType) -> None:
    assert _err(codec, "decode_payloads", 41, bytes.fromhex("0000000a" "03044000" "0102")) == \
        ("bad spi size", 0, 41)
    assert _err(codec, "decode_payloads", 42, bytes.fromhex("0000000c" "0304ffff" "01020304")) \
        == ("bad spi size", 0, 42)
    assert _err(codec, "decode_payloads", 42, bytes.fromhex("00000008" "0100ffff")) == \
        ("bad spi size", 0, 42)
    assert _err(codec, "decode_payloads", 53, bytes.fromhex("00000008" "00000000")) == \
        ("bad fragment number", 0, 53)
    assert _err(codec, "decode_payloads", 53, bytes.fromhex("00000008" "00030002")) == \
        ("bad fragment number", 0, 53)
    assert _err(codec, "decode_payloads", 47, bytes.fromhex("0000000b" "02000000" "001700")) == \
        ("bad attribute", 8, 47)
    assert _err(codec, "decode_payloads", 47,
                bytes.fromhex("0000000e" "02000000" "00170006" "0102")) == ("bad attribute", 8, 47)


def test_bit_flips_give_message_or_parse_error(codec: ModuleType) -> None:
    wire = codec.encode_message(samples.all_payloads_message())
    outcomes = set()
    for i in range(28, len(wire)):
        for bit in (0x01, 0x80, 0xFF):
            mutated = bytearray(wire)
            mutated[i] ^= bit
            try:
                outcomes.add(type(codec.decode_message(bytes(mutated))))
            except ParseError:
                outcomes.add(ParseError)
    assert outcomes == {Message, ParseError}


# --- encoder errors -------------------------------------------------------------------------


@pytest.mark.parametrize(("payloads", "exc"), [
    ([SK(35, b""), Nonce(b"")], ValueError),
    ([KE(70000, b"")], ValueError),
    ([KE(-1, b"")], ValueError),
    ([KE("x", b"")], TypeError),  # type: ignore[arg-type]
    ([Nonce("text")], TypeError),  # type: ignore[arg-type]
    ([Nonce(b"x" * 65532)], ValueError),
    ([Notify(0, 1, b"s" * 256)], ValueError),
    ([Delete(3, 4, (b"abc",))], ValueError),
    ([Delete(1, 0, (b"",))], ValueError),
    ([SA(())], ValueError),
    ([SA((Proposal(1, 1, b"", (Transform(1, 12, (TransformAttribute(14, 70000),)),)),))],
     ValueError),
    ([SA((Proposal(1, 1, b"", (Transform(1, 12, (TransformAttribute(14, 1.5),)),)),))],
     TypeError),
    ([TSi((TrafficSelector(7, 0, 0, 0, b"\x00" * 16, b"\x00" * 16),))], ValueError),
    ([TSi((TrafficSelector(9, 0, 0, 0, b"", b""),))], ValueError),
    ([SKF(0, 3, 2, b"")], ValueError),
    ([SK(256, b"")], ValueError),
    ([CP(1, (ConfigAttribute(0x8000),))], ValueError),
    ([UnknownPayload(33, b"")], ValueError),
    ([UnknownPayload(0, b"")], ValueError),
    (["not a payload"], TypeError),
])
def test_encode_rejects_bad_fields(codec: ModuleType, payloads: list, exc: type) -> None:
    with pytest.raises(exc):
        codec.encode_payloads(payloads)


def test_encode_message_rejects_bad_header(codec: ModuleType) -> None:
    msg = samples.ike_auth_request()
    with pytest.raises(ValueError):
        codec.encode_message(replace(msg, spi_i=b"short"))
    with pytest.raises(ValueError):
        codec.encode_message(replace(msg, message_id=1 << 32))
    with pytest.raises(ValueError):
        codec.encode_message(replace(msg, major_version=16))
    with pytest.raises(ValueError):
        codec.encode_message(replace(msg, exchange=256))


@pytest.mark.parametrize(("first", "exc"), [(256, ValueError), (-1, ValueError),
                                            ("x", TypeError), (1.5, TypeError)])
def test_decode_payloads_rejects_bad_first_type(codec: ModuleType, first: object,
                                                exc: type) -> None:
    with pytest.raises(exc):
        codec.decode_payloads(first, b"")


def test_decoded_objects_behave_like_constructed_ones(codec: ModuleType) -> None:
    import dataclasses
    import pickle

    msg = samples.all_payloads_message()
    wire = codec.encode_message(msg)
    out = codec.decode_message(wire)
    assert hash(out) == hash(msg)
    assert repr(out) == repr(load("python").decode_message(wire))
    assert pickle.loads(pickle.dumps(out)) == msg
    assert dataclasses.replace(out, message_id=8).message_id == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.message_id = 9  # type: ignore[misc]
    assert out.first(Notify) == msg.first(Notify) and out.first(KE).critical
