"""Lost, duplicated, reordered and damaged datagrams; retransmission; INFORMATIONAL
exchanges (liveness, delete); timers; address changes."""

from __future__ import annotations

import random

import pytest
from engine_pair import NAT_PUBLIC_IP, Flight, Pair, fap_settings, segw_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from ikecp.const import ConfigAttr, ExchangeType
from ikecp.cp import (
    AddressPool,
    CpRegistry,
    NatInfoHandler,
    NatInfoProvider,
    PoolProvider,
    RequestHandler,
)
from ikecp.engine import RetransmitPolicy
from ikecp.engine.settings import ChildLifetime, IkeLifetime
from ikecp.errors import LocalProtocolError
from ikecp.events import (
    ChildSaEstablished,
    DatagramDropped,
    IkeSaEstablished,
    LivenessConfirmed,
    PeerBinding,
    PublicAddressLearned,
    RemoteAddressChanged,
    SaDeleted,
    SaFailed,
)


def _segw_with_pool() -> tuple:
    pool = AddressPool("10.30.0.0/24")
    reg = CpRegistry().add_provider(NatInfoProvider()).add_provider(PoolProvider(pool))
    return segw_settings(reg), pool


def _fap():
    return fap_settings(CpRegistry().add_handler(NatInfoHandler())
                        .add_handler(RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS)))


def _exchange(f: Flight, backend) -> int:
    return backend.decode_message(f.wire[4:] if f.datagram.encapsulated else f.wire).exchange


class Lose:
    """Drop the n-th datagram (counting from 0) in the given direction."""

    def __init__(self, index: int, to_responder: bool) -> None:
        self.index, self.to_responder, self.seen = index, to_responder, 0

    def __call__(self, flights: list[Flight]) -> list[Flight]:
        out = []
        for f in flights:
            if f.to_responder == self.to_responder:
                self.seen += 1
                if self.seen - 1 == self.index:
                    continue
            out.append(f)
        return out


@pytest.mark.parametrize("to_responder", [True, False])
@pytest.mark.parametrize("index", [0, 1])
def test_lost_datagram_is_retransmitted_and_responder_works_once(backend, index, to_responder):
    segw, pool = _segw_with_pool()
    pair = Pair(backend, _fap(), segw, nat=True, hook=Lose(index, to_responder)).run()
    assert pair.i.established and pair.r.established
    assert pair.i.stats.retransmissions == 1
    # Two requests (IKE_SA_INIT, IKE_AUTH) processed exactly once each.
    assert pair.r.stats.requests_processed == 2
    assert pair.r.stats.cached_replies == (0 if to_responder else 1)
    assert len(pair.events("r", PeerBinding)) == 1 and len(pool.in_use) == 1
    assert len(pair.events("i", PublicAddressLearned)) == 1
    assert pair.clock == pytest.approx(1.0)  # the first retransmission timeout


def test_every_datagram_duplicated(backend):
    def dup(flights):
        return [f for f in flights for _ in range(2)]

    segw, pool = _segw_with_pool()
    pair = Pair(backend, _fap(), segw, nat=True, hook=dup).run()
    assert pair.i.established and pair.r.established
    assert pair.r.stats.requests_processed == 2
    assert pair.r.stats.cached_replies == 2
    assert len(pool.in_use) == 1 and len(pair.events("r", ChildSaEstablished)) == 1
    assert len(pair.events("i", IkeSaEstablished)) == 1
    drops = [e.reason for e in pair.events("i", DatagramDropped)]
    # 2 copies of each request -> 1 reply + 1 cached reply, each duplicated: 3 extra per exchange
    assert drops == ["unexpected response"] * 6


def test_delayed_original_arrives_after_retransmission(backend):
    """The first IKE_AUTH request is held back and delivered after its retransmission."""
    held: list[Flight] = []

    def delay(flights):
        out = []
        for f in flights:
            if f.to_responder and _exchange(f, backend) == ExchangeType.IKE_AUTH and not held:
                held.append(f)
                continue
            out.append(f)
            if held and f.to_responder and f is not held[0]:
                out.append(held[0])  # reordered: the stale copy after the fresh one
        return out

    segw, pool = _segw_with_pool()
    pair = Pair(backend, _fap(), segw, nat=True, hook=delay).run()
    assert pair.i.established and pair.r.established
    assert pair.r.stats.requests_processed == 2 and pair.r.stats.cached_replies == 1
    assert len(pool.in_use) == 1


def test_retransmission_backoff_then_give_up(backend):
    policy = RetransmitPolicy(timeout=0.5, backoff=2.0, tries=4)
    pair = Pair(backend, fap_settings(retransmit=policy), segw_settings(),
                hook=lambda flights: [])
    sent_at: list[float] = []
    while not pair.i.closed:
        before = len(pair.log)
        assert pair.step()
        if len(pair.log) > before:
            sent_at.append(pair.clock)
    assert sent_at == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert pair.clock == pytest.approx(15.5)
    (failed,) = pair.events("i", SaFailed)
    assert "retransmission" in failed.reason
    assert pair.i.next_timer() is None


def _damaged(wire: bytes, encrypted: bool) -> list[bytes]:
    """Truncations (every message) and bit flips (only where integrity protects)."""
    n = len(wire)
    cuts = sorted({0, 1, 3, 4, 27, 28, 29, 31, n // 2, n - 17, n - 1})
    out = [wire[:c] for c in cuts if 0 <= c < n]
    out.append(wire + b"\x00")  # longer than the header says
    if encrypted:
        for pos in {n - 1, n - 20, 60, 40} & set(range(28, n)):
            flipped = bytearray(wire)
            flipped[pos] ^= 0x01
            out.append(bytes(flipped))
    return out


def test_malformed_and_truncated_at_every_step(backend):
    injected = {"count": 0}

    def damage(flights):
        out = []
        for f in flights:
            encrypted = _exchange(f, backend) != ExchangeType.IKE_SA_INIT
            marker = f.wire[:4] if f.datagram.encapsulated else b""
            for bad in _damaged(f.wire[len(marker):], encrypted):
                out.append(Flight(f.to_responder, f.datagram, marker + bad))
                injected["count"] += 1
            out.append(f)
        return out

    segw, pool = _segw_with_pool()
    pair = Pair(backend, _fap(), segw, nat=True, hook=damage)
    pair.run()
    assert pair.i.established and pair.r.established
    assert not pair.events("i", SaFailed) and not pair.events("r", SaFailed)
    dropped = len(pair.events("i", DatagramDropped)) + len(pair.events("r", DatagramDropped))
    assert dropped == injected["count"] > 40
    assert pair.r.stats.requests_processed == 2 and len(pool.in_use) == 1
    # Damage after establishment leaves the SA working: liveness still goes through.
    pair.i.check_liveness()
    pair.run()
    assert pair.events("i", LivenessConfirmed) and pair.i.established and pair.r.established


def test_liveness_both_directions_and_delete(backend):
    segw, pool = _segw_with_pool()
    pair = Pair(backend, _fap(), segw, nat=True).run()
    pair.i.check_liveness()
    pair.r.check_liveness()
    pair.run()
    assert len(pair.events("i", LivenessConfirmed)) == 1
    assert len(pair.events("r", LivenessConfirmed)) == 1
    pair.r.delete()
    pair.run()
    assert pair.r.closed and pair.i.closed
    assert pair.events("r", SaDeleted) == [SaDeleted(by_peer=False)]
    assert pair.events("i", SaDeleted) == [SaDeleted(by_peer=True)]
    assert not pool.in_use
    with pytest.raises(LocalProtocolError):
        pair.i.check_liveness()


def test_dead_peer_detection_timer(backend):
    policy = RetransmitPolicy(timeout=1.0, backoff=2.0, tries=2)
    pair = Pair(backend, fap_settings(dpd_interval=10.0, retransmit=policy),
                segw_settings()).run()
    assert pair.i.next_timer() == pytest.approx(10.0)
    pair.step()  # advances to the DPD timer, which queues an empty INFORMATIONAL
    pair.run()
    assert pair.events("i", LivenessConfirmed)
    pair.hook = lambda flights: []  # the peer vanishes
    for _ in range(20):
        if pair.i.closed:
            break
        pair.step()
    assert pair.i.closed and "retransmission" in pair.events("i", SaFailed)[0].reason


def test_half_open_responder_times_out(backend):
    pair = Pair(backend, fap_settings(), segw_settings(half_open_timeout=5.0),
                hook=lambda flights: [f for f in flights if _exchange(f, backend)
                                      == ExchangeType.IKE_SA_INIT])
    pair.run()
    assert pair.r.closed
    assert "half-open" in pair.events("r", SaFailed)[0].reason


def test_replayed_ike_sa_init_after_establishment_is_dropped(backend):
    pair = Pair(backend, fap_settings(), segw_settings()).run()
    first = pair.log[0]
    pair.r.receive_datagram(first.wire, pair.i_addr, pair.clock, 500)
    assert pair.r.established and not pair.r.datagrams_to_send(pair.clock)
    assert isinstance(pair.r.next_event(), DatagramDropped)


def test_nat_rebinding_updates_the_binding(backend):
    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    old = pair.r.remote
    pair._map.clear()  # the NAPT forgets the mapping; the next packet gets a new port
    pair.i.check_liveness()
    pair.run()
    new = pair.r.remote
    assert new != old and new[0] == NAT_PUBLIC_IP
    assert pair.events("r", RemoteAddressChanged) == [RemoteAddressChanged(old, new)]
    bindings = pair.events("r", PeerBinding)
    assert [(b.public_address, b.public_port) for b in bindings] == [old, new]
    assert pair.events("i", LivenessConfirmed)


@hyp_settings(max_examples=20, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_damage_never_breaks_the_engine(backend, seed):
    """Random bit flips, truncations, extensions and header edits before every genuine
    datagram: the engine never raises, and a damaged unauthenticated IKE_SA_INIT at worst
    ends the SA cleanly. Encrypted messages are protected, so once keys exist the damage is
    always dropped."""
    rng = random.Random(seed)

    def damage(flights):
        out = []
        for f in flights:
            marker = f.wire[:4] if f.datagram.encapsulated else b""
            for _ in range(rng.randint(0, 3)):
                w = bytearray(f.wire[len(marker):])
                op = rng.randrange(4)
                if op == 0:
                    w[rng.randrange(len(w))] ^= 1 << rng.randrange(8)
                elif op == 1:
                    del w[rng.randrange(len(w)):]
                elif op == 2:
                    w += rng.randbytes(rng.randint(1, 8))
                else:
                    w[rng.randrange(16, 28)] = rng.randrange(256)
                out.append(Flight(f.to_responder, f.datagram, marker + bytes(w)))
            out.append(f)
        return out

    pair = Pair(backend, _fap(), _segw_with_pool()[0], nat=True, hook=damage).run(200)
    for events in (pair.i_events, pair.r_events):
        assert not [e for e in events if isinstance(e, DatagramDropped)
                    and e.reason == "internal error"]
    if pair.i.established and pair.r.established:
        (ci,) = pair.events("i", ChildSaEstablished)
        (cr,) = pair.events("r", ChildSaEstablished)
        assert ci.key_i_to_r == cr.key_i_to_r
    else:
        assert pair.i.closed or pair.r.closed or pair.i.next_timer() is not None


def test_replayed_request_is_answered_to_its_source_without_moving_the_sa(backend):
    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    auth_request = next(f for f in pair.log if f.to_responder
                        and _exchange(f, backend) == ExchangeType.IKE_AUTH)
    home = pair.r.remote
    pair.r.receive_datagram(auth_request.wire[4:], ("203.0.113.66", 4500), pair.clock, 4500)
    (reply,) = pair.r.datagrams_to_send(pair.clock)
    assert reply.remote == ("203.0.113.66", 4500) and reply.encapsulated
    assert pair.r.remote == home and pair.r.stats.cached_replies == 1
    assert pair.r.stats.requests_processed == 2


def test_nat_keepalives_from_the_side_behind_nat(backend):
    never = {"ike_lifetime": IkeLifetime(rekey_time=None),
             "child_lifetime": ChildLifetime(rekey_time=None)}
    pair = Pair(backend, fap_settings(**never), segw_settings(**never), nat=True).run()
    assert pair.r.next_timer() is None  # the SeGW is not behind a NAT
    due = pair.i.next_timer()
    assert due == pytest.approx(pair.clock + 20.0)
    pair.i.handle_timer(due)
    (keepalive,) = pair.i.datagrams_to_send(due)
    assert keepalive.wire() == b"\xff" and keepalive.local_port == 4500
    assert keepalive.remote == (pair.r_addr[0], 4500)
    assert pair.i.next_timer() == pytest.approx(due + 20.0)
    no_nat = Pair(backend, fap_settings(**never), segw_settings(**never)).run()
    assert no_nat.i.next_timer() is None
