"""Certificate authentication for the engine: an ``Authenticator`` (see ``auth.py``) built on
``ikecp.pki`` for AUTH methods 14 (RFC 7427), 1 (RSA, SHA-1) and 9/10/11 (RFC 4754 ECDSA).

IKE_SA_INIT announces ``signature_hashes`` in N(SIGNATURE_HASH_ALGORITHMS) and our trust
anchors in CERTREQ (``sa_init.py``, ``auth.py``); what the peer sent there is on the SA as
``peer_hashes`` and ``peer_cas``. Signing picks the credential answering the peer's CERTREQ
and RFC 7427 with a hash the peer announced, or the key's classic method when it announced
none. Certificate validity is checked at ``Settings.wall_clock``, the engine's only wall-clock
read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .. import pki
from ..const import AuthMethod, CertEncoding, NotifyType
from ..errors import AuthenticationError, RemoteProtocolError
from ..message import Auth, Cert, Payload

if TYPE_CHECKING:
    from .sa import IkeSa
    from .settings import Identity

#: Every method a certificate peer may legitimately use; ``pki.verify_auth`` then insists that
#: a classic method fits the certificate's key type.
SIGNATURE_METHODS = frozenset({
    AuthMethod.DIGITAL_SIGNATURE, AuthMethod.RSA_SIG, AuthMethod.ECDSA_SHA256_P256,
    AuthMethod.ECDSA_SHA384_P384, AuthMethod.ECDSA_SHA512_P521,
})


class CertAuthenticator:
    """Signs with one of ``credentials`` (none on a verify-only ``peer_auth``) and verifies
    peers against ``trust``.

    ``hashes`` are the RFC 7427 hashes we sign with (in preference order) and accept;
    empty makes a classic-only peer that sends no SIGNATURE_HASH_ALGORITHMS. ``method``
    pins the AUTH method instead of negotiating it (for peers that expect one).
    """

    method = AuthMethod.DIGITAL_SIGNATURE
    accepted_methods = SIGNATURE_METHODS

    def __init__(self, credentials: pki.Credential | Sequence[pki.Credential] | None,
                 trust: pki.TrustStore | None, *, method: int | None = None,
                 hashes: Iterable[pki.HashAlg] = pki.DEFAULT_HASHES,
                 pss: bool = False) -> None:
        if method is not None and method not in SIGNATURE_METHODS:
            raise ValueError(f"AUTH method {method} is not a certificate method")
        if isinstance(credentials, pki.Credential):
            credentials = (credentials,)
        self._credentials = tuple(credentials or ())
        self._trust = trust
        self._fixed = method
        self._pss = pss
        self.signature_hashes: tuple[pki.HashAlg, ...] = tuple(hashes)

    def certreq_data(self) -> bytes | None:
        """CERTREQ data naming our trust anchors, None when we verify no certificates."""
        return self._trust.certreq_data() if self._trust is not None else None

    def _method(self, sa: IkeSa, key: pki.PrivateKey) -> tuple[int, pki.HashAlg]:
        if self._fixed is None:
            return pki.choose_auth(key, sa.peer_hashes, self.signature_hashes)
        if self._fixed != AuthMethod.DIGITAL_SIGNATURE:
            return self._fixed, pki.HashAlg.SHA2_256  # the classic methods fix their hash
        chosen = pki.choose_hash(sa.peer_hashes or (), self.signature_hashes)
        return self._fixed, chosen or self.signature_hashes[0]

    def sign(self, sa: IkeSa, octets: bytes) -> tuple[Payload, ...]:
        if not self._credentials:
            raise RemoteProtocolError(NotifyType.AUTHENTICATION_FAILED, "no local certificate")
        # RFC 7296 §3.7: with no credential matching the CERTREQ we may still send our default
        cred = pki.select_credential(self._credentials, sa.peer_cas) or self._credentials[0]
        method, hash_alg = self._method(sa, cred.key)
        data = pki.sign_auth(cred.key, method, octets, hash_alg=hash_alg, pss=self._pss)
        certs = tuple(Cert(CertEncoding.X509_CERT_SIG, der) for der in cred.cert_payloads())
        return (*certs, Auth(method, data))

    def verify(self, sa: IkeSa, peer_id: Identity, auth: Auth, octets: bytes,
               certs: list[Cert]) -> bool:
        if self._trust is None:
            return False
        x509_certs = [c.data for c in certs if c.encoding == CertEncoding.X509_CERT_SIG]
        now = datetime.fromtimestamp(sa.settings.wall_clock(), timezone.utc)
        try:
            pki.verify_peer(self._trust, x509_certs, peer_id.id_type, peer_id.data,
                            auth.method, auth.data, octets, now,
                            accepted_hashes=self.signature_hashes)
        except AuthenticationError as exc:
            raise RemoteProtocolError(NotifyType.AUTHENTICATION_FAILED,
                                      f"certificate authentication failed: {exc.reason}"
                                      ) from None
        return True
