"""The peer deletes our CHILD SA with an INFORMATIONAL DELETE for ESP (RFC 7296 §1.4.1): the
engine reports it and answers with its own SPI of the pair; unknown SPIs are reported to no
one. The IKE SA stays up either way."""

from __future__ import annotations

from engine_pair import Pair, fap_settings, segw_settings
from ikecp.const import ExchangeType, ProtocolId
from ikecp.events import ChildSaDeleted
from ikecp.message import Delete, Message


def _peer_deletes(pair: Pair, backend, spis: tuple[bytes, ...]):
    """The SeGW sends DELETE(ESP, spis); returns the FAP's decrypted answer."""
    r = pair.r
    msg = Message(r.spi_i, r.spi_r, ExchangeType.INFORMATIONAL, 0, 0,
                  (Delete(ProtocolId.ESP, 4, spis),))
    pair.i.receive_datagram(backend.seal_message(r.cipher_out, msg), (pair.r_addr[0], 4500),
                            pair.clock, local_port=4500)
    (reply,) = pair.i.datagrams_to_send(pair.clock)
    return backend.open_message(r.cipher_in, reply.data)


def test_peer_deleting_our_child_sa_is_reported_and_answered(backend):
    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    spi_in, spi_out = pair.i.child_spis
    assert pair.r.child_spis == (spi_out, spi_in)
    answer = _peer_deletes(pair, backend, (spi_out,))
    assert answer.payloads == (Delete(ProtocolId.ESP, 4, (spi_in,)),)
    events = []
    while (ev := pair.i.next_event()) is not None:
        events.append(ev)
    assert ChildSaDeleted((spi_out,)) in events
    assert pair.i.child_spis is None and pair.i.established


def test_deleting_unknown_child_spis_is_answered_empty_and_not_reported(backend):
    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    before = pair.i.child_spis
    answer = _peer_deletes(pair, backend, (b"\xde\xad\xbe\xef",))
    assert answer.payloads == ()
    events = []
    while (ev := pair.i.next_event()) is not None:
        events.append(ev)
    assert not [e for e in events if isinstance(e, ChildSaDeleted)]
    assert pair.i.child_spis == before and pair.i.established
