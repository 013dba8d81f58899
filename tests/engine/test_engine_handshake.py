"""IKE_SA_INIT + IKE_AUTH in memory: proposals, PSK, INVALID_KE, COOKIE, errors."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from engine_pair import FAP_ID, PSK, SEGW_ID, Pair, fap_settings, segw_settings
from ikecp.const import DhGroup, EncrId, ExchangeType, HeaderFlag, NotifyType
from ikecp.engine import ChildProposal, Identity, IkeProposal, PskAuthenticator
from ikecp.events import (
    ChildSaEstablished,
    IkeSaEstablished,
    NatDetected,
    PeerBinding,
    ProtocolErrorReceived,
    ProtocolErrorSent,
    SaDeleted,
    SaFailed,
)
from ikecp.message import KE, Message, Notify, UnknownPayload

DH = {"x25519": DhGroup.CURVE25519, "ecp256": DhGroup.ECP_256, "modp2048": DhGroup.MODP_2048}
ENCR = {"aes256gcm16": EncrId.AES_GCM_16, "aes256-sha256": EncrId.AES_CBC,
        "chacha20poly1305": EncrId.CHACHA20_POLY1305}
PRF = {"prfsha256": 5, "prfsha384": 6}


def _assert_matching_children(pair: Pair) -> None:
    (ci,) = pair.events("i", ChildSaEstablished)
    (cr,) = pair.events("r", ChildSaEstablished)
    assert ci.spi_in == cr.spi_out and ci.spi_out == cr.spi_in
    assert ci.key_i_to_r == cr.key_i_to_r and ci.key_r_to_i == cr.key_r_to_i
    assert ci.key_i_to_r != ci.key_r_to_i
    assert ci.ts_i == cr.ts_i and ci.ts_r == cr.ts_r


@pytest.mark.parametrize(("dh", "encr", "prf"), list(itertools.product(DH, ENCR, PRF)))
def test_every_proposal_combination(backend, dh, encr, prf):
    text = f"{encr}-{prf}-{dh}"
    settings = {"ike_proposals": (IkeProposal.parse(text),),
                "child_proposals": (ChildProposal.parse(encr),)}
    pair = Pair(backend, fap_settings(**settings), segw_settings(**settings)).run()
    assert pair.i.established and pair.r.established
    (est_i,) = pair.events("i", IkeSaEstablished)
    (est_r,) = pair.events("r", IkeSaEstablished)
    assert (est_i.dh, est_i.encr, est_i.prf) == (DH[dh], ENCR[encr], PRF[prf])
    assert (est_r.dh, est_r.encr, est_r.prf) == (est_i.dh, est_i.encr, est_i.prf)
    assert est_i.remote_id == SEGW_ID and est_r.remote_id == FAP_ID
    assert est_i.spi_i == est_r.spi_i and est_i.spi_r == est_r.spi_r
    _assert_matching_children(pair)


def test_responder_picks_initiators_first_acceptable_proposal(backend):
    i = fap_settings(ike_proposals=(IkeProposal.parse("aes128gcm16-prfsha384-ecp256"),
                                    IkeProposal.parse("aes256-sha256-ecp256")))
    r = segw_settings(ike_proposals=(IkeProposal.parse("aes256-sha256-ecp256-x25519"),))
    pair = Pair(backend, i, r).run()
    (est,) = pair.events("i", IkeSaEstablished)
    assert (est.encr, est.encr_key_bits, est.integ, est.dh) == (EncrId.AES_CBC, 256, 12, 19)


def test_wrong_psk_fails_on_both_sides_with_authentication_failed(backend):
    r = segw_settings(auth=PskAuthenticator(b"another secret"))
    pair = Pair(backend, fap_settings(), r).run()
    assert pair.i.closed and pair.r.closed
    (sent,) = pair.events("r", ProtocolErrorSent)
    assert sent.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert pair.events("r", SaFailed)[0].notify_type == NotifyType.AUTHENTICATION_FAILED
    assert pair.events("i", ProtocolErrorReceived)[0].notify_type == \
        NotifyType.AUTHENTICATION_FAILED
    assert not pair.events("i", IkeSaEstablished) and not pair.events("r", IkeSaEstablished)


def test_responder_with_per_peer_psk_table(backend):
    r = segw_settings(auth=PskAuthenticator(peers={FAP_ID: PSK}))
    assert Pair(backend, fap_settings(), r).run().r.established


@pytest.mark.parametrize("kwargs", [{"psk": b""}, {"peers": {FAP_ID: b""}},
                                    {"psk": PSK, "peers": {FAP_ID: b""}}])
def test_empty_psk_is_refused(kwargs):
    """An empty secret would let anyone who guesses "nothing" authenticate (issue 10 item 4:
    a peer with an empty PSK used to authenticate against ``psk = ""``)."""
    with pytest.raises(ValueError, match="empty"):
        PskAuthenticator(**kwargs)


def test_short_psk_is_accepted_with_a_warning(backend, caplog):
    with caplog.at_level("WARNING", logger="ikecp.auth"):
        short = PskAuthenticator(b"tooshort", peers={FAP_ID: b"also short"})
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("at least 16 random octets" in w for w in warnings)
    assert "tooshort" not in " ".join(warnings)  # never the secret itself
    assert "fap-0001.example.net" in warnings[1]
    pair = Pair(backend, fap_settings(auth=PskAuthenticator(b"also short")),
                segw_settings(auth=short)).run()
    assert pair.r.established


def test_initiator_rejects_responder_with_wrong_psk(backend):
    """The responder accepts (same PSK for verification) but signs with another secret."""
    class Split(PskAuthenticator):
        def sign(self, sa, octets):
            return PskAuthenticator(b"wrong").sign(sa, octets)

    r = segw_settings(auth=Split(PSK))
    pair = Pair(backend, fap_settings(), r).run()
    assert pair.events("r", IkeSaEstablished)  # it thought so, until the initiator said no
    assert pair.i.closed and pair.r.closed
    assert pair.events("i", SaFailed)[0].notify_type == NotifyType.AUTHENTICATION_FAILED
    assert pair.events("r", ProtocolErrorReceived)[0].notify_type == \
        NotifyType.AUTHENTICATION_FAILED
    assert pair.events("r", SaFailed)[0].notify_type == NotifyType.AUTHENTICATION_FAILED


def test_unexpected_peer_identity_is_refused(backend):
    r = segw_settings(remote_id=Identity.fqdn("someone-else.example.net"))
    pair = Pair(backend, fap_settings(), r).run()
    assert pair.i.closed and pair.r.closed
    assert pair.events("r", ProtocolErrorSent)[0].notify_type == \
        NotifyType.AUTHENTICATION_FAILED


def test_invalid_ke_payload_retry_with_the_asked_group(backend):
    i = fap_settings(ike_proposals=(IkeProposal.parse("aes256gcm16-prfsha256-x25519-ecp256"),))
    r = segw_settings(ike_proposals=(IkeProposal.parse("aes256gcm16-prfsha256-ecp256"),))
    pair = Pair(backend, i, r).run()
    assert pair.i.established and pair.r.established
    assert pair.events("i", IkeSaEstablished)[0].dh == DhGroup.ECP_256
    assert pair.events("r", ProtocolErrorSent)[0].notify_type == NotifyType.INVALID_KE_PAYLOAD
    kes = [backend.decode_message(f.wire).first(KE) for f in pair.log[:3]]
    assert [k.group for k in kes if k] == [DhGroup.CURVE25519, DhGroup.ECP_256]


def test_no_proposal_chosen(backend):
    i = fap_settings(ike_proposals=(IkeProposal.parse("aes256gcm16-prfsha256-x25519"),))
    r = segw_settings(ike_proposals=(IkeProposal.parse("aes256-sha384-x25519"),))
    pair = Pair(backend, i, r).run()
    assert pair.i.closed and not pair.r.established
    assert pair.events("i", SaFailed)[0].notify_type == NotifyType.NO_PROPOSAL_CHOSEN


def test_cookie_is_echoed_first_in_the_retried_request(backend):
    pair = Pair(backend, fap_settings(), segw_settings())
    (first,) = pair.i.datagrams_to_send(0.0)
    request = backend.decode_message(first.data)
    cookie = bytes(range(1, 33))
    challenge = Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT,
                        HeaderFlag.RESPONSE, 0, (Notify(0, NotifyType.COOKIE, data=cookie),))
    pair.i.receive_datagram(backend.encode_message(challenge), pair.r_addr, 0.1, 500)
    (second,) = pair.i.datagrams_to_send(0.1)
    retried = backend.decode_message(second.data)
    assert retried.payloads[0] == Notify(0, NotifyType.COOKIE, data=cookie)
    assert retried.payloads[1:] == request.payloads
    assert retried.spi_i == request.spi_i and retried.message_id == 0
    # The responder ignores the cookie it did not ask for and the handshake completes.
    pair.r.receive_datagram(second.data, pair.i_addr, 0.1, 500)
    pair.run()
    assert pair.i.established and pair.r.established


def test_unsupported_critical_payload_in_ike_sa_init(backend):
    pair = Pair(backend, fap_settings(), segw_settings())
    (first,) = pair.i.datagrams_to_send(0.0)
    request = backend.decode_message(first.data)
    bad = Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0,
                  (*request.payloads, UnknownPayload(200, b"xyz", critical=True)))
    pair.r.receive_datagram(backend.encode_message(bad), pair.i_addr, 0.0, 500)
    (reply,) = pair.r.datagrams_to_send(0.0)
    notify = backend.decode_message(reply.data).first(Notify)
    assert notify.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert notify.data == bytes((200,))
    # Stateless refusal: the genuine request still works.
    pair.r.receive_datagram(first.data, pair.i_addr, 0.0, 500)
    pair.run()
    assert pair.i.established and pair.r.established


def test_noncritical_unknown_payload_is_skipped(backend):
    pair = Pair(backend, fap_settings(), segw_settings())
    (first,) = pair.i.datagrams_to_send(0.0)
    request = backend.decode_message(first.data)
    extra = Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0,
                    (*request.payloads, UnknownPayload(200, b"xyz")))
    pair.r.receive_datagram(backend.encode_message(extra), pair.i_addr, 0.0, 500)
    (reply,) = pair.r.datagrams_to_send(0.0)
    assert not backend.decode_message(reply.data).notifies(NotifyType.INVALID_SYNTAX)
    assert pair.r.state.value == "auth"


def test_missing_payload_is_invalid_syntax(backend):
    pair = Pair(backend, fap_settings(), segw_settings())
    (first,) = pair.i.datagrams_to_send(0.0)
    request = backend.decode_message(first.data)
    no_ke = Message(request.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0,
                    tuple(p for p in request.payloads if not isinstance(p, KE)))
    pair.r.receive_datagram(backend.encode_message(no_ke), pair.i_addr, 0.0, 500)
    (reply,) = pair.r.datagrams_to_send(0.0)
    assert backend.decode_message(reply.data).first(Notify).notify_type == \
        NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize("identity", [
    Identity.fqdn("fap.example.net"),
    Identity.rfc822("fap@example.net"),
    Identity.ipv4("100.64.0.2"),
    Identity.der_dn(bytes.fromhex("3011310f300d06035504030c0666656d746f31")),
    Identity.key_id(b"\x01\x02fap-key"),
])
def test_identity_types(backend, identity):
    i = dataclasses.replace(fap_settings(), local_id=identity)
    r = segw_settings(remote_id=identity, auth=PskAuthenticator(peers={identity: PSK}))
    pair = Pair(backend, i, r).run()
    assert pair.r.established and pair.events("r", IkeSaEstablished)[0].remote_id == identity
    assert pair.events("r", PeerBinding)[0].peer_id == identity


def test_key_log_matches_on_both_sides(backend):
    pair = Pair(backend, fap_settings(keep_keys=True), segw_settings(keep_keys=True))
    assert pair.i.key_log() is None
    pair.run()
    log_i, log_r = pair.i.key_log(), pair.r.key_log()
    assert log_i == log_r and log_i is not None
    assert log_i["spi_i"] == pair.i.spi_i and len(log_i["sk_ei"]) == 36  # AES-256 + salt
    assert log_i["sk_ai"] == b"" and log_i["sk_ei"] != log_i["sk_er"]


def test_sa_keeps_no_key_copies_or_auth_inputs_unless_asked(backend):
    """Memory per SA: without ``keep_keys`` the SK keys live only in the ciphers, and the
    nonces and IKE_SA_INIT messages IKE_AUTH signed over are freed once it is done."""
    pair = Pair(backend, fap_settings(), segw_settings()).run()
    for sa in (pair.i, pair.r):
        assert sa.established and sa.key_log() is None and sa.key_material == ()
        assert sa.nonce_i == sa.nonce_r == sa.init_request == sa.init_response == b""
    pair.i.rekey_child()
    pair.run()
    assert len(pair.i.children) == len(pair.r.children) == 1  # CHILD keymat without them


def test_verifier_may_accept_several_methods(backend):
    class Lenient(PskAuthenticator):
        accepted_methods = (2, 14)

    class Strict(PskAuthenticator):
        method = 14  # pretends to be a signature method: the PSK AUTH (2) is refused

    ok = Pair(backend, fap_settings(), segw_settings(peer_auth=Lenient(PSK))).run()
    assert ok.r.established
    refused = Pair(backend, fap_settings(), segw_settings(peer_auth=Strict(PSK))).run()
    assert refused.r.closed
    assert "auth method 2" in refused.events("r", ProtocolErrorSent)[0].reason


def test_only_the_event_types_read_are_built(backend):
    """``Settings.events``: the engine builds only the events the application reads (and
    those a driver needs to follow SAs); the exchanges are the same."""
    reads = frozenset({PeerBinding})
    pair = Pair(backend, fap_settings(), segw_settings(events=reads)).run()
    assert pair.r.established and pair.i.established
    assert {type(e) for e in pair.r_events} == {PeerBinding}
    full = Pair(backend, fap_settings(), segw_settings()).run()
    assert {IkeSaEstablished, ChildSaEstablished, NatDetected} <= {type(e) for e in full.r_events}
    assert pair.events("r", PeerBinding)[0].public_address == \
        full.events("r", PeerBinding)[0].public_address
    pair.i.delete()
    pair.run()
    assert pair.events("r", SaDeleted)  # the end of an SA is always built
