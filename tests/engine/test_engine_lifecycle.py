"""CREATE_CHILD_SA in both roles (RFC 7296 §1.3, §2.8, §2.17, §2.18), rekey collisions
(§2.8.1, §2.8.2), the error notifies of §2.25 and §1.3, reauthentication (§2.8.3), AUTH_LIFETIME
(RFC 4478) and the renewal schedules, between two in-memory engines on a fake clock."""

from __future__ import annotations

import itertools

import pytest
from engine_pair import Flight, Pair, fap_settings, segw_settings
from ikecp import framing
from ikecp.const import ConfigAttr, ExchangeType, NotifyType
from ikecp.cp import (
    AddressPool,
    CpRegistry,
    NatInfoHandler,
    NatInfoProvider,
    PoolProvider,
    RequestHandler,
)
from ikecp.engine import ChildLifetime, ChildProposal, IkeLifetime, RetransmitPolicy, selector
from ikecp.engine.child_sa import ChildState
from ikecp.errors import LocalProtocolError
from ikecp.events import (
    AuthLifetimeReceived,
    ChildSaClosed,
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    IkeSaRekeyed,
    LivenessConfirmed,
    PeerBinding,
    ProtocolErrorReceived,
    ProtocolErrorSent,
    PublicAddressLearned,
    ReauthStarted,
    RedundantIkeSa,
    SaDeleted,
    SaFailed,
)

QUIET = {"ike_lifetime": IkeLifetime(rekey_time=None),
         "child_lifetime": ChildLifetime(rekey_time=None)}


def _fap(**kw):
    kw = {**QUIET, **kw}
    return fap_settings(CpRegistry().add_handler(NatInfoHandler())
                        .add_handler(RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS)), **kw)


def _segw(pool: AddressPool | None = None, **kw):
    kw = {**QUIET, **kw}
    reg = CpRegistry().add_provider(NatInfoProvider())
    if pool is not None:
        reg.add_provider(PoolProvider(pool))
    return segw_settings(reg, **kw)


def _up(backend, i=None, r=None, **kw) -> Pair:
    pair = Pair(backend, i or _fap(), r or _segw(), nat=True, **kw).run()
    assert pair.i.established and pair.r.established
    return pair


def _matched(pair: Pair) -> list[tuple[bytes, bytes]]:
    """CHILD SA pairs as (FAP inbound, FAP outbound), checked against the SeGW's view."""
    mine = sorted(c.spis for c in pair.i.children)
    theirs = sorted((c.spi_out, c.spi_in) for c in pair.r.children)
    assert mine == theirs
    return mine


def _keys_agree(pair: Pair, spi_fap_in: bytes) -> None:
    """Both sides derived the same keys for the CHILD SA the FAP receives on ``spi_fap_in``."""
    (i,) = [e for e in pair.events("i", ChildSaEstablished) if e.spi_in == spi_fap_in]
    (r,) = [e for e in pair.events("r", ChildSaEstablished) if e.spi_out == spi_fap_in]
    assert i.key_out == r.key_in and i.key_in == r.key_out and i.key_in != i.key_out


def _requests(pair: Pair, backend, exchange: int, to_responder: bool):
    """Decrypted requests of one exchange type sent in one direction."""
    out = []
    for f in pair.log:
        data = framing.classify(f.wire)[1] if f.datagram.encapsulated else f.wire
        if f.to_responder != to_responder or data[18] != exchange or data[19] & 0x20:
            continue
        receivers = pair.r_sas if to_responder else pair.i_sas
        for sa in receivers:
            if sa.cipher_in is not None and data[:8] == sa.spi_i and data[8:16] == sa.spi_r:
                out.append(backend.open_message(sa.cipher_in, data))
    return out


# --- additional CHILD SAs and CHILD SA rekeying ---------------------------------------------

def test_additional_child_sa(backend):
    pair = _up(backend)
    pair.i.create_child()
    pair.run()
    assert len(_matched(pair)) == 2
    new = pair.events("i", ChildSaEstablished)[-1]
    assert new.initiator and new.rekeys is None
    _keys_agree(pair, new.spi_in)
    assert not pair.events("i", ChildSaFailed) and not pair.events("r", ChildSaFailed)


def test_additional_child_sa_from_the_segw(backend):
    pair = _up(backend)
    pair.r.create_child()
    pair.run()
    assert len(_matched(pair)) == 2
    new = pair.events("r", ChildSaEstablished)[-1]
    assert new.initiator and not pair.events("i", ChildSaEstablished)[-1].initiator
    _keys_agree(pair, pair.events("i", ChildSaEstablished)[-1].spi_in)


@pytest.mark.parametrize("side", ["i", "r"])
def test_child_rekey_either_role(backend, side):
    pair = _up(backend)
    (old,) = _matched(pair)
    getattr(pair, side).rekey_child()
    pair.run()
    (new,) = _matched(pair)
    assert set(new).isdisjoint(old)
    for s in "ir":
        (rekeyed,) = pair.events(s, ChildSaRekeyed)
        closed = pair.events(s, ChildSaClosed)
        assert [c.spi_in for c in closed] == [rekeyed.old_spi_in]
    _keys_agree(pair, new[0])
    assert pair.events("i", ChildSaEstablished)[-1].rekeys == old[0]
    # The rekeyed SA stays usable: a second rekey works the same way.
    pair.i.rekey_child()
    pair.run()
    (third,) = _matched(pair)
    assert third != new
    assert pair.i.established and pair.r.established


def test_child_rekey_with_pfs_sends_ke_and_keys_agree(backend):
    pfs = (ChildProposal.parse("aes256gcm16-x25519"),)
    pair = _up(backend, _fap(child_proposals=pfs), _segw(child_proposals=pfs))
    # IKE_AUTH never carries a DH group for the first CHILD SA (§1.2).
    pair.i.rekey_child()
    pair.run()
    (new,) = _matched(pair)
    _keys_agree(pair, new[0])
    (request,) = _requests(pair, backend, ExchangeType.CREATE_CHILD_SA, True)
    from ikecp.message import KE, SA
    assert request.first(KE).group == 31
    assert any(t.type == 4 for t in request.first(SA).proposals[0].transforms)


def test_invalid_ke_payload_retries_with_the_peers_group(backend):
    fap_groups = (ChildProposal.parse("aes256gcm16-ecp256-x25519"),)
    segw_groups = (ChildProposal.parse("aes256gcm16-x25519"),)
    pair = _up(backend, _fap(child_proposals=fap_groups), _segw(child_proposals=segw_groups))
    pair.i.rekey_child()
    pair.run()
    assert [e.notify_type for e in pair.events("r", ProtocolErrorSent)] == \
        [NotifyType.INVALID_KE_PAYLOAD]
    (new,) = _matched(pair)
    _keys_agree(pair, new[0])
    kes = [m.first(__import__("ikecp.message", fromlist=["KE"]).KE).group
           for m in _requests(pair, backend, ExchangeType.CREATE_CHILD_SA, True)]
    assert kes == [19, 31]


def test_no_proposal_chosen_keeps_the_old_child_and_retries_later(backend):
    pair = _up(backend, _fap(child_proposals=(ChildProposal.parse("aes256gcm16-x25519"),)),
               _segw())  # the SeGW offers no PFS: a rekey with KE is unacceptable to it
    (old,) = _matched(pair)
    pair.i.rekey_child()
    pair.run()
    (failed,) = pair.events("i", ChildSaFailed)
    assert failed.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
    assert _matched(pair) == [old] and pair.i.children[0].state is ChildState.INSTALLED
    assert pair.i.children[0].rekey_at is not None  # tried again later
    assert pair.i.established and pair.r.established


def test_child_sa_not_found(backend):
    pair = _up(backend)
    (old,) = _matched(pair)
    pair.r.children.clear()  # the SeGW lost it (e.g. deleted it while our request flew)
    pair.i.rekey_child()
    pair.run()
    assert [e.notify_type for e in pair.events("i", ChildSaFailed)] == \
        [NotifyType.CHILD_SA_NOT_FOUND]
    assert pair.i.children == []
    assert [c.spi_in for c in pair.events("i", ChildSaClosed)] == [old[0]]
    assert pair.i.established


def test_temporary_failure_when_rekeys_cross(backend):
    """The SeGW rekeys the IKE SA while the FAP rekeys its CHILD SA: each answers the other
    TEMPORARY_FAILURE (§2.25) and retries later, at different times (jitter)."""
    pair = _up(backend, _fap(jitter=lambda: 0.0), _segw(jitter=lambda: 1.0))
    (old,) = _matched(pair)
    pair.r.rekey()
    pair.i.rekey_child()
    pair.run()
    for s in "ir":
        assert [e.notify_type for e in pair.events(s, ProtocolErrorSent)] == \
            [NotifyType.TEMPORARY_FAILURE]
    assert [e.notify_type for e in pair.events("i", ChildSaFailed)] == \
        [NotifyType.TEMPORARY_FAILURE]
    assert [e.notify_type for e in pair.events("r", ProtocolErrorReceived)] == \
        [NotifyType.TEMPORARY_FAILURE]
    pair.advance(pair.clock + 30)
    assert len(pair.events("i", IkeSaRekeyed)) == 1 and len(pair.events("i", ChildSaRekeyed)) == 1
    (new,) = _matched(pair)
    assert new != old and pair.i.established and pair.r.established
    assert not pair.events("i", SaFailed) and not pair.events("r", SaFailed)


@pytest.mark.parametrize("round_", range(6))
def test_simultaneous_child_rekey(backend, round_):
    """§2.8.1: both rekey the same CHILD SA; whatever the nonces, one pair survives on both
    sides and the old and the redundant pair are deleted."""
    pair = _up(backend)
    (old,) = _matched(pair)
    pair.i.rekey_child()
    pair.r.rekey_child()
    pair.run()
    (survivor,) = _matched(pair)
    assert survivor != old
    for s in "ir":
        assert len(pair.events(s, ChildSaEstablished)) == 3
        assert len(pair.events(s, ChildSaClosed)) == 2
    _keys_agree(pair, survivor[0])
    assert pair.i.established and pair.r.established


# --- IKE SA rekeying --------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["i", "r"])
def test_ike_rekey_either_role(backend, side):
    pool = AddressPool("10.30.0.0/24")
    pair = _up(backend, r=_segw(pool))
    old_i, old_r = pair.i, pair.r
    (child,) = _matched(pair)
    getattr(pair, side).rekey()
    pair.run()
    new_i, new_r = pair.i, pair.r
    assert new_i is not old_i and new_r is not old_r
    assert (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    assert {new_i.spi_i, new_i.spi_r}.isdisjoint({old_i.spi_i, old_i.spi_r})
    assert new_i.is_initiator == (side == "i") and new_r.is_initiator == (side == "r")
    assert old_i.closed and old_r.closed and _matched(pair) == [child]
    for s in "ir":
        (ev,) = pair.events(s, IkeSaRekeyed)
        assert ev.sa is (new_i if s == "i" else new_r)
        (deleted,) = pair.events(s, SaDeleted)
        assert deleted.replaced and deleted.by_peer == (s != side)
    assert len(pool.in_use) == 1  # the inner address moved with the SA, not released
    # The new IKE SA works: liveness, a CHILD rekey keyed from the new SK_d, and delete.
    new_i.check_liveness()
    pair.run()
    assert pair.events("i", LivenessConfirmed)
    new_r.rekey_child()
    pair.run()
    (fresh,) = _matched(pair)
    _keys_agree(pair, fresh[0])
    new_i.delete()
    pair.run()
    assert new_i.closed and new_r.closed and len(pool.in_use) == 0


def test_ike_rekey_twice_in_a_row(backend):
    pair = _up(backend)
    for _ in range(3):
        pair.i.rekey()
        pair.run()
        pair.r.rekey()
        pair.run()
    assert len(pair.events("i", IkeSaRekeyed)) == 6 and len(_matched(pair)) == 1
    assert sum(sa.established for sa in pair.i_sas) == 1


@pytest.mark.parametrize("round_", range(6))
def test_simultaneous_ike_rekey(backend, round_):
    """§2.8.2: both rekey the IKE SA at once; one new IKE SA survives on both sides with the
    CHILD SA, the redundant one and the old one are deleted."""
    pair = _up(backend)
    (child,) = _matched(pair)
    pair.i.rekey()
    pair.r.rekey()
    pair.run()
    live_i = [sa for sa in pair.i_sas if not sa.closed]
    live_r = [sa for sa in pair.r_sas if not sa.closed]
    assert len(live_i) == 1 and len(live_r) == 1
    (i,), (r,) = live_i, live_r
    assert i.established and r.established and (i.spi_i, i.spi_r) == (r.spi_i, r.spi_r)
    assert _matched(pair) == [child]
    for s in "ir":
        assert len(pair.events(s, RedundantIkeSa)) == 1
        assert all(d.replaced for d in pair.events(s, SaDeleted))
    i.check_liveness()
    pair.run()
    assert pair.events("i", LivenessConfirmed)


# --- lost and reordered messages --------------------------------------------------------------

def lose_first_create_child_sa(to_responder: bool):
    """A hook losing the first CREATE_CHILD_SA datagram sent in one direction."""
    lost = []

    def hook(flights: list[Flight]) -> list[Flight]:
        keep = []
        for f in flights:
            if not lost and f.to_responder == to_responder \
                    and _exchange_of(f) == ExchangeType.CREATE_CHILD_SA:
                lost.append(f)
            else:
                keep.append(f)
        return keep
    return hook


@pytest.mark.parametrize("to_responder", [True, False])
@pytest.mark.parametrize("what", ["child", "ike"])
def test_lost_create_child_sa_is_retransmitted(backend, what, to_responder):
    pair = _up(backend)
    pair.hook = lose_first_create_child_sa(to_responder)
    (child,) = _matched(pair)
    if what == "child":
        pair.i.rekey_child()
    else:
        pair.i.rekey()
    pair.run()
    assert pair.i.established and pair.r.established
    retransmitting = [sa for sa in pair.i_sas if sa.stats.retransmissions]
    assert len(retransmitting) == 1
    answered_from_cache = sum(sa.stats.cached_replies for sa in pair.r_sas)
    assert answered_from_cache == (0 if to_responder else 1)
    if what == "child":
        assert len(pair.events("r", ChildSaRekeyed)) == 1  # processed once
        assert _matched(pair) != [child]
    else:
        assert len(pair.events("r", IkeSaRekeyed)) == 1
        assert _matched(pair) == [child]


def test_reordered_requests_of_both_sides(backend):
    """Both sides send at once and every batch is delivered in reverse order."""
    pair = _up(backend)
    pair.hook = lambda flights: list(reversed(flights))
    pair.i.rekey_child()
    pair.r.check_liveness()
    pair.run()
    pair.r.rekey()
    pair.i.check_liveness()
    pair.run()
    assert pair.i.established and pair.r.established and len(_matched(pair)) == 1
    assert pair.events("i", LivenessConfirmed) and pair.events("r", LivenessConfirmed)


def test_rekey_requests_need_an_established_sa(backend):
    pair = Pair(backend, _fap(), _segw())
    with pytest.raises(LocalProtocolError):
        pair.i.rekey()
    with pytest.raises(LocalProtocolError):
        pair.i.create_child()
    pair.run()
    with pytest.raises(LocalProtocolError):
        pair.r.reauthenticate()  # only the original initiator


def test_create_child_sa_on_a_replaced_sa_is_temporary_failure(backend):
    """An IKE SA rekeyed by the peer waits for its DELETE; a CREATE_CHILD_SA crossing the
    rekey on it is answered TEMPORARY_FAILURE, not by a new CHILD SA on a dead IKE SA."""
    pair = _up(backend)
    i_old, r_old = pair.i, pair.r
    hold = {"on": True}
    # Hold the FAP's DELETE of the old IKE SA so the SeGW's old SA stays REPLACED.
    pair.hook = lambda flights: [f for f in flights if not (
        hold["on"] and f.to_responder and _exchange_of(f) == ExchangeType.INFORMATIONAL)]
    i_old.rekey()
    pair.run()
    assert r_old.state.value == "replaced" and pair.r is not r_old
    i_old.tasks.request = None  # a CREATE_CHILD_SA sent on the old SA before it learned
    i_old.state = r_old.state.__class__.ESTABLISHED  # of the rekey (its DELETE is held)
    i_old.children.append(pair.i.children[0])
    i_old.create_child()
    pair.run()
    assert [e.notify_type for e in pair.events("r", ProtocolErrorSent)] == \
        [NotifyType.TEMPORARY_FAILURE]
    assert len(pair.r.children) == 1


# --- schedules, expiry, reauthentication, AUTH_LIFETIME ---------------------------------------

def test_schedules_rekey_both_kinds_with_jitter_and_never_lose_the_child(backend):
    life = {"ike_lifetime": IkeLifetime(rekey_time=300.0, over_time=60.0),
            "child_lifetime": ChildLifetime(rekey_time=100.0, life_time=130.0)}
    fap_jitter, segw_jitter = itertools.cycle([0.1, 0.7, 0.4]), itertools.cycle([0.9, 0.2])
    pair = _up(backend, _fap(**life, jitter=lambda: next(fap_jitter)),
               _segw(**life, jitter=lambda: next(segw_jitter)))
    for t in range(5, 1000, 5):
        pair.advance(float(t))
        assert pair.i.established and pair.r.established, t
        assert pair.i.children and pair.r.children, t
        _matched(pair)
    assert len(pair.events("i", IkeSaRekeyed)) >= 3
    assert len(pair.events("i", ChildSaRekeyed)) >= 9
    assert not pair.events("i", SaFailed) and not pair.events("r", SaFailed)
    assert all(d.replaced for s in "ir" for d in pair.events(s, SaDeleted))


def test_rekey_times_have_jitter(backend):
    """rekey_time minus jitter() * rand_time; the hard end over_time after (strongSwan)."""
    life = {"ike_lifetime": IkeLifetime(rekey_time=300.0, over_time=60.0, rand_time=40.0),
            "child_lifetime": ChildLifetime(rekey_time=100.0, life_time=130.0)}
    pair = _up(backend, _fap(**life, jitter=lambda: 0.25), _segw(**life, jitter=lambda: 0.75))
    now = pair.clock
    assert pair.i._rekey_at == pytest.approx(now + 290.0)
    assert pair.r._rekey_at == pytest.approx(now + 270.0)
    assert pair.i._expire_at == pytest.approx(now + 350.0)
    assert pair.i.children[0].rekey_at == pytest.approx(now + 100.0 - 0.25 * 30.0)
    assert pair.r.children[0].rekey_at == pytest.approx(now + 100.0 - 0.75 * 30.0)
    assert pair.i.children[0].expire_at == pytest.approx(now + 130.0)
    pair.advance(now + 280.0)  # the SeGW's IKE rekey came first
    assert pair.i.is_initiator is False and len(pair.events("i", IkeSaRekeyed)) == 1


def _exchange_of(f: Flight) -> int | None:
    data = framing.classify(f.wire)[1] if f.datagram.encapsulated else f.wire
    return data[18] if len(data) > 19 else None


def test_child_expires_when_rekeying_keeps_failing(backend):
    pair = _up(backend,
               _fap(child_proposals=(ChildProposal.parse("aes256gcm16-x25519"),),
                    child_lifetime=ChildLifetime(rekey_time=50.0, life_time=80.0)),
               _segw())
    assert len(_matched(pair)) == 1
    pair.advance(100.0)
    assert pair.i.children == [] and pair.r.children == []
    assert [c.reason for c in pair.events("i", ChildSaClosed)] == ["deleted"]
    assert len(pair.events("i", ChildSaFailed)) >= 2  # the rekeys, refused
    assert pair.i.established


def test_ike_sa_closed_at_over_time_when_rekeying_keeps_failing(backend):
    from ikecp.engine import IkeProposal
    fap = _fap(ike_lifetime=IkeLifetime(rekey_time=100.0, over_time=30.0, rand_time=0.0),
               ike_proposals=(IkeProposal.parse("aes256gcm16-prfsha256-x25519"),))
    pair = _up(backend, fap, _segw())
    original = pair.i

    pair.hook = lambda flights: [f for f in flights if not (
        f.to_responder and _exchange_of(f) == ExchangeType.CREATE_CHILD_SA)]
    pair.advance(200.0)
    assert original.closed
    assert any(isinstance(e, SaFailed) for e in pair.i_events)


def test_reauthentication_is_make_before_break(backend):
    pool = AddressPool("10.30.0.0/24")
    fap = _fap(ike_lifetime=IkeLifetime(rekey_time=None, reauth_time=200.0, rand_time=0.0))
    pair = _up(backend, fap, _segw(pool))
    old_i, old_r = pair.i, pair.r
    first_public = pair.events("i", PublicAddressLearned)[0]
    pair._map.clear()  # the NAT forgot the mapping: the new SA gets a new public port
    pair.advance(250.0)
    new_i, new_r = pair.i, pair.r
    assert new_i is not old_i and new_r is not old_r
    assert old_i.closed and old_r.closed and new_i.established and new_r.established
    (started,) = pair.events("i", ReauthStarted)
    assert started.sa is new_i
    # The SeGW saw the new binding before the old SA went: never a moment without one.
    order = [(type(e).__name__, getattr(e, "spi_r", None)) for e in pair.r_events
             if isinstance(e, PeerBinding | SaDeleted)]
    assert order.index(("PeerBinding", new_r.spi_r)) < order.index(("SaDeleted", None))
    assert pair.events("r", SaDeleted)[0].by_peer
    assert [d.replaced for d in pair.events("i", SaDeleted)] == [True]
    # NAT info learned afresh by the new SA, and it changed.
    learned = [e for e in pair.events("i", PublicAddressLearned) if not e.pushed]
    assert len(learned) == 2 and learned[1].port != first_public.port
    assert len(_matched(pair)) == 1 and len(pool.in_use) == 1


def test_auth_lifetime_from_the_segw_makes_the_fap_reauthenticate(backend):
    segw = _segw(ike_lifetime=IkeLifetime(rekey_time=None, reauth_time=300.0, over_time=20.0))
    fap = _fap(ike_lifetime=IkeLifetime(rekey_time=None, over_time=20.0))
    pair = _up(backend, fap, segw)
    (received,) = pair.events("i", AuthLifetimeReceived)
    assert received.lifetime == 300
    old = pair.i
    pair.advance(270.0)
    assert old.established and not pair.events("i", ReauthStarted)
    pair.advance(290.0)
    assert pair.events("i", ReauthStarted) and old.closed and pair.i.established
    assert pair.i is not old and pair.r.established


def test_failed_reauthentication_keeps_the_old_sa_and_retries(backend):
    fap = _fap(ike_lifetime=IkeLifetime(rekey_time=None, reauth_time=100.0, rand_time=0.0,
                                        over_time=100.0), rekey_retry=10.0,
               retransmit=RetransmitPolicy(timeout=1.0, tries=2))
    pair = _up(backend, fap, _segw())
    old = pair.i
    drop_init = {"on": True}

    pair.hook = lambda flights: [f for f in flights if not (
        drop_init["on"] and f.to_responder and _exchange_of(f) == ExchangeType.IKE_SA_INIT)]
    pair.advance(112.0)  # the new SA's IKE_SA_INIT never arrives: it gives up
    assert old.established and pair.i is old
    assert any(isinstance(e, SaFailed) for e in pair.i_events)
    drop_init["on"] = False
    pair.advance(140.0)
    assert old.closed and pair.i.established and pair.i is not old
    assert len(pair.events("i", ReauthStarted)) == 2


@pytest.mark.parametrize("side", ["i", "r"])
def test_rekey_keeps_narrow_selectors_whoever_starts_it(backend, side):
    """Each side sends its own selectors as TSi when it starts the rekey (§2.9): a SeGW that
    rekeys must not send the FAP's selectors as its own."""
    core, fap_host = selector("10.99.0.0/16"), selector("100.65.0.1/32")
    pair = _up(backend, _fap(local_ts=(fap_host,), remote_ts=(core,)),
               _segw(local_ts=(core,), remote_ts=(fap_host,)))
    getattr(pair, side).rekey_child()
    pair.run()
    assert not pair.events("i", ChildSaFailed) and not pair.events("r", ChildSaFailed)
    ((child_i,), (child_r,)) = pair.i.children, pair.r.children
    assert (child_i.ts_local, child_i.ts_remote) == ((fap_host,), (core,))
    assert (child_r.ts_local, child_r.ts_remote) == ((core,), (fap_host,))


@pytest.mark.parametrize("side", ["i", "r"])
def test_ike_rekey_keeps_fragmenting(backend, side):
    """Both sides announced RFC 7383 support in IKE_SA_INIT; the rekeyed IKE SA has no
    IKE_SA_INIT of its own, so it must keep what the peer said (else large messages on it
    go out whole and a fragment-dropping NAPT loses them)."""
    pair = _up(backend)
    assert pair.i.peer_fragmentation and pair.r.peer_fragmentation
    getattr(pair, side).rekey()
    pair.run()
    assert pair.i.peer_fragmentation and pair.r.peer_fragmentation


@pytest.mark.parametrize("rekeying", ["queued", "outstanding"])
def test_child_rekey_interrupted_by_an_ike_rekey_is_rescheduled(backend, rekeying):
    """A CHILD rekey that was queued or in flight when the IKE SA was rekeyed is dropped with
    the old IKE SA; the CHILD SA must still be rekeyed later on the new one (seen in CI with a
    strongSwan SeGW under load: CHILD SPIs stopped changing after such an IKE rekey)."""
    # Only the FAP rekeys its CHILD SA (as with a strongSwan SeGW left at its 1 h default).
    pair = _up(backend, _fap(child_lifetime=ChildLifetime(rekey_time=100.0, life_time=130.0)),
               _segw(child_lifetime=ChildLifetime(rekey_time=None, life_time=None)))
    (child,) = pair.i.children
    pair.i.rekey()                      # the IKE rekey goes out first ...
    pair.i.rekey_child(child)           # ... the CHILD rekey waits behind it
    if rekeying == "outstanding":
        # The CHILD rekey is in flight when the peer's IKE rekey completes the hand-over.
        pair.i.tasks.drop_queued(ExchangeType.CREATE_CHILD_SA)
        pair.run()
        pair.i.rekey_child()
        pair.r.rekey()
    pair.run()
    assert len(pair.events("i", IkeSaRekeyed)) >= 1
    before = set(_matched(pair))
    pair.advance(pair.i._now + 200.0)
    after = set(_matched(pair))
    assert pair.i.established and after and after.isdisjoint(before), (before, after)


@pytest.mark.parametrize("side", ["i", "r"])
def test_spi_tag_marks_every_spi_the_responder_allocates(backend, side):
    """A multi-process SeGW's worker index rides in the first octet of each SPI it draws:
    the first responder SPI, its own SPI in IKE rekeys either side starts (SPIi when it
    starts one), and the inbound ESP SPIs of CHILD SAs and their rekeys."""
    pair = _up(backend, r=_segw(spi_tag=0xA7))
    r = pair.r
    assert r.spi_r[0] == 0xA7
    assert all(c.spi_in[0] == 0xA7 for c in r.children)
    getattr(pair, side).rekey_child()
    pair.run()
    getattr(pair, side).rekey()
    pair.run()
    new = pair.r
    assert new is not r and new.established
    own = new.spi_i if new.is_initiator else new.spi_r
    assert own[0] == 0xA7 and new.is_initiator == (side == "r")
    assert new.children and all(c.spi_in[0] == 0xA7 for c in new.children)
