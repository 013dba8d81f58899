"""IKE_AUTH authentication (RFC 7296 §2.15): identities, AUTH payloads, one authenticator per
method. The ``Authenticator`` protocol and PSK live here, with the CERTREQ and
SIGNATURE_HASH_ALGORITHMS bookkeeping; the certificate methods are ``cert_auth.py``
(on ``ikecp.pki``), and an application may plug in its own ``Authenticator``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from .. import pki
from ..const import AuthMethod, CertEncoding, NotifyType
from ..errors import ParseError, RemoteProtocolError
from ..events import AuthenticationFailed, IkeSaEstablished
from ..message import Auth, Cert, CertReq, IDi, IDr, Notify, Payload
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .settings import Identity
    from .view import MessageView

log = logging.getLogger("ikecp.auth")

#: Failure classes of ``AuthenticationFailed``.
UNKNOWN_IDENTITY = "unknown identity"  # no PSK for the identity the peer claimed
BAD_AUTH = "bad AUTH"  # the AUTH payload does not verify (e.g. a wrong PSK)
CERTIFICATE = "certificate"  # chain, validity or certificate/identity mismatch
WRONG_IDENTITY = "wrong identity"  # not the identity we expect this peer to have
WRONG_METHOD = "wrong auth method"

#: Below this many octets a PSK is accepted with a warning (RFC 7296 §2.15 asks for keys as
#: strong as the negotiated PRF's key; 16 octets of a random secret is the floor we warn at).
PSK_WARN_LENGTH = 16

#: Error notifies in an IKE_AUTH response that refuse only the CHILD_SA (RFC 7296 §1.2).
CHILD_ERRORS = frozenset({
    NotifyType.NO_PROPOSAL_CHOSEN, NotifyType.TS_UNACCEPTABLE, NotifyType.SINGLE_PAIR_REQUIRED,
    NotifyType.INTERNAL_ADDRESS_FAILURE, NotifyType.FAILED_CP_REQUIRED,
    NotifyType.INVALID_SELECTORS, NotifyType.NO_ADDITIONAL_SAS,
})


class Authenticator(Protocol):
    """Signs our AUTH payload and verifies the peer's for one authentication method.

    A verifier may also carry ``accepted_methods`` (a collection of method numbers) when it
    can check more than ``method``, e.g. RFC 7427 signatures and classic RSA alike;
    ``signature_hashes`` (the RFC 7427 hashes it accepts, announced in IKE_SA_INIT) and
    ``certreq_data()`` (CERTREQ data naming its trust anchors, or None) when it verifies
    certificates.
    """

    @property
    def method(self) -> int: ...

    def sign(self, sa: IkeSa, octets: bytes) -> tuple[Payload, ...]:
        """AUTH (and any CERT payloads to send before it) over ``octets``."""

    def verify(self, sa: IkeSa, peer_id: Identity, auth: Auth, octets: bytes,
               certs: list[Cert]) -> bool:
        """True when ``auth`` proves ``peer_id`` over ``octets``."""


class PskAuthenticator:
    """SHARED_KEY_MIC with one secret, or one secret per peer identity."""

    method = AuthMethod.SHARED_KEY_MIC

    def __init__(self, psk: bytes | None = None,
                 peers: Mapping[Identity, bytes] | None = None) -> None:
        if psk is None and not peers:
            raise ValueError("a PSK or a per-peer PSK table is needed")
        self._psk = psk
        self._peers = dict(peers or {})
        for owner, secret in [("the PSK", psk), *((f"the PSK of {peer}", secret)
                                                   for peer, secret in self._peers.items())]:
            if secret is None:
                continue
            if not secret:
                raise ValueError(f"{owner} is empty")
            if len(secret) < PSK_WARN_LENGTH:
                log.warning("%s is only %d octets: use at least %d random octets", owner,
                            len(secret), PSK_WARN_LENGTH)

    def knows(self, peer_id: Identity) -> bool:
        """Whether there is a secret for ``peer_id`` (a table entry or the default PSK)."""
        return self._secret(peer_id) is not None

    def _secret(self, peer_id: Identity | None) -> bytes | None:
        if peer_id is not None and peer_id in self._peers:
            return self._peers[peer_id]
        return self._psk

    def sign(self, sa: IkeSa, octets: bytes) -> tuple[Payload, ...]:
        secret = self._secret(sa.peer_id or sa.settings.remote_id)
        if secret is None:
            raise RemoteProtocolError(NotifyType.AUTHENTICATION_FAILED, "no PSK for peer")
        return (Auth(self.method, sa.backend.psk_auth(sa.suite.prf, secret, octets)),)

    def verify(self, sa: IkeSa, peer_id: Identity, auth: Auth, octets: bytes,
               certs: list[Cert]) -> bool:
        secret = self._secret(peer_id)
        if secret is None:
            return False
        expected = sa.backend.psk_auth(sa.suite.prf, secret, octets)
        return hmac.compare_digest(expected, auth.data)


def certreq_payloads(sa: IkeSa) -> list[CertReq]:
    """CERTREQ naming the CAs we trust for the peer's certificate (RFC 7296 §3.7); none for
    PSK. Peers such as strongSwan send their certificate only when asked."""
    request = getattr(sa.settings.peer_auth or sa.settings.auth, "certreq_data", None)
    data = request() if request is not None else None
    return [CertReq(CertEncoding.X509_CERT_SIG, data)] if data else []


def signature_hash_notifies(sa: IkeSa) -> list[Notify]:
    """N(SIGNATURE_HASH_ALGORITHMS) for IKE_SA_INIT (RFC 7427 §4): the hashes the peer may
    sign with, so only when our verifier checks RFC 7427 signatures."""
    hashes = getattr(sa.settings.peer_auth or sa.settings.auth, "signature_hashes", None)
    if not hashes:
        return []
    return [Notify(0, NotifyType.SIGNATURE_HASH_ALGORITHMS,
                   data=pki.build_signature_hash_algorithms(hashes))]


def record_signature_hashes(sa: IkeSa, msg: MessageView) -> None:
    """Keep the peer's announced hashes; a malformed notify counts as none (classic AUTH)."""
    for n in msg.notifies(NotifyType.SIGNATURE_HASH_ALGORITHMS):
        try:
            sa.peer_hashes = pki.parse_signature_hash_algorithms(n.data)
        except ParseError:
            continue
        return


def record_certreq(sa: IkeSa, msg: MessageView) -> None:
    """Keep the CA key hashes of the peer's X.509 CERTREQs; malformed ones are skipped."""
    cas: list[bytes] = []
    for req in msg.find(CertReq):
        if req.encoding != CertEncoding.X509_CERT_SIG:
            continue
        try:
            cas.extend(pki.parse_certreq(req.data))
        except ParseError:
            continue
    sa.peer_cas = tuple(cas)


def _octets(sa: IkeSa, initiator_side: bool, id_type: int, id_data: bytes) -> bytes:
    """Signed octets for the initiator's or the responder's AUTH (§2.15)."""
    if initiator_side:
        return sa.backend.signed_octets(sa.suite.prf, sa.init_request, sa.nonce_r, sa.sk_pi,
                                        id_type, id_data)
    return sa.backend.signed_octets(sa.suite.prf, sa.init_response, sa.nonce_i, sa.sk_pr,
                                    id_type, id_data)


class AuthTask(Task):
    """IDi/IDr + AUTH for either role; marks the SA established once the peer is proven."""

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        me = sa.settings.local_id
        out.append(IDi(me.id_type, me.data))
        out.extend(certreq_payloads(sa))  # §1.2: the initiator's CERTREQ goes in IKE_AUTH
        if sa.settings.remote_id is not None:
            peer = sa.settings.remote_id
            out.append(IDr(peer.id_type, peer.data))
        out.extend(sa.settings.auth.sign(sa, _octets(sa, True, me.id_type, me.data)))

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        idi: IDi = msg.first(IDi)
        record_certreq(sa, msg)  # before build_r signs with the credential it selects
        sa.peer_id = self._verify(sa, msg, idi.id_type, idi.data, initiator_side=True)
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        _established(sa)  # after every task processed: the response is about to go out
        me = sa.settings.local_id
        out.append(IDr(me.id_type, me.data))
        out.extend(sa.settings.auth.sign(sa, _octets(sa, False, me.id_type, me.data)))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        for n in msg.find(Notify):
            if n.notify_type < 0x4000 and n.notify_type not in CHILD_ERRORS:
                raise RemoteProtocolError(n.notify_type, "peer refused IKE_AUTH")
        idr: IDr | None = msg.first(IDr)
        if idr is None or msg.first(Auth) is None:
            raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "IDr or AUTH missing")
        sa.peer_id = self._verify(sa, msg, idr.id_type, idr.data, initiator_side=False)
        _established(sa)
        return DONE

    def _verify(self, sa: IkeSa, msg: MessageView, id_type: int, id_data: bytes,
                initiator_side: bool) -> Identity:
        peer = _settings.Identity(id_type, id_data)

        def refuse(failure: str, reason: str) -> RemoteProtocolError:
            sa.emit(AuthenticationFailed(peer, failure, reason))
            return RemoteProtocolError(NotifyType.AUTHENTICATION_FAILED, reason)

        expected = sa.settings.remote_id
        if expected is not None and peer != expected:
            raise refuse(WRONG_IDENTITY, f"peer identity {peer} is not {expected}")
        auth: Auth = msg.first(Auth)
        verifier = sa.settings.peer_auth or sa.settings.auth
        if auth.method not in (getattr(verifier, "accepted_methods", None) or (verifier.method,)):
            raise refuse(WRONG_METHOD, f"peer used auth method {auth.method}")
        if isinstance(verifier, PskAuthenticator) and not verifier.knows(peer):
            raise refuse(UNKNOWN_IDENTITY, "no PSK for this identity")
        octets = _octets(sa, initiator_side, id_type, id_data)
        try:
            verified = verifier.verify(sa, peer, auth, octets, msg.find(Cert))
        except RemoteProtocolError as exc:  # a certificate verifier says why
            raise refuse(CERTIFICATE, exc.reason) from None
        if not verified:
            raise refuse(BAD_AUTH, "AUTH payload does not verify")
        return peer


def _established(sa: IkeSa) -> None:
    s = sa.suite
    sa.mark_established()
    if sa.wants(IkeSaEstablished):
        sa.emit(IkeSaEstablished(
            spi_i=sa.spi_i, spi_r=sa.spi_r, local_id=sa.settings.local_id,
            remote_id=sa.peer_id, local_addr=sa.local, remote_addr=sa.remote, encr=s.encr,
            encr_key_bits=s.encr_key_bits, integ=s.integ, prf=s.prf, dh=s.dh,
        ))


# Last: settings.py imports Authenticator from here; bound once, not per IKE_AUTH.
from . import settings as _settings  # noqa: E402
