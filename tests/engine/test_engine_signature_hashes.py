"""SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4) in IKE_SA_INIT when we authenticate with
certificates.

Interop finding: without it strongSwan falls back to the classic signature methods (ECDSA-256
= method 9 for a P-256 key) that the default certificate verifier, which checks RFC 7427
signatures (method 14), refused; ``ikecp segw`` with certificates then failed every strongSwan
peer. Announcing the hashes makes RFC 7427 peers sign with method 14.
"""

from __future__ import annotations

from engine_pair import Pair, fap_settings, segw_settings
from ikecp import pki
from ikecp.const import ExchangeType as X
from ikecp.const import NotifyType
from ikecp.events import IkeSaEstablished
from test_engine_cert_auth import cert_settings

SHA = NotifyType.SIGNATURE_HASH_ALGORITHMS


def _init_messages(pair: Pair, backend):
    msgs = [backend.decode_message(f.datagram.data) for f in pair.log]
    request = next(m for m in msgs if m.exchange == X.IKE_SA_INIT and not m.is_response)
    response = next(m for m in msgs if m.exchange == X.IKE_SA_INIT and m.is_response)
    return request, response


def test_certificate_sides_announce_their_hashes(backend) -> None:
    fap, segw = cert_settings()
    pair = Pair(backend, fap, segw, nat=True).run()
    assert pair.events("i", IkeSaEstablished) and pair.events("r", IkeSaEstablished)
    request, response = _init_messages(pair, backend)
    for msg in (request, response):
        (n,) = msg.notifies(SHA)
        assert pki.parse_signature_hash_algorithms(n.data) == pki.DEFAULT_HASHES


def test_responder_answers_only_when_asked_and_psk_sends_none(backend) -> None:
    segw = cert_settings()[1]
    pair = Pair(backend, fap_settings(), segw, nat=True).run()
    request, response = _init_messages(pair, backend)
    assert request.notifies(SHA) == [] and response.notifies(SHA) == []

    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    assert pair.i.established and pair.r.established
    request, response = _init_messages(pair, backend)
    assert request.notifies(SHA) == [] and response.notifies(SHA) == []
