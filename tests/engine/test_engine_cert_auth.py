"""Certificate authentication through the engine (``CertAuthenticator``), in memory:
RFC 7427 hash negotiation, classic fallback, CERTREQ-driven credential choice, validity at
the pinned wall clock."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from engine_pair import NAT_PUBLIC_IP, Pair, fap_settings, segw_settings
from ikecp import pki
from ikecp.const import AuthMethod, CertEncoding, ExchangeType, NotifyType
from ikecp.engine import Identity, rules
from ikecp.engine.auth import record_certreq, record_signature_hashes
from ikecp.engine.cert_auth import CertAuthenticator
from ikecp.engine.view import MessageView
from ikecp.errors import RemoteProtocolError
from ikecp.events import (
    IkeSaEstablished,
    PeerBinding,
    ProtocolErrorSent,
    PublicAddressLearned,
    SaFailed,
)
from ikecp.lab.ca import CertAuthority
from ikecp.message import KE, SA, Auth, CertReq, IDi, IDr, Message, Nonce, Notify

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
FAP_NAME = "fap-0001.example.net"
H = pki.HashAlg


class Recording(CertAuthenticator):
    """A verifier that remembers what the peer's AUTH and CERT payloads carried."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.seen: list[tuple[int, bytes, bytes]] = []  # (method, AUTH data, end-entity DER)

    def verify(self, sa, peer_id, auth, octets, certs) -> bool:
        self.seen.append((auth.method, auth.data, certs[0].data if certs else b""))
        return super().verify(sa, peer_id, auth, octets, certs)


def pinned(at: datetime):
    return at.timestamp


def make_pki(fap_ca=None, *, fap_key="ecdsa-p256", segw_key="rsa2048") -> SimpleNamespace:
    """Root CA; FAP certificate from a sub-CA (or ``fap_ca``), SeGW certificate from the root."""
    root = CertAuthority("operator root", now=NOW)
    fap = (fap_ca or root.intermediate("femto sub-CA")).issue([FAP_NAME], key_type=fap_key)
    segw = root.issue(["segw.example.net"], key_type=segw_key)
    return SimpleNamespace(root=root, fap=fap, segw=segw, segw_key=segw_key)


def cert_settings(fap_method=None, segw_method=None, fap_ca=None, fap_name=FAP_NAME, *,
                  issued=None, fap_hashes=pki.DEFAULT_HASHES, segw_hashes=pki.DEFAULT_HASHES,
                  segw_clock=NOW):
    """FAP and SeGW settings over ``issued`` (default ``make_pki(fap_ca)``); both trust the
    root. Each side's ``peer_auth`` accepts (and announces) ``*_hashes`` and records what the
    other sent."""
    issued = issued or make_pki(fap_ca)
    trust = pki.TrustStore([issued.root.cert])
    segw_id = Identity.der_dn(pki.subject_der(issued.segw.cert))
    fap = fap_settings(
        auth=CertAuthenticator(issued.fap.credential, None, method=fap_method),
        peer_auth=Recording(None, trust, hashes=fap_hashes), wall_clock=pinned(NOW))
    fap = dataclasses.replace(fap, local_id=Identity.fqdn(fap_name), remote_id=segw_id)
    segw = segw_settings(
        auth=CertAuthenticator(issued.segw.credential, None, method=segw_method,
                               pss=issued.segw_key == "rsa2048"),
        peer_auth=Recording(None, trust, hashes=segw_hashes), wall_clock=pinned(segw_clock))
    segw = dataclasses.replace(segw, local_id=segw_id)
    return fap, segw


def alg_id(auth_data: bytes) -> bytes:
    return auth_data[1:1 + auth_data[0]]


def init_messages(backend, pair: Pair):
    """The decoded IKE_SA_INIT request and response from the wire log."""
    msgs = [backend.decode_message(f.wire) for f in pair.log if not f.datagram.encapsulated]
    init = [m for m in msgs if m.exchange == ExchangeType.IKE_SA_INIT]
    return init[0], init[1]


@pytest.mark.parametrize(("fap_method", "segw_method"), [
    (None, None),
    (AuthMethod.ECDSA_SHA256_P256, AuthMethod.RSA_SIG),
])
def test_certificate_handshake_behind_nat(backend, fap_method, segw_method) -> None:
    fap, segw = cert_settings(fap_method, segw_method)
    pair = Pair(backend, fap, segw, nat=True).run()
    assert pair.i.established and pair.r.established
    (est_r,) = pair.events("r", IkeSaEstablished)
    (est_i,) = pair.events("i", IkeSaEstablished)
    assert est_r.remote_id == Identity.fqdn(FAP_NAME) and est_i.remote_id == segw.local_id
    (learned,) = pair.events("i", PublicAddressLearned)
    (binding,) = pair.events("r", PeerBinding)
    assert learned.address == NAT_PUBLIC_IP
    assert (binding.public_address, binding.public_port) == (learned.address, learned.port)
    fap_sent = segw.peer_auth.seen[0][0]
    segw_sent = fap.peer_auth.seen[0][0]
    assert (fap_sent, segw_sent) == (fap_method or AuthMethod.DIGITAL_SIGNATURE,
                                     segw_method or AuthMethod.DIGITAL_SIGNATURE)


@pytest.mark.parametrize(("fap_key", "segw_key"), [("ecdsa-p256", "rsa2048"),
                                                   ("rsa2048", "ecdsa-p384")])
def test_hash_negotiated_through_notify(backend, fap_key, segw_key) -> None:
    # Each side accepts one hash only, so each signer must take the one the other announced.
    fap, segw = cert_settings(issued=make_pki(fap_key=fap_key, segw_key=segw_key),
                              fap_hashes=(H.SHA2_384,), segw_hashes=(H.SHA2_512,))
    pair = Pair(backend, fap, segw).run()
    assert pair.i.established and pair.r.established
    assert pair.i.peer_hashes == (H.SHA2_512,) and pair.r.peer_hashes == (H.SHA2_384,)
    (fap_method, fap_data, _), = segw.peer_auth.seen
    (segw_method, segw_data, _), = fap.peer_auth.seen
    assert fap_method == segw_method == AuthMethod.DIGITAL_SIGNATURE
    scheme = {"ecdsa-p256": "ecdsa", "ecdsa-p384": "ecdsa", "rsa2048": "pkcs1"}
    assert alg_id(fap_data) == pki.signature_algorithm_identifier(scheme[fap_key], H.SHA2_512)
    expected_segw = ("pss" if segw_key == "rsa2048" else scheme[segw_key])
    assert alg_id(segw_data) == pki.signature_algorithm_identifier(expected_segw, H.SHA2_384)


@pytest.mark.parametrize(("segw_key", "classic"), [("rsa2048", AuthMethod.RSA_SIG),
                                                   ("ecdsa-p256", AuthMethod.ECDSA_SHA256_P256),
                                                   ("ecdsa-p384", AuthMethod.ECDSA_SHA384_P384)])
def test_peer_without_notify_gets_classic_method(backend, segw_key, classic) -> None:
    # A FAP without RFC 7427 support announces nothing; it still signs and verifies classic.
    fap, segw = cert_settings(fap_method=AuthMethod.ECDSA_SHA256_P256, fap_hashes=(),
                              issued=make_pki(segw_key=segw_key))
    pair = Pair(backend, fap, segw).run()
    for msg in init_messages(backend, pair):  # the SeGW answers the notify only when asked
        assert not [p for p in msg.payloads if isinstance(p, Notify)
                    and p.notify_type == NotifyType.SIGNATURE_HASH_ALGORITHMS]
    assert pair.r.peer_hashes is None
    assert pair.i.established and pair.r.established
    assert [s[0] for s in fap.peer_auth.seen] == [classic]
    assert [s[0] for s in segw.peer_auth.seen] == [AuthMethod.ECDSA_SHA256_P256]


def test_verifier_refuses_classic_method_of_another_key_type(backend) -> None:
    # Accepting several methods must not let an ECDSA key pass as RSA_SIG (or vice versa).
    issued = make_pki(segw_key="ecdsa-p256")
    fap, segw = cert_settings(issued=issued)
    segw = dataclasses.replace(segw, auth=_MethodLiar(issued.segw.credential))
    pair = Pair(backend, fap, segw).run()
    assert not pair.i.established
    (failed,) = pair.events("i", SaFailed)
    assert failed.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert "not RSA" in failed.reason


class _MethodLiar:
    """Signs like ``inner`` with the key's classic ECDSA method, then labels it RSA_SIG."""

    method = AuthMethod.RSA_SIG

    def __init__(self, credential: pki.Credential) -> None:
        self._inner = CertAuthenticator(credential, None, method=AuthMethod.ECDSA_SHA256_P256)

    def sign(self, sa, octets):
        *certs, auth = self._inner.sign(sa, octets)
        return (*certs, dataclasses.replace(auth, method=AuthMethod.RSA_SIG))


@pytest.mark.parametrize("trusted", [0, 1])
def test_certreq_selects_the_matching_credential(backend, trusted) -> None:
    roots = [CertAuthority(f"operator root {n}", now=NOW) for n in (0, 1)]
    issued = [r.issue([FAP_NAME], key_type="ecdsa-p256", fresh_key=True) for r in roots]
    segw_issued = roots[trusted].issue(["segw.example.net"], key_type="rsa2048")
    segw_id = Identity.der_dn(pki.subject_der(segw_issued.cert))
    fap_trust = pki.TrustStore([r.cert for r in roots])
    segw_trust = pki.TrustStore([roots[trusted].cert])  # names only this root in CERTREQ
    fap = fap_settings(auth=CertAuthenticator([i.credential for i in issued], fap_trust),
                       wall_clock=pinned(NOW))
    fap = dataclasses.replace(fap, local_id=Identity.fqdn(FAP_NAME), remote_id=segw_id)
    segw = segw_settings(auth=CertAuthenticator(segw_issued.credential, None),
                         peer_auth=Recording(None, segw_trust), wall_clock=pinned(NOW))
    segw = dataclasses.replace(segw, local_id=segw_id)
    pair = Pair(backend, fap, segw).run()
    assert pair.i.established and pair.r.established
    assert pair.i.peer_cas == (pki.spki_sha1(roots[trusted].cert),)
    # The FAP's IKE_AUTH request named both of its anchors.
    assert set(pair.r.peer_cas) == {pki.spki_sha1(r.cert) for r in roots}
    (_, _, ee), = segw.peer_auth.seen
    assert ee == issued[trusted].cert.public_bytes(Encoding.DER)


@pytest.mark.parametrize("offset", [timedelta(days=400), timedelta(days=-2)])
def test_certificate_outside_validity_at_pinned_wall_clock(backend, offset) -> None:
    fap, segw = cert_settings(segw_clock=NOW + offset)  # FAP cert: NOW-1d .. NOW+364d
    pair = Pair(backend, fap, segw).run()
    assert not pair.i.established and not pair.r.established
    (sent,) = pair.events("r", ProtocolErrorSent)
    assert sent.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert "certificate chain invalid" in sent.reason
    assert pair.events("i", SaFailed)


def test_ike_sa_init_carries_notify_and_certreq(backend) -> None:
    issued = make_pki()
    root = issued.root
    fap, segw = cert_settings(issued=issued, fap_hashes=(H.SHA2_256, H.SHA2_512),
                              segw_hashes=(H.SHA2_384,))
    pair = Pair(backend, fap, segw).run()
    assert pair.i.established
    request, response = init_messages(backend, pair)

    def hashes(msg):
        (n,) = [p for p in msg.payloads if isinstance(p, Notify)
                and p.notify_type == NotifyType.SIGNATURE_HASH_ALGORITHMS]
        return pki.parse_signature_hash_algorithms(n.data)

    assert hashes(request) == (H.SHA2_256, H.SHA2_512)
    assert hashes(response) == (H.SHA2_384,)
    assert not [p for p in request.payloads if isinstance(p, CertReq)]  # §1.2: in IKE_AUTH
    (certreq,) = [p for p in response.payloads if isinstance(p, CertReq)]
    assert certreq.encoding == CertEncoding.X509_CERT_SIG
    assert pki.parse_certreq(certreq.data) == (pki.spki_sha1(root.cert),)
    auth_request = pair.opened(True, ExchangeType.IKE_AUTH)
    (certreq,) = auth_request.find(CertReq)  # §1.2: the initiator's CERTREQ
    assert pki.parse_certreq(certreq.data) == (pki.spki_sha1(root.cert),)
    assert pair.r.peer_cas == (pki.spki_sha1(root.cert),)


def test_psk_peers_send_neither(backend) -> None:
    pair = Pair(backend, fap_settings(), segw_settings()).run()
    request, response = init_messages(backend, pair)
    for msg in (request, response):
        assert not [p for p in msg.payloads if isinstance(p, CertReq)
                    or (isinstance(p, Notify)
                        and p.notify_type == NotifyType.SIGNATURE_HASH_ALGORITHMS)]
    assert pair.i.peer_hashes is None and pair.r.peer_hashes is None


@pytest.mark.parametrize("case", ["untrusted CA", "identity not in certificate"])
def test_bad_fap_certificate_is_refused(backend, case) -> None:
    if case == "untrusted CA":
        fap, segw = cert_settings(fap_ca=CertAuthority("rogue root", now=NOW))
    else:
        fap, segw = cert_settings(fap_name="fap-0002.example.net")
    pair = Pair(backend, fap, segw).run()
    assert not pair.i.established and not pair.r.established
    (sent,) = pair.events("r", ProtocolErrorSent)
    assert sent.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert "certificate authentication failed" in sent.reason
    assert pair.events("i", SaFailed)


@pytest.mark.parametrize(("exchange", "is_response", "allowed"), [
    (ExchangeType.IKE_SA_INIT, False, False), (ExchangeType.IKE_SA_INIT, True, True),
    (ExchangeType.IKE_AUTH, False, True), (ExchangeType.IKE_AUTH, True, False),
])
def test_certreq_only_where_rfc_7296_places_it(exchange, is_response, allowed) -> None:
    base = {ExchangeType.IKE_SA_INIT: [SA(()), KE(19, b"k"), Nonce(bytes(16))],
            ExchangeType.IKE_AUTH: [IDi(2, b"x") if not is_response else IDr(2, b"x"),
                                    Auth(14, b"a")]}[exchange]
    payloads = [*base, CertReq(CertEncoding.X509_CERT_SIG, bytes(20))]
    if allowed:
        rules.check(exchange, is_response, payloads)
    else:
        with pytest.raises(RemoteProtocolError) as err:
            rules.check(exchange, is_response, payloads)
        assert err.value.notify_type == NotifyType.INVALID_SYNTAX


def test_malformed_peer_announcements_are_ignored() -> None:
    class Sa:
        peer_hashes = None
        peer_cas = ()

    good = bytes(range(20))
    msg = Message(bytes(8), bytes(8), ExchangeType.IKE_SA_INIT, 0x20, 0, (
        Notify(0, NotifyType.SIGNATURE_HASH_ALGORITHMS, data=b"\x00\x02\x00"),
        CertReq(CertEncoding.X509_CERT_SIG, good + b"\x01"),
        CertReq(CertEncoding.X509_CERT_SIG, good),
        CertReq(12, bytes(20)),  # not an X.509 request
    ))
    sa = Sa()
    record_signature_hashes(sa, MessageView(msg))
    record_certreq(sa, MessageView(msg))
    assert sa.peer_hashes is None and sa.peer_cas == (good,)
