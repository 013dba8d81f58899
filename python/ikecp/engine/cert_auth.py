"""Certificate authentication for the engine: an ``Authenticator`` (see ``auth.py``) built on
``ikecp.pki`` for AUTH methods 14 (RFC 7427), 1 (RSA, SHA-1) and 9/10/11 (RFC 4754 ECDSA).

Limits of the current seam, kept here rather than worked around: the engine compares the
peer's AUTH method with this authenticator's single ``method``, so configure the method the
peer will use (``Settings.peer_auth`` may differ from ``Settings.auth``); IKE_SA_INIT does not
yet exchange SIGNATURE_HASH_ALGORITHMS or CERTREQ, so we sign with the configured hash and
always send our one credential.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .. import pki
from ..const import AuthMethod, CertEncoding, NotifyType
from ..errors import AuthenticationError, RemoteProtocolError
from ..message import Auth, Cert, Payload

if TYPE_CHECKING:
    from .sa import IkeSa
    from .settings import Identity


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CertAuthenticator:
    """Signs with ``credential`` (may be None on a verify-only ``peer_auth``) and verifies
    peers against ``trust``.

    ``clock`` supplies the wall-clock time for certificate validity; the engine's ``now`` is
    a monotonic number, so it cannot serve. Tests inject a fixed clock.
    """

    def __init__(self, credential: pki.Credential | None, trust: pki.TrustStore | None,
                 *, method: int = AuthMethod.DIGITAL_SIGNATURE,
                 hash_alg: pki.HashAlg = pki.HashAlg.SHA2_256, pss: bool = False,
                 accepted_hashes: Iterable[int] = pki.DEFAULT_HASHES,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        if method not in (AuthMethod.DIGITAL_SIGNATURE, AuthMethod.RSA_SIG,
                          AuthMethod.ECDSA_SHA256_P256, AuthMethod.ECDSA_SHA384_P384,
                          AuthMethod.ECDSA_SHA512_P521):
            raise ValueError(f"AUTH method {method} is not a certificate method")
        self.method = method
        self._credential = credential
        self._trust = trust
        self._hash = hash_alg
        self._pss = pss
        self._accepted = tuple(accepted_hashes)
        self._clock = clock

    def sign(self, sa: IkeSa, octets: bytes) -> tuple[Payload, ...]:
        cred = self._credential
        if cred is None:
            raise RemoteProtocolError(NotifyType.AUTHENTICATION_FAILED, "no local certificate")
        data = pki.sign_auth(cred.key, self.method, octets, hash_alg=self._hash, pss=self._pss)
        certs = tuple(Cert(CertEncoding.X509_CERT_SIG, der) for der in cred.cert_payloads())
        return (*certs, Auth(self.method, data))

    def verify(self, sa: IkeSa, peer_id: Identity, auth: Auth, octets: bytes,
               certs: list[Cert]) -> bool:
        if self._trust is None:
            return False
        x509_certs = [c.data for c in certs if c.encoding == CertEncoding.X509_CERT_SIG]
        try:
            pki.verify_peer(self._trust, x509_certs, peer_id.id_type, peer_id.data,
                            auth.method, auth.data, octets, self._clock(),
                            accepted_hashes=self._accepted)
        except AuthenticationError as exc:
            raise RemoteProtocolError(NotifyType.AUTHENTICATION_FAILED,
                                      f"certificate authentication failed: {exc.reason}"
                                      ) from None
        return True
