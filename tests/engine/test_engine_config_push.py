"""Fresh NAT info after a NAT rebinding: the responder pushes CP(CFG_SET) with
EXTERNAL_SOURCE_IP4_NAT_INFO in an INFORMATIONAL exchange, the initiator answers CFG_ACK
(RFC 7296 §1.4, §3.15). Peers that do not take it leave the SA untouched."""

from __future__ import annotations

import pytest
from engine_pair import NAT_PUBLIC_IP, Pair, fap_settings, segw_settings
from ikecp.const import CfgType, ConfigAttr, ExchangeType, HeaderFlag, NotifyType
from ikecp.cp import CpRegistry, Mode, NatInfoHandler, NatInfoProvider, PushMode, RequestHandler
from ikecp.cp.nat_info import encode
from ikecp.errors import RemoteProtocolError
from ikecp.events import (
    ConfigSetAnswered,
    IkeSaEstablished,
    PublicAddressLearned,
    RemoteAddressChanged,
)
from ikecp.message import CP, ConfigAttribute, Message, Notify

NAT_INFO = ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO
FAP_NATT = ("100.64.0.2", 4500)


def _segw(push: PushMode = PushMode.REQUESTED):
    return segw_settings(CpRegistry().add_provider(NatInfoProvider(push=push)))


def _rebind(pair: Pair) -> None:
    """The NAPT forgets every mapping: the FAP's next packet leaves from a new port."""
    pair._map.clear()


def _informational(pair: Pair, to_responder: bool, backend) -> list:
    out = []
    for f in pair.log:
        if f.to_responder != to_responder or not f.datagram.encapsulated:
            continue
        sa = pair.r if to_responder else pair.i
        msg = backend.open_message(sa.cipher_in, f.wire[4:])
        if msg.exchange == ExchangeType.INFORMATIONAL:
            out.append(msg)
    return out


def test_rebinding_pushes_the_new_public_address(backend):
    pair = Pair(backend, fap_settings(), _segw(), nat=True).run()
    spis = (pair.i.spi_i, pair.i.spi_r)
    (first,) = pair.events("i", PublicAddressLearned)
    assert (first.address, first.port) == pair.public(FAP_NATT) and not first.pushed
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    new = pair.public(FAP_NATT)
    assert (first.address, first.port) != new and new[0] == NAT_PUBLIC_IP
    learned = pair.events("i", PublicAddressLearned)
    assert learned[1:] == [PublicAddressLearned(new[0], new[1], NAT_INFO, pushed=True)]
    assert pair.events("r", ConfigSetAnswered) == [ConfigSetAnswered((NAT_INFO,), (NAT_INFO,))]
    # The request carried CFG_SET with the 6-octet value; the answer a zero-length CFG_ACK.
    (push,) = [m for m in _informational(pair, False, backend) if not m.flags & 0x20]
    (cp,) = [p for p in push.payloads if isinstance(p, CP)]
    assert cp.cfg_type == CfgType.CFG_SET and [(a.type, a.value) for a in cp.attributes] == \
        [(NAT_INFO, encode(*new))]
    ack = [m for m in _informational(pair, True, backend) if m.flags & 0x20]
    acks = [p for m in ack for p in m.payloads if isinstance(p, CP)]
    assert [(a.cfg_type, [(x.type, x.value) for x in a.attributes]) for a in acks] == \
        [(CfgType.CFG_ACK, [(NAT_INFO, b"")])]
    # No teardown: the same IKE SA on both sides, one establishment each.
    assert (pair.i.spi_i, pair.i.spi_r) == spis and pair.i.established and pair.r.established
    assert len(pair.events("i", IkeSaEstablished)) == 1


def test_the_initiators_liveness_check_reveals_the_rebinding_within_one_interval(backend):
    interval = 10.0
    pair = Pair(backend, fap_settings(dpd_interval=interval), _segw(), nat=True).run()
    _rebind(pair)
    rebound_at = pair.clock
    for _ in range(200):
        if len(pair.events("i", PublicAddressLearned)) == 2:
            break
        assert pair.step()
    pushed = pair.events("i", PublicAddressLearned)[-1]
    assert pushed.pushed and (pushed.address, pushed.port) == pair.public(FAP_NATT)
    assert pair.clock - rebound_at <= interval
    assert pair.events("r", RemoteAddressChanged)


def test_no_push_to_a_peer_that_did_not_ask(backend):
    fap = fap_settings(CpRegistry().add_handler(NatInfoHandler(Mode.NEVER)))
    pair = Pair(backend, fap, _segw(), nat=True).run()
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    assert pair.events("r", RemoteAddressChanged)
    assert not pair.events("r", ConfigSetAnswered)
    assert [m.payloads for m in _informational(pair, False, backend)] == [()]


def test_push_mode_never(backend):
    pair = Pair(backend, fap_settings(), _segw(PushMode.NEVER), nat=True).run()
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    assert pair.events("r", RemoteAddressChanged) and not pair.events("r", ConfigSetAnswered)


def test_a_peer_without_the_extension_answers_empty_and_keeps_its_sa(backend):
    """``always`` pushes to a peer that never asked (and does not know the attribute): its
    empty answer is reported, the SA stays, and it is not pushed to again."""
    fap = fap_settings(CpRegistry().add_handler(RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS)))
    pair = Pair(backend, fap, _segw(PushMode.ALWAYS), nat=True).run()
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    assert pair.events("r", ConfigSetAnswered) == [ConfigSetAnswered((NAT_INFO,), ())]
    assert not pair.events("i", PublicAddressLearned)
    assert pair.i.established and pair.r.established
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    assert len(pair.events("r", RemoteAddressChanged)) == 2
    assert len(pair.events("r", ConfigSetAnswered)) == 1


class Intolerant(NatInfoHandler):
    """A peer that answers an INFORMATIONAL with CP in it with an error notify."""

    def pushed(self, ctx, values):
        raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "CP in INFORMATIONAL")


def test_an_error_notify_in_answer_leaves_the_sa_up(backend):
    fap = fap_settings(CpRegistry().add_handler(Intolerant()))
    pair = Pair(backend, fap, _segw(), nat=True).run()
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    assert pair.events("r", ConfigSetAnswered) == [
        ConfigSetAnswered((NAT_INFO,), (), NotifyType.INVALID_SYNTAX)]
    assert pair.i.established and pair.r.established
    pair.i.check_liveness()  # and the SA still carries exchanges both ways
    pair.run()
    assert pair.i.established and pair.r.established


@pytest.mark.parametrize("value", [b"", b"\x01\x02\x03", b"\x01" * 7])
def test_a_malformed_pushed_value_is_not_acknowledged(backend, value):
    class Odd(NatInfoProvider):
        def push(self, ctx):
            return [value]

    pair = Pair(backend, fap_settings(), segw_settings(CpRegistry().add_provider(Odd())),
                nat=True).run()
    _rebind(pair)
    pair.i.check_liveness()
    pair.run()
    assert pair.events("r", ConfigSetAnswered) == [ConfigSetAnswered((NAT_INFO,), ())]
    assert len(pair.events("i", PublicAddressLearned)) == 1
    assert pair.i.established and pair.r.established


def test_odd_cp_in_informational_is_answered_without_harm(backend):
    """An authenticated INFORMATIONAL with a CFG_SET of unknown types, or a CFG_REQUEST,
    gets an answer without CP; two CPs get INVALID_SYNTAX; the SA stays up."""
    pair = Pair(backend, fap_settings(), _segw(), nat=True).run()
    r = pair.r
    cases = [
        (CP(CfgType.CFG_SET, (ConfigAttribute(999, b"x"), ConfigAttribute(16385, b""))),),
        (CP(CfgType.CFG_REQUEST, (ConfigAttribute(NAT_INFO, b""),)),),
        (CP(CfgType.CFG_SET, ()), CP(CfgType.CFG_SET, ())),
    ]
    answers = []
    for mid, payloads in enumerate(cases):
        msg = Message(r.spi_i, r.spi_r, ExchangeType.INFORMATIONAL, 0, mid, payloads)
        pair.i.receive_datagram(backend.seal_message(r.cipher_out, msg),
                                (pair.r_addr[0], 4500), pair.clock, local_port=4500)
        (reply,) = pair.i.datagrams_to_send(pair.clock)
        answer = backend.open_message(r.cipher_in, reply.data)
        assert answer.flags & HeaderFlag.RESPONSE
        answers.append(answer.payloads)
    assert answers[:2] == [(), ()]
    assert [type(p) for p in answers[2]] == [Notify]
    assert answers[2][0].notify_type == NotifyType.INVALID_SYNTAX
    assert pair.i.established
    events = []
    while (ev := pair.i.next_event()) is not None:
        events.append(ev)
    assert not [e for e in events if isinstance(e, PublicAddressLearned)]


def test_a_push_with_nothing_left_to_say_is_a_plain_liveness_check(backend):
    """The peer moves away and back before the queued CFG_SET goes out: the request carries
    no CP, and the peer is not marked as refusing pushes."""
    pair = Pair(backend, fap_settings(), _segw(), nat=True).run()
    home = pair.r.remote
    r = pair.r
    r.check_liveness()  # occupy the window so the push waits in the queue
    r.track_address(("198.51.100.1", 1), 4500)
    r.track_address(home, 4500)
    pair.run()
    assert not pair.events("r", ConfigSetAnswered)
    assert not r.cp_context().push_refused and r.established
    assert [m.payloads for m in _informational(pair, False, backend)
            if not m.flags & 0x20] == [(), ()]
