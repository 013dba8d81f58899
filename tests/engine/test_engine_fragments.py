"""IKE fragmentation (RFC 7383) through the engine, in memory: both roles fragment an
IKE_AUTH that carries an RSA-4096 certificate chain; lost, forged, duplicated and reordered
fragments; whole fragment sets retransmitted and answered from the reply cache; the
reassembly bounds."""

from __future__ import annotations

import dataclasses
import functools

import pytest
from engine_pair import Pair, fap_settings, segw_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from ikecp import pki
from ikecp.const import ExchangeType, NotifyType, PayloadType
from ikecp.engine import FragmentPolicy, Identity, IkeProposal
from ikecp.engine.cert_auth import CertAuthenticator
from ikecp.engine.fragments import FragmentDropped, Reassembler, split
from ikecp.errors import IntegrityError
from ikecp.events import DatagramDropped, IkeSaEstablished
from ikecp.lab.ca import CertAuthority
from ikecp.message import SKF, Cert, IDi, Message, Notify
from test_engine_cert_auth import NOW, pinned

FAP_NAME = "fap-0001.example.net"
SMALL = 576  # IP datagram: 548 octets of IKE message on port 500, 544 on 4500
SMALL_POLICY = FragmentPolicy(size=SMALL)


@functools.cache
def big_pki():
    """Root → RSA-4096 intermediate → RSA-4096 leaves: each IKE_AUTH carries > 3 KB."""
    root = CertAuthority("operator root", now=NOW)
    sub = root.intermediate("femto sub-CA", key_type="rsa4096")
    fap = sub.issue([FAP_NAME], key_type="rsa4096")
    segw = sub.issue(["segw.example.net"], key_type="rsa4096")
    return root, fap, segw


def settings(fap_policy=SMALL_POLICY, segw_policy=SMALL_POLICY, **kw):
    root, fap_cert, segw_cert = big_pki()
    trust = pki.TrustStore([root.cert])
    segw_id = Identity.der_dn(pki.subject_der(segw_cert.cert))
    fap = fap_settings(auth=CertAuthenticator(fap_cert.credential, trust),
                       wall_clock=pinned(NOW), fragmentation=fap_policy, **kw)
    fap = dataclasses.replace(fap, local_id=Identity.fqdn(FAP_NAME), remote_id=segw_id)
    segw = segw_settings(auth=CertAuthenticator(segw_cert.credential, trust),
                         wall_clock=pinned(NOW), fragmentation=segw_policy, **kw)
    return fap, dataclasses.replace(segw, local_id=segw_id)


def skf(flight) -> SKF | None:
    return _last_skf(flight.datagram.data)


def _last_skf(data: bytes) -> SKF | None:
    from ikecp import backend

    msg = backend.decode_message(data)
    last = msg.payloads[-1] if msg.payloads else None
    return last if isinstance(last, SKF) else None


def auth_fragments(pair: Pair, to_responder: bool) -> list:
    return [f for f in pair.log if f.to_responder == to_responder and skf(f) is not None]


def announced(pair: Pair, backend, to_responder: bool) -> bool:
    for f in pair.log:
        msg = backend.decode_message(f.datagram.data)
        if f.to_responder == to_responder and msg.exchange == ExchangeType.IKE_SA_INIT:
            return any(isinstance(p, Notify) and
                       p.notify_type == NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
                       for p in msg.payloads)
    raise AssertionError("no IKE_SA_INIT")


def drops(pair: Pair, side: str) -> list[str]:
    return [e.reason for e in pair.events(side, DatagramDropped)]


# --- the handshake ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["aes256gcm16-prfsha256-x25519", "aes256-sha256-x25519",
                                   "chacha20poly1305-prfsha512-x25519"])
def test_ike_auth_fragmented_both_ways(backend, suite) -> None:
    pair = Pair(backend, *settings(ike_proposals=(IkeProposal.parse(suite),)), nat=True).run()
    assert pair.events("i", IkeSaEstablished) and pair.events("r", IkeSaEstablished)
    assert announced(pair, backend, True) and announced(pair, backend, False)
    assert pair.i.peer_fragmentation and pair.r.peer_fragmentation
    for to_responder in (True, False):
        frags = auth_fragments(pair, to_responder)
        totals = {skf(f).total_fragments for f in frags}
        assert len(totals) == 1 and len(frags) == totals.pop() >= 6
        # After the float every fragment carries the non-ESP marker: the 576-octet IP
        # datagram leaves 576 - 20 - 8 octets of UDP payload.
        assert all(len(f.wire) <= SMALL - 28 for f in frags)
        assert [skf(f).fragment_number for f in frags] == list(range(1, len(frags) + 1))
        assert skf(frags[0]).next_payload != 0
        assert all(skf(f).next_payload == 0 for f in frags[1:])
    request = pair.opened(True, ExchangeType.IKE_AUTH)
    assert request.first(IDi).data == FAP_NAME.encode()
    assert len(request.find(Cert)) == 2  # leaf and intermediate
    assert sum(len(c.data) for c in request.find(Cert)) > 2000
    assert pair.i.stats.retransmissions == 0
    assert pair.i._reassembly is None and pair.r._reassembly is None  # freed when done


def test_small_messages_are_not_fragmented(backend) -> None:
    pair = Pair(backend, fap_settings(fragmentation=FragmentPolicy(size=SMALL)),
                segw_settings(fragmentation=FragmentPolicy(size=SMALL))).run()
    assert pair.i.established and pair.i.peer_fragmentation
    assert not auth_fragments(pair, True) and not auth_fragments(pair, False)


@pytest.mark.parametrize(("fap_mode", "segw_mode", "fap_frags", "segw_frags"), [
    ("yes", "no", False, False),      # the SeGW does not announce: nobody fragments
    ("no", "yes", False, False),      # the FAP does not announce: the SeGW does not answer it
    ("accept", "yes", False, True),   # announces, never fragments its own
    ("force", "no", True, False),     # fragments without the peer's word; "no" still accepts
])
def test_modes(backend, fap_mode, segw_mode, fap_frags, segw_frags) -> None:
    fap, segw = settings(FragmentPolicy(fap_mode, SMALL), FragmentPolicy(segw_mode, SMALL))
    pair = Pair(backend, fap, segw).run()
    assert pair.i.established and pair.r.established
    assert announced(pair, backend, True) == (fap_mode != "no")
    assert announced(pair, backend, False) == (fap_mode != "no" and segw_mode != "no")
    assert bool(auth_fragments(pair, True)) == fap_frags
    assert bool(auth_fragments(pair, False)) == segw_frags


# --- damage in flight ------------------------------------------------------------------------


def _once(predicate):
    """A hook that applies ``predicate`` (flights -> flights) to the first batch that
    carries fragments, and lets everything else through."""
    state = {"done": False}

    def hook(flights):
        if state["done"] or not any(skf(f) for f in flights):
            return flights
        state["done"] = True
        return predicate(flights)
    return hook


def test_missing_fragment_recovered_by_retransmitting_the_whole_set(backend) -> None:
    lost = _once(lambda fl: [f for f in fl if not (skf(f) and skf(f).fragment_number == 3)])
    pair = Pair(backend, *settings(), nat=True, hook=lost).run()
    assert pair.i.established and pair.r.established
    assert pair.i.stats.retransmissions == 1
    total = skf(auth_fragments(pair, True)[0]).total_fragments
    assert len(auth_fragments(pair, True)) == 2 * total  # the whole set, twice
    # Fragments 1 and 2 are held already; 3 completes the message, after which 4.. belong
    # to an answered request.
    held_again = [r for r in drops(pair, "r") if "duplicate fragment" in r]
    assert held_again == ["fragment dropped: duplicate fragment 1/7",
                          "fragment dropped: duplicate fragment 2/7"]
    late = [r for r in drops(pair, "r") if "of an answered request" in r]
    assert len(late) == total - 3


def test_forged_fragments_are_not_kept(backend) -> None:
    def forge(flights):
        out = []
        for f in flights:
            s = skf(f)
            if s is not None and s.fragment_number == 2:
                bad = bytearray(f.wire)
                bad[-1] ^= 1  # ICV
                out.append(dataclasses.replace(f, wire=bytes(bad)))
                # A forged fragment claiming a larger total must not reset the set (§2.6).
                bigger = bytearray(f.wire)
                at = len(f.wire) - len(f.datagram.data) + 28 + 6  # Total Fragments
                bigger[at:at + 2] = (s.total_fragments + 1).to_bytes(2, "big")
                out.append(dataclasses.replace(f, wire=bytes(bigger)))
            out.append(f)
        return out

    pair = Pair(backend, *settings(), nat=True, hook=_once(forge)).run()
    assert pair.i.established and pair.r.established
    assert pair.i.stats.retransmissions == 0
    assert drops(pair, "r").count("integrity check failed") == 2


def test_duplicated_and_reordered_fragments(backend) -> None:
    def shuffle(flights):  # last fragment first, each one twice
        frags = [f for f in flights if skf(f)]
        return [f for f in flights if not skf(f)] + [x for f in frags[::-1] for x in (f, f)]

    pair = Pair(backend, *settings(), nat=True, hook=_once(shuffle)).run()
    assert pair.i.established and pair.r.established
    assert pair.i.stats.retransmissions == 0
    total = skf(auth_fragments(pair, True)[0]).total_fragments
    assert len([r for r in drops(pair, "r") if "duplicate fragment" in r]) == total - 1
    # The copy of fragment 1 came after the message was complete: it reads as a
    # retransmitted request and brings the cached response set once more (§2.6.1).
    assert pair.r.stats.cached_replies == 1


def test_lost_response_set_is_resent_whole_from_the_reply_cache(backend) -> None:
    """The whole fragmented IKE_AUTH response is lost: the initiator resends its request
    set; fragment 1 of it brings the cached response set back, the others are ignored."""
    state = {"dropped": False}

    def lose_response(flights):
        if state["dropped"] or not any(skf(f) and not f.to_responder for f in flights):
            return flights
        state["dropped"] = True
        return [f for f in flights if f.to_responder or not skf(f)]

    pair = Pair(backend, *settings(), nat=True, hook=lose_response).run()
    assert pair.i.established and pair.r.established
    assert pair.i.stats.retransmissions == 1
    assert pair.r.stats.cached_replies == 1
    total = skf(auth_fragments(pair, False)[0]).total_fragments
    assert len(auth_fragments(pair, False)) == 2 * total
    first_set = [f.datagram.data for f in auth_fragments(pair, False)[:total]]
    assert [f.datagram.data for f in auth_fragments(pair, False)[total:]] == first_set
    req_total = skf(auth_fragments(pair, True)[0]).total_fragments
    ignored = [r for r in drops(pair, "r") if "of an answered request" in r]
    assert len(ignored) == req_total - 1


def test_forged_first_fragment_of_an_answered_request_is_not_answered(backend) -> None:
    pair = Pair(backend, *settings(), nat=True).run()
    assert pair.r.established
    first = auth_fragments(pair, True)[0]
    bad = bytearray(first.datagram.data)
    bad[-1] ^= 1
    before = len(pair.r._outbox)
    pair.r.receive_datagram(bytes(bad), pair.r.remote, pair.clock, local_port=4500)
    assert len(pair.r._outbox) == before and pair.r.stats.cached_replies == 0
    pair.r.receive_datagram(first.datagram.data, pair.r.remote, pair.clock, local_port=4500)
    total = skf(first).total_fragments
    resent = pair.r.datagrams_to_send(pair.clock)
    assert pair.r.stats.cached_replies == 1 and len(resent) == total


# --- reassembly bounds -----------------------------------------------------------------------


def test_partial_message_expires_and_frees_its_memory(backend) -> None:
    policy = FragmentPolicy(size=SMALL, timeout=5.0)
    # Only fragment 1 arrives, and the initiator never retransmits within the time limit.
    fap, segw = settings(segw_policy=policy)
    state = {"seen": False}

    def only_first(flights):
        out = [f for f in flights if not skf(f) or (skf(f).fragment_number == 1
                                                    and not state["seen"])]
        state["seen"] = state["seen"] or any(skf(f) for f in flights)
        return out

    pair = Pair(backend, fap, segw, nat=True, hook=only_first)
    for _ in range(4):
        pair.step()
    r = pair.r
    assert r._reassembly is not None and r._reassembly.held > 0
    deadline = r.next_timer()
    assert deadline is not None and deadline <= pair.clock + 5.0
    r.handle_timer(deadline)
    assert r._reassembly is None
    assert any("timed out" in e.reason for e in iter(r.next_event, None)
               if isinstance(e, DatagramDropped))


class _Keys:
    """A sealed fragment factory over one SK key, for the Reassembler alone."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.cipher = backend.SkCipher(20, bytes(range(36)), 0, b"")
        self.msg = Message(bytes(range(8)), bytes(range(8, 16)), ExchangeType.IKE_AUTH, 0x08,
                           1, (IDi(2, b"x" * 3000),))

    def fragments(self, limit: int) -> list[tuple[Message, SKF, bytes]]:
        out = []
        for data in split(self.backend, self.cipher, self.msg, limit):
            msg = self.backend.decode_message(data)
            out.append((msg, msg.payloads[-1], data))
        return out

    def add(self, reasm: Reassembler, frag, now: float = 0.0):
        return reasm.add(self.backend, self.cipher, *frag, now)


def test_reassembler_in_any_order_and_totals(backend) -> None:
    k = _Keys(backend)
    frags = k.fragments(300)
    assert len(frags) >= 4
    reasm = Reassembler(FragmentPolicy())
    for f in frags[:0:-1]:
        assert k.add(reasm, f) is None
    whole = k.add(reasm, frags[0])
    assert whole is not None and whole.payloads == k.msg.payloads and reasm.held == 0

    # A smaller total than the set being collected is dropped; a larger one (verified)
    # restarts the set (§2.6).
    reasm = Reassembler(FragmentPolicy())
    k.add(reasm, frags[1])
    fewer = k.fragments(600)
    with pytest.raises(FragmentDropped, match="message has"):
        k.add(reasm, fewer[0])
    more = k.fragments(250)
    assert len(more) > len(frags)
    for f in more:
        result = k.add(reasm, f)
    assert result is not None and result.payloads == k.msg.payloads


def test_reassembler_bounds(backend) -> None:
    k = _Keys(backend)
    frags = k.fragments(300)
    with pytest.raises(FragmentDropped, match="allowed"):
        k.add(Reassembler(FragmentPolicy(max_fragments=len(frags) - 1)), frags[0])
    reasm = Reassembler(FragmentPolicy(max_message=500))
    with pytest.raises(FragmentDropped, match="abandoned"):
        for f in frags:
            k.add(reasm, f)
    assert reasm.held == 0
    reasm = Reassembler(FragmentPolicy(max_memory=400))
    with pytest.raises(FragmentDropped, match="limit 400"):
        for f in frags:
            k.add(reasm, f)
    assert reasm.held <= 400
    # A forged fragment is refused before it is kept.
    msg, s, data = frags[0]
    bad = bytearray(data)
    bad[-3] ^= 0x40
    reasm = Reassembler(FragmentPolicy())
    with pytest.raises(IntegrityError):
        k.add(reasm, (msg, s, bytes(bad)))
    assert reasm.held == 0 and reasm.deadline is None


@pytest.mark.parametrize("limit", [200, 333, 548, 1252])
def test_split_respects_the_limit_for_aead_and_cbc(backend, limit) -> None:
    k = _Keys(backend)
    for cipher in (k.cipher, backend.SkCipher(12, bytes(32), 12, bytes(32))):
        out = split(backend, cipher, k.msg, limit)
        assert all(len(d) <= limit for d in out)
        assert len(out) > 1
        # Little room wasted: all but the last fill the limit to within one CBC block.
        assert all(len(d) > limit - 16 for d in out[:-1])
        for i, d in enumerate(out, 1):
            assert d[16] == PayloadType.SKF
            np, number, total, _ = cipher.open_fragment(d)
            assert (number, total) == (i, len(out))
            assert (np != 0) == (i == 1)


def test_fragment_size_counts_the_whole_ip_datagram() -> None:
    p = FragmentPolicy()
    assert p.max_ike_message("198.51.100.10", False) == 1280 - 20 - 8
    assert p.max_ike_message("198.51.100.10", True) == 1280 - 20 - 8 - 4
    assert p.max_ike_message("2001:db8::1", False) == 1280 - 40 - 8
    auto = FragmentPolicy(size=0)
    assert auto.max_ike_message("198.51.100.10", False) == 576 - 28
    assert auto.max_ike_message("2001:db8::1", True) == 1280 - 48 - 4
    for bad in ({"mode": "maybe"}, {"size": 100}, {"max_fragments": 0}, {"timeout": 0}):
        with pytest.raises(ValueError):
            FragmentPolicy(**bad)


@settings_(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_reassembler_on_hostile_fragments(data) -> None:
    """Mutated, truncated and replayed fragments: only the documented exceptions, memory
    within bounds, and a genuine set still completes afterwards."""
    from ikecp._backend import load

    backend = load(data.draw(st.sampled_from(["python", "native"])))
    k = _Keys(backend)
    frags = k.fragments(300)
    policy = FragmentPolicy(max_memory=4000)  # the message is about 3 KB
    reasm = Reassembler(policy)
    for _ in range(data.draw(st.integers(1, 12))):
        _, _, wire = data.draw(st.sampled_from(frags))
        buf = bytearray(wire)
        for _ in range(data.draw(st.integers(0, 3))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            del buf[data.draw(st.integers(0, len(buf))):]
        try:
            msg = backend.decode_message(bytes(buf))
        except ValueError:
            continue
        last = msg.payloads[-1] if msg.payloads else None
        if not isinstance(last, SKF):
            continue
        try:
            whole = reasm.add(backend, k.cipher, msg, last, bytes(buf), 0.0)
        except (FragmentDropped, IntegrityError, ValueError):
            whole = None
        if whole is not None:
            assert whole.payloads == k.msg.payloads
        assert reasm.held <= policy.max_memory
    fresh = k.fragments(300)  # new IVs: none of these is a duplicate by content
    results = []
    for f in fresh:
        try:
            results.append(k.add(reasm, f))
        except FragmentDropped:
            results.append(None)
    done = [r for r in results if r is not None]
    # Held pieces of the earlier set are as good as the new ones (same plaintext, verified).
    assert done and done[-1].payloads == k.msg.payloads


def test_established_sas_shrug_off_mangled_fragments(backend) -> None:
    """Every fragment of the handshake, mangled hundreds of ways and fed to both SAs: each
    one is dropped for a stated reason (never an internal error) or, if the mangling left it
    intact, handled as the replay it is; nothing is held, and the SAs still answer a liveness
    check."""
    import random

    from ikecp.events import LivenessConfirmed

    pair = Pair(backend, *settings(), nat=True).run()
    sas = (pair.i, pair.r)

    def handled() -> int:
        return sum(sa.stats.dropped + sa.stats.cached_replies for sa in sas)

    before = handled()
    rng = random.Random(7383)
    frags = [(f.to_responder, f.datagram.data) for f in pair.log if skf(f)]
    for _ in range(400):
        to_responder, data = rng.choice(frags)
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.3:
            del buf[rng.randrange(len(buf)):]
        sa = pair.r if to_responder else pair.i
        sa.receive_datagram(bytes(buf), sa.remote, pair.clock, local_port=sa.local[1])
        sa.datagrams_to_send(pair.clock)  # cached answers to an intact fragment 1, if any
    assert handled() - before == 400
    for sa in sas:
        reasons = [e.reason for e in iter(sa.next_event, None) if isinstance(e, DatagramDropped)]
        assert reasons and not [r for r in reasons if "internal error" in r]
        assert sa.established and sa._reassembly is None
    pair.i.check_liveness()
    pair.run()
    assert pair.events("i", LivenessConfirmed)
