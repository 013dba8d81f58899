"""Dispatcher limits against hostile initiators (in memory, exact bytes): one IKE_SA_INIT
cannot multiply across source ports, a retransmitted IKE_SA_INIT after establishment makes
no second SA, per-IP and global half-open caps answer with a COOKIE demand instead of
silence, oversized and many-payload IKE_SA_INITs are dropped before a full decode, and
requests for unknown SPIs get a rate-limited, unprotected INVALID_IKE_SPI."""

from __future__ import annotations

import struct
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikecp.const import ExchangeType, HeaderFlag, NotifyType
from ikecp.engine import rules
from ikecp.errors import ParseError
from ikecp.message import Nonce, Notify, VendorId
from ikecp.roles.dispatch import Dispatcher, scan_init
from test_dispatch import FAP_IP, SEGW_IP, fap_settings, pair, segw_settings


def first_init(**segw_kw) -> tuple[Dispatcher, Dispatcher, bytes]:
    segw = Dispatcher(segw_settings(), SEGW_IP, **segw_kw)
    fap = Dispatcher(None, FAP_IP)
    fap.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    return segw, fap, fap.datagrams_to_send()[0].wire()


def notifies_in(backend, datagrams) -> list[int]:
    out = []
    for dg in datagrams:
        msg = backend.decode_message(dg.data)
        out += [p.notify_type for p in msg.payloads if isinstance(p, Notify)]
    return out


def test_init_retransmitted_after_establishment_makes_no_second_sa(backend) -> None:
    wire, sas = pair(1)
    segw = wire.segw
    init = wire.seen[0]
    created = segw.stats.sas_created
    segw.receive(init, 500, (FAP_IP, 500), wire.now)
    assert segw.stats.sas_created == created and len(segw) == 1 and segw.half_open == 0
    assert segw.datagrams_to_send() == []  # no new SPIr, no new DH
    assert sas[0].established


def test_one_init_from_many_ports_is_one_half_open_sa(backend) -> None:
    segw, _, init = first_init(cookie_threshold=None)
    for port in range(1000, 3000):
        segw.receive(init, 500, (FAP_IP, port), 0.0)
    assert segw.half_open == 1 and segw.stats.sas_created == 1
    # Each port still gets the one cached answer (RFC 7296 §2.11), not a new SA.
    replies = segw.datagrams_to_send()
    assert len({dg.data for dg in replies}) == 1


def test_one_cookie_replayed_from_many_ports_is_one_half_open_sa(backend) -> None:
    segw, fap, init = first_init(cookie_threshold=0)
    segw.receive(init, 500, (FAP_IP, 500), 0.0)
    challenge = segw.datagrams_to_send()
    assert notifies_in(backend, challenge) == [NotifyType.COOKIE]
    fap.receive(challenge[0].wire(), 500, (SEGW_IP, 500), 0.0)
    with_cookie = fap.datagrams_to_send()[0].wire()
    for port in range(1000, 3000):
        segw.receive(with_cookie, 500, (FAP_IP, port), 0.0)
    assert segw.half_open == 1 and segw.stats.sas_created == 1
    assert segw.stats.bad_cookies == 0


def test_per_ip_cap_demands_a_cookie_and_spares_other_addresses(backend) -> None:
    segw = Dispatcher(segw_settings(), SEGW_IP, max_half_open_ip=5, cookie_threshold=None,
                      cookie_threshold_ip=None)
    fap = Dispatcher(None, FAP_IP)
    for _ in range(8):
        fap.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    for dg in fap.datagrams_to_send():
        segw.receive(dg.wire(), 500, (FAP_IP, 500), 0.0)
    assert segw.half_open == 5 and segw.stats.half_open_refused == 3
    kinds = notifies_in(backend, segw.datagrams_to_send())
    assert kinds.count(NotifyType.COOKIE) == 3  # an answer, not silence
    other = Dispatcher(None, "127.0.0.77")
    other.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=("127.0.0.77", 500))
    segw.receive(other.datagrams_to_send()[0].wire(), 500, ("127.0.0.77", 500), 0.0)
    assert segw.half_open == 6


def test_global_cap_demands_a_cookie_instead_of_silence(backend) -> None:
    segw = Dispatcher(segw_settings(), SEGW_IP, max_half_open=3, cookie_threshold=None)
    fap = Dispatcher(None, FAP_IP)
    for _ in range(5):
        fap.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    for dg in fap.datagrams_to_send():
        segw.receive(dg.wire(), 500, (FAP_IP, 500), 0.0)
    assert segw.half_open == 3 and segw.stats.half_open_refused == 2
    assert notifies_in(backend, segw.datagrams_to_send()).count(NotifyType.COOKIE) == 2


def test_cookies_are_on_by_default() -> None:
    from ikecp.config import SegwConfig

    d = Dispatcher(segw_settings(), SEGW_IP)
    assert d.cookie_threshold is not None and d.cookie_threshold_ip is not None
    cfg = SegwConfig(psk="x" * 20)
    assert cfg.cookie_threshold is not None and cfg.cookie_threshold_ip is not None


def padded_init(backend, init: bytes, extra: list) -> bytes:
    msg = backend.decode_message(init)
    return backend.encode_message(replace(msg, payloads=(*msg.payloads, *extra)))


def test_oversized_init_dropped_without_state(backend) -> None:
    segw, _, init = first_init(cookie_threshold=None)
    big = padded_init(backend, init, [VendorId(b"x" * 60_000)])
    segw.receive(big, 500, (FAP_IP, 500), 0.0)
    assert segw.stats.oversized == 1 and segw.half_open == 0
    assert segw.datagrams_to_send() == []
    # Room for a large KE: 8 KiB by default.
    ok = padded_init(backend, init, [VendorId(b"x" * 4000)])
    segw.receive(ok, 500, (FAP_IP, 500), 0.0)
    assert segw.half_open == 1


def test_many_payload_init_dropped_before_decode(backend) -> None:
    segw, _, init = first_init(cookie_threshold=None, max_init_size=65535)
    flood = padded_init(backend, init, [Notify(0, 40000 + i % 100) for i in range(7000)])
    segw.receive(flood, 500, (FAP_IP, 500), 0.0)
    assert segw.stats.too_many_payloads == 1 and segw.half_open == 0
    assert segw.datagrams_to_send() == []


def test_cookie_challenge_needs_no_full_decode(backend) -> None:
    """The challenge is computed from the header and the Nonce found by walking the payload
    headers: a body the full decoder would refuse still gets the (cheap) challenge."""
    segw, _, init = first_init(cookie_threshold=0)
    # Corrupt the SA payload's body (first payload) but keep its generic header intact.
    data = bytearray(init)
    data[28 + 4:28 + 12] = b"\xff" * 8
    segw.receive(bytes(data), 500, (FAP_IP, 500), 0.0)
    assert notifies_in(backend, segw.datagrams_to_send()) == [NotifyType.COOKIE]


def test_rules_cache_is_bounded() -> None:
    long_shape = [Notify(0, 40000)] * 500
    rules.check(ExchangeType.INFORMATIONAL, True, long_shape)
    assert all(len(s) < 100 for s in rules._PASSED)


def unknown_spi_request(mid: int = 7) -> bytes:
    spi_i, spi_r = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
    # HDR + an SK payload with 32 octets of "ciphertext" (the SPI is unknown anyway)
    body = struct.pack("!BBH", 0, 0, 36) + bytes(32)
    return spi_i + spi_r + struct.pack("!BBBBII", 46, 0x20, 37, 0x08, mid, 28 + len(body)) \
        + body


def test_unknown_spi_request_gets_invalid_ike_spi(backend) -> None:
    segw = Dispatcher(segw_settings(), SEGW_IP, invalid_spi_rate=5)
    req = bytes(4) + unknown_spi_request()  # non-ESP marker: UDP/4500
    segw.receive(req, 4500, (FAP_IP, 4500), 0.0)
    (dg,) = segw.datagrams_to_send()
    assert dg.encapsulated and dg.remote == (FAP_IP, 4500)
    msg = backend.decode_message(dg.data)
    assert (msg.spi_i, msg.spi_r, msg.message_id) == (req[4:12], req[12:20], 7)
    assert msg.exchange == ExchangeType.INFORMATIONAL
    assert msg.flags & HeaderFlag.RESPONSE and not msg.flags & HeaderFlag.INITIATOR
    assert [p.notify_type for p in msg.payloads] == [NotifyType.INVALID_IKE_SPI]
    # Rate-limited: a burst gets at most the bucket's worth; responses get nothing.
    for _ in range(100):
        segw.receive(req, 4500, (FAP_IP, 4500), 0.0)
    assert len(segw.datagrams_to_send()) <= 5
    resp = bytearray(req)
    resp[4 + 19] = 0x20  # a response: never answered (§2.21.4)
    segw.receive(bytes(resp), 4500, (FAP_IP, 4500), 10.0)
    assert segw.datagrams_to_send() == []


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), cut=st.integers(0, 400), cookie=st.booleans())
def test_scan_init_agrees_with_the_decoder(backend, data: bytes, cut: int,
                                           cookie: bool) -> None:
    """Random bytes never raise; a real IKE_SA_INIT (maybe with a COOKIE, maybe truncated)
    gives the Nonce and COOKIE the full decoder finds, or None where the decoder fails."""
    assert scan_init(data, 32) is None or isinstance(scan_init(data, 32), tuple)
    _, init = first_init()[1:]
    msg = backend.decode_message(init)
    if cookie:
        init = backend.encode_message(replace(msg, payloads=(
            Notify(0, NotifyType.COOKIE, data=data[:40] or b"\x00"), *msg.payloads)))
    wire = init[:cut] if cut < len(init) else init
    scanned = scan_init(wire, 32)
    try:
        decoded = backend.decode_message(wire)
    except ParseError:
        return
    assert scanned is not None
    nonce = next(p.data for p in decoded.payloads if isinstance(p, Nonce))
    first = decoded.payloads[0]
    want = first.data if isinstance(first, Notify) and first.notify_type == NotifyType.COOKIE \
        else None
    assert scanned == (want, nonce)


def test_per_ip_limits_count_an_ipv6_slash_64_as_one_source(backend) -> None:
    segw = Dispatcher(segw_settings(), "::1", max_half_open_ip=3, cookie_threshold=None,
                      cookie_threshold_ip=None)
    for i in range(5):  # five addresses of one /64
        init = first_init()[2]
        segw.receive(init, 500, (f"2001:db8:1:2::{i + 1}", 500), 0.0)
    assert segw.half_open == 3 and segw.stats.half_open_refused == 2
    segw.receive(first_init()[2], 500, ("2001:db8:1:3::1", 500), 0.0)  # another /64
    assert segw.half_open == 4


def test_invalid_ike_spi_only_for_ikev2_exchanges_of_an_sa(backend) -> None:
    segw = Dispatcher(segw_settings(), SEGW_IP)
    req = bytearray(unknown_spi_request())
    for version, exchange in ((0x10, 37), (0x20, 34), (0x20, 38), (0x20, 200)):
        req[17], req[18] = version, exchange
        segw.receive(bytes(req), 500, (FAP_IP, 500), 0.0)
    assert segw.datagrams_to_send() == [] and segw.stats.invalid_spi_sent == 0
