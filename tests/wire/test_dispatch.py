"""Dispatcher: many SAs behind one port pair, demultiplexing, hostile datagrams, half-open
cap, COOKIE challenge, one timer heap, removal of closed SAs. In memory: two dispatchers
exchange exactly the bytes a socket would carry."""

from __future__ import annotations

import os
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from ikecp.const import NotifyType
from ikecp.cp import AddressPool, CpRegistry, NatInfoHandler, NatInfoProvider, PoolProvider
from ikecp.engine import Identity, PskAuthenticator, RetransmitPolicy, Settings
from ikecp.events import (
    IkeSaEstablished,
    LivenessConfirmed,
    PublicAddressLearned,
    SaDeleted,
    SaFailed,
)
from ikecp.message import Notify
from ikecp.roles.dispatch import Dispatcher

PSK = b"dispatch test psk"
FAP_IP, SEGW_IP = "127.0.0.2", "127.0.0.1"


def segw_settings(**kw) -> Settings:
    cp = CpRegistry().add_provider(NatInfoProvider()).add_provider(
        PoolProvider(AddressPool("10.20.0.0/16")))
    return Settings(local_id=Identity.fqdn("segw.test"), auth=PskAuthenticator(PSK), cp=cp,
                    **kw)


def fap_settings(**kw) -> Settings:
    cp = CpRegistry().add_handler(NatInfoHandler())
    return Settings(local_id=Identity.fqdn("fap.test"), auth=PskAuthenticator(PSK), cp=cp,
                    **kw)


class Wire:
    """Carries datagrams between an initiator and a responder dispatcher like UDP would."""

    def __init__(self, fap: Dispatcher, segw: Dispatcher) -> None:
        self.fap, self.segw = fap, segw
        self.now = 0.0
        self.lost_to_segw = False
        self.seen: list[bytes] = []

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            moved = False
            for dg in self.fap.datagrams_to_send():
                moved = True
                self.seen.append(dg.wire())
                if not self.lost_to_segw:
                    self.segw.receive(dg.wire(), dg.remote[1], (FAP_IP, dg.local_port),
                                      self.now)
            for dg in self.segw.datagrams_to_send():
                moved = True
                self.fap.receive(dg.wire(), dg.remote[1], (SEGW_IP, dg.local_port), self.now)
            if not moved:
                return

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer on the way."""
        end = self.now + seconds
        while True:
            times = [t for t in (self.fap.next_timer(), self.segw.next_timer())
                     if t is not None and t <= end]
            if not times:
                break
            self.now = max(self.now, min(times))
            self.fap.handle_timer(self.now)
            self.segw.handle_timer(self.now)
            self.pump()
        self.now = end


def pair(n: int, *, fap_kw: dict | None = None, **segw_kw) -> tuple[Wire, list]:
    segw = Dispatcher(segw_settings(), SEGW_IP, **segw_kw)
    fap = Dispatcher(None, FAP_IP)
    wire = Wire(fap, segw)
    sas = [fap.connect(fap_settings(**(fap_kw or {})), (SEGW_IP, 500), wire.now,
                       local=(FAP_IP, 500)) for _ in range(n)]
    wire.pump()
    return wire, sas


def test_many_sas_established_and_demultiplexed(backend) -> None:
    wire, sas = pair(25, cookie_threshold=None, cookie_threshold_ip=None)
    assert all(sa.established for sa in sas)
    assert len(wire.segw) == 25 and wire.segw.half_open == 0
    for sa in sas:
        peer = wire.segw.find(sa.spi_r)
        assert peer is not None and peer.established and peer.spi_i == sa.spi_i
    segw_events = [e for _, e in wire.segw.events() if isinstance(e, IkeSaEstablished)]
    assert len(segw_events) == 25
    assert wire.segw.stats.ike == 50 and wire.fap.stats.ike == 50


def test_active_sas_tracked_only_once_asked(backend) -> None:
    """``take_active``: the SAs handed IKE messages since the last call, so a periodic pass
    need not visit idle ones; nothing is kept before the first call (a load generator never
    asks)."""
    wire, sas = pair(3, cookie_threshold=None, cookie_threshold_ip=None)
    assert wire.segw._active is None and wire.segw.take_active() == set()
    assert wire.segw.take_active() == set()  # idle since the last call
    sas[1].check_liveness()
    wire.fap.update(sas[1], wire.now)
    wire.pump()
    (spoke,) = wire.segw.take_active()
    assert spoke is wire.segw.find(sas[1].spi_r)
    assert wire.segw.take_active() == set()


def test_hostile_datagrams_counted_not_crashed(backend) -> None:
    wire, sas = pair(3)
    segw = wire.segw
    before = segw.stats.ike
    hostile = [
        (b"", 500), (b"\x00", 500), (os.urandom(27), 500),      # too short for a header
        (b"\xff", 4500),                                         # NAT keepalive
        (b"\x00\x00\x00\x00" + b"\x01" * 10, 4500),              # marker + truncated IKE
        (b"\x00\x00\x00", 4500),                                 # invalid
        (os.urandom(8) + b"\x00" * 40, 4500),                    # ESP-looking
        (os.urandom(60), 500),                                   # random SPIs
        (sas[0].spi_i + sas[0].spi_r + b"\x2e\x20\x25\x08" + bytes(8), 500),  # bad length
        (sas[0].spi_i + sas[0].spi_r + os.urandom(200), 500),   # right SPIs, garbage body
    ]
    for _ in range(30):  # random SPIs with an IKE_SA_INIT-looking header
        hostile.append((os.urandom(8) + bytes(8) + b"\x21\x20\x22\x08" + bytes(4)
                        + (28).to_bytes(4, "big"), 500))
    for data, port in hostile:
        segw.receive(data, port, ("127.0.0.9", 40000), wire.now)
    st = segw.stats
    assert st.keepalives == 1 and st.esp >= 1 and st.invalid >= 4 and st.unknown_spi >= 1
    assert st.ike > before
    # Nothing hostile created an SA that stays; the real SAs still answer.
    assert len(segw) == 3 and segw.half_open == 0
    sas[0].check_liveness()
    wire.fap.update(sas[0], wire.now)
    wire.pump()
    assert any(isinstance(e, LivenessConfirmed) for _, e in wire.fap.events())


def test_half_open_cap(backend) -> None:
    segw = Dispatcher(segw_settings(), SEGW_IP, max_half_open=3)
    fap = Dispatcher(None, FAP_IP)
    for _ in range(5):
        fap.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    inits = fap.datagrams_to_send()
    for dg in inits:
        segw.receive(dg.wire(), 500, (FAP_IP, 500), 0.0)
    assert segw.half_open == 3 and segw.stats.half_open_refused == 2
    # A retransmitted IKE_SA_INIT reaches its half-open SA and gets the cached reply.
    segw.datagrams_to_send()
    segw.receive(inits[0].wire(), 500, (FAP_IP, 500), 0.0)
    assert segw.half_open == 3 and len(segw.datagrams_to_send()) == 1
    # Half-open SAs time out through the shared timer heap.
    when = segw.next_timer()
    assert when == segw.responder.half_open_timeout
    segw.handle_timer(when)
    assert segw.half_open == 0 and len(segw) == 0 and segw.next_timer() is None
    assert segw.stats.sas_removed == 3


def test_cookie_challenge_then_success(backend) -> None:
    wire, sas = pair(2, cookie_threshold=0)
    assert all(sa.established for sa in sas)
    assert wire.segw.stats.cookies_sent == 2 and wire.segw.stats.bad_cookies == 0
    # A request with a forged cookie is challenged again and creates nothing.
    wire.fap.connect(fap_settings(), (SEGW_IP, 500), wire.now, local=(FAP_IP, 500))
    dg = wire.fap.datagrams_to_send()[0]
    msg = backend.decode_message(dg.data)
    forged = replace(msg, payloads=(Notify(0, NotifyType.COOKIE, data=b"\x00" * 34),
                                    *msg.payloads))
    wire.segw.receive(backend.encode_message(forged), 500, (FAP_IP, 500), wire.now)
    assert wire.segw.stats.bad_cookies == 1 and wire.segw.half_open == 0


def test_cookie_survives_one_secret_rotation(backend) -> None:
    segw = Dispatcher(segw_settings(), SEGW_IP, cookie_threshold=0)
    fap = Dispatcher(None, FAP_IP)
    wire = Wire(fap, segw)
    sa = fap.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    first = fap.datagrams_to_send()[0]
    segw.receive(first.wire(), 500, (FAP_IP, 500), 0.0)
    challenge = segw.datagrams_to_send()
    segw.rotate_cookie_secret()  # between challenge and answer: previous secret still valid
    for dg in challenge:
        fap.receive(dg.wire(), 500, (SEGW_IP, 500), 0.0)
    wire.pump()
    assert sa.established and segw.stats.bad_cookies == 0
    # Two rotations between challenge and answer: the cookie is refused.
    sa2 = fap.connect(fap_settings(), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    segw.receive(fap.datagrams_to_send()[0].wire(), 500, (FAP_IP, 500), 0.0)
    challenge = segw.datagrams_to_send()
    segw.rotate_cookie_secret()
    segw.rotate_cookie_secret()
    for dg in challenge:
        fap.receive(dg.wire(), 500, (SEGW_IP, 500), 0.0)
    answer = fap.datagrams_to_send()
    assert backend.decode_message(answer[0].data).payloads[0].notify_type == NotifyType.COOKIE
    segw.receive(answer[0].wire(), 500, (FAP_IP, 500), 0.0)
    assert segw.stats.bad_cookies == 1 and segw.half_open == 0 and not sa2.established


def test_nat_t_port_and_marker(backend) -> None:
    wire, sas = pair(2, fap_kw={"force_encap": True})
    assert all(sa.established and sa.encapsulated for sa in sas)
    assert all(s[:4] == bytes(4) for s in wire.seen[2:])  # IKE_AUTH onwards on 4500
    learned = [e for _, e in wire.fap.events() if isinstance(e, PublicAddressLearned)]
    assert {(e.address, e.port) for e in learned} == {(FAP_IP, 4500)}


def test_retransmission_then_failure_removes_sa(backend) -> None:
    policy = RetransmitPolicy(timeout=0.5, backoff=1.0, tries=2)
    segw = Dispatcher(segw_settings(), SEGW_IP)
    fap = Dispatcher(None, FAP_IP)
    wire = Wire(fap, segw)
    wire.lost_to_segw = True
    fap.connect(fap_settings(retransmit=policy), (SEGW_IP, 500), 0.0, local=(FAP_IP, 500))
    wire.pump()
    wire.advance(5)
    assert len(wire.seen) == 3  # first try + 2 retransmissions
    assert any(isinstance(e, SaFailed) for _, e in fap.events())
    assert len(fap) == 0 and fap.next_timer() is None and fap.stats.sas_removed == 1


def test_delete_all_removes_everything(backend) -> None:
    wire, _ = pair(4)
    wire.segw.events()
    assert wire.segw.delete_all(wire.now) == 4
    wire.pump()
    assert len(wire.segw) == 0 and len(wire.fap) == 0
    deleted = [e for _, e in wire.fap.events() if isinstance(e, SaDeleted)]
    assert len(deleted) == 4 and all(e.by_peer for e in deleted)


def test_no_responder_on_initiator_side() -> None:
    fap = Dispatcher(None, FAP_IP)
    other = Dispatcher(None, "127.0.0.3")
    other.connect(fap_settings(), (FAP_IP, 500), 0.0, local=("127.0.0.3", 500))
    dg = other.datagrams_to_send()[0]
    fap.receive(dg.wire(), 500, ("127.0.0.3", 500), 0.0)
    assert fap.stats.no_responder == 1 and len(fap) == 0


_segw_for_fuzz = Dispatcher(segw_settings(), SEGW_IP, max_half_open=50)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=120),
    # IKE headers with random SPIs / flags / exchange and a random body
    st.builds(lambda spis, mid, body: spis + mid + body,
              st.binary(min_size=16, max_size=16),
              st.binary(min_size=4, max_size=12), st.binary(max_size=80)),
    st.builds(lambda body: b"\x00\x00\x00\x00" + body, st.binary(max_size=100))),
    port=st.sampled_from([500, 4500]))
def test_fuzzed_datagrams_never_raise(data: bytes, port: int) -> None:
    d = _segw_for_fuzz
    before = d.stats.datagrams
    d.receive(data, port, ("127.0.0.66", 1234), 0.0)
    assert d.stats.datagrams == before + 1
    assert d.half_open <= 50
    d.datagrams_to_send()
    d.events()


def test_rekeyed_and_reauthenticated_sas_are_routed_by_their_new_spis(backend) -> None:
    wire, (sa,) = pair(1)
    old_spis = (sa.spi_i, sa.spi_r)
    sa.rekey()
    wire.fap.update(sa, wire.now)
    wire.pump()
    (new,) = [e.sa for s, e in wire.fap.events() if type(e).__name__ == "IkeSaRekeyed"]
    assert new.established and sa.closed and (new.spi_i, new.spi_r) != old_spis
    assert wire.fap.find(new.spi_i) is new and wire.fap.find(old_spis[0]) is None
    peer = wire.segw.find(new.spi_r)
    assert peer is not None and peer.established and wire.segw.find(old_spis[1]) is None
    assert len(wire.segw) == 1 and len(wire.fap) == 1
    assert sum(type(e).__name__ == "IkeSaRekeyed" for _, e in wire.segw.events()) == 1
    # The SeGW rekeys the new SA: its own SPI is now SPIi; then the FAP reauthenticates.
    peer.rekey()
    wire.segw.update(peer, wire.now)
    wire.pump()
    (third,) = [e.sa for s, e in wire.segw.events() if type(e).__name__ == "IkeSaRekeyed"]
    assert wire.segw.find(third.spi_i) is third and third.is_initiator
    fap_sa = wire.fap.find(third.spi_r)
    assert fap_sa is not None and fap_sa.established and len(wire.fap) == 1
    fap_sa.reauthenticate()
    wire.fap.update(fap_sa, wire.now)
    wire.pump()
    assert fap_sa.closed and len(wire.fap) == 1 and len(wire.segw) == 1
    (fresh,) = wire.fap.sas()
    assert fresh.established and wire.segw.find(fresh.spi_r).established
