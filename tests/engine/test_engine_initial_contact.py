"""N(INITIAL_CONTACT) in IKE_AUTH (RFC 7296 §2.4): sent only when asked, reported by the
responder only for an authenticated peer, and a one-shot DELETE that closes an SA at once."""

from __future__ import annotations

from engine_pair import FAP_ID, Pair, fap_settings, segw_settings
from ikecp.const import ConfigAttr, ExchangeType, NotifyType, ProtocolId
from ikecp.cp import (
    AddressPool,
    CpRegistry,
    NatInfoHandler,
    NatInfoProvider,
    PoolProvider,
    RequestHandler,
)
from ikecp.engine import PskAuthenticator
from ikecp.events import InitialContact, SaDeleted, SaFailed
from ikecp.message import Delete, Notify


def _auth_request(pair: Pair, backend):
    """The IKE_AUTH request as the responder decrypted it."""
    flight = next(f for f in pair.log if f.to_responder and f.datagram.encapsulated)
    data = flight.wire[4:]
    return backend.open_message(pair.r.cipher_in, data)


def test_initial_contact_sent_and_reported_after_authentication(backend):
    pair = Pair(backend, fap_settings(initial_contact=True), segw_settings(), nat=True).run()
    assert pair.i.established and pair.r.established
    request = _auth_request(pair, backend)
    assert [n for n in request.payloads if isinstance(n, Notify)
            and n.notify_type == NotifyType.INITIAL_CONTACT]
    assert pair.events("r", InitialContact) == [InitialContact(FAP_ID)]
    assert not pair.events("i", InitialContact)


def test_no_initial_contact_unless_asked(backend):
    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    assert pair.r.established
    request = _auth_request(pair, backend)
    assert not [n for n in request.payloads if isinstance(n, Notify)
                and n.notify_type == NotifyType.INITIAL_CONTACT]
    assert not pair.events("r", InitialContact)


def test_initial_contact_from_an_unauthenticated_peer_is_not_reported(backend):
    fap = fap_settings(initial_contact=True, auth=PskAuthenticator(b"not the right key"))
    pair = Pair(backend, fap, segw_settings(), nat=True).run()
    assert not pair.r.established
    assert pair.events("r", SaFailed)
    assert not pair.events("r", InitialContact)


def test_delete_without_waiting_closes_at_once_and_frees_the_inner_ip(backend):
    pool = AddressPool("10.1.0.0/29")
    segw = segw_settings(CpRegistry().add_provider(PoolProvider(pool))
                         .add_provider(NatInfoProvider()))
    fap = fap_settings(CpRegistry().add_handler(RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS))
                       .add_handler(NatInfoHandler()))
    pair = Pair(backend, fap, segw, nat=True).run()
    assert len(pool.in_use) == 1
    pair.r.delete(wait=False)
    assert pair.r.closed and pool.in_use == set()
    events = []
    while (ev := pair.r.next_event()) is not None:
        events.append(ev)
    assert events[-1] == SaDeleted(by_peer=False)  # after ChildSaClosed for its CHILD SA
    (dg,) = pair.r.datagrams_to_send(pair.clock)
    msg = backend.open_message(pair.i.cipher_in, dg.data)
    assert msg.exchange == ExchangeType.INFORMATIONAL
    assert msg.payloads == (Delete(ProtocolId.IKE, 0),)
    # Never retransmitted: no timer left.
    assert pair.r.next_timer() is None
    # The peer, if it still lives, takes it as an ordinary DELETE.
    pair.i.receive_datagram(dg.data, (pair.r_addr[0], 4500), pair.clock, local_port=4500)
    assert pair.i.closed
