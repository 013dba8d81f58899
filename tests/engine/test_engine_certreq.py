"""CERTREQ (RFC 7296 §3.7): a side that verifies certificates names its trust anchors.

Interop finding: strongSwan sends its certificate only when asked (its default ``send_cert =
ifasked``), so without our CERTREQ a strongSwan peer authenticated with a bare AUTH payload
and certificate authentication failed for want of a certificate.
"""

from __future__ import annotations

from engine_pair import Pair
from ikecp import pki
from ikecp.const import CertEncoding
from ikecp.const import ExchangeType as X
from ikecp.events import IkeSaEstablished
from ikecp.message import CertReq
from test_engine_cert_auth import cert_settings


def _sent(pair: Pair, backend, to_responder: bool, exchange: int):
    for f in pair.log:
        if f.to_responder != to_responder:
            continue
        data = f.datagram.data
        msg = backend.decode_message(data)
        if msg.exchange != exchange:
            continue
        if exchange == X.IKE_SA_INIT:
            return msg
        return pair.opened(to_responder, exchange)
    raise AssertionError("message not sent")


def test_both_sides_ask_for_certificates_from_their_anchors(backend) -> None:
    fap, segw = cert_settings()
    pair = Pair(backend, fap, segw, nat=True).run()
    assert pair.events("i", IkeSaEstablished) and pair.events("r", IkeSaEstablished)
    anchors = segw.peer_auth._trust.anchors
    want = pki.certreq_data(anchors)

    (init_req,) = _sent(pair, backend, False, X.IKE_SA_INIT).find(CertReq)
    assert (init_req.encoding, init_req.data) == (CertEncoding.X509_CERT_SIG, want)
    assert pki.parse_certreq(init_req.data) == tuple(pki.spki_sha1(a) for a in anchors)

    (auth_req,) = _sent(pair, backend, True, X.IKE_AUTH).find(CertReq)
    assert (auth_req.encoding, auth_req.data) == (CertEncoding.X509_CERT_SIG, want)


def test_psk_sides_send_no_certreq(backend) -> None:
    from engine_pair import fap_settings, segw_settings

    pair = Pair(backend, fap_settings(), segw_settings(), nat=True).run()
    assert pair.i.established and pair.r.established
    assert _sent(pair, backend, False, X.IKE_SA_INIT).find(CertReq) == []
    assert _sent(pair, backend, True, X.IKE_AUTH).find(CertReq) == []
