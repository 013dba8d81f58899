"""Certificate authentication for IKEv2: credentials, chain validation, identities, AUTH
signatures and CERTREQ (RFC 7296 §2.15, §3.5-§3.8; RFC 7427; RFC 4754; RFC 4945).

Pure Python on ``cryptography``; sans-IO: nothing here reads a clock or a socket, and files
are read only by the ``from_files`` constructors, from the paths the caller names. Every
failure to authenticate the peer raises :class:`ikecp.errors.AuthenticationError` with a short
``reason``; a caller's own mistake (signing with a key the method cannot use) raises
``ValueError``.

API for the engine
------------------
Our side (initiator or responder):

- ``cred = Credential.from_files(key_path, cert_path, chain_paths=(), password=None)`` or
  ``Credential.from_pem(key_pem, cert_pem, chain_pem=b"", anchor_pem=b"")`` (PEM or DER) or
  ``Credential(key, cert, intermediates, anchors)``.
  ``cred.cert_payloads()`` gives the CERT payload data (encoding 4, X.509 DER) to send, end
  entity first, then intermediates. ``anchors`` (not sent) name the root(s) our chain ends at,
  so a peer's CERTREQ can be matched against them.
- ``identity_for_cert(cred.cert, id_type)`` -> ``(id_type, id_data)`` for our IDi/IDr
  (default ID_DER_ASN1_DN, the subject DN).
- ``select_credential(creds, requested)`` picks the credential a peer's CERTREQ asks for;
  ``requested`` is ``parse_certreq(data)`` over the peer's CERTREQ payload(s).
- ``choose_auth(key, peer_hashes)`` -> ``(auth_method, hash_alg)``: RFC 7427 method 14 with a
  hash the peer announced in SIGNATURE_HASH_ALGORITHMS, else the key's classic method
  (1 for RSA, 9/10/11 for ECDSA P-256/P-384/P-521).
- ``sign_auth(cred.key, method, signed_octets, hash_alg=..., pss=False)`` -> AUTH payload data.
  ``signed_octets`` is what ``backend.signed_octets`` returns.

Peer side:

- ``store = TrustStore(anchor_certs)`` / ``TrustStore.from_files(*pem_or_der_paths)``.
- ``chain = store.verify(cert_der, intermediate_ders, now)`` validates the peer's end-entity
  certificate (first CERT payload) and intermediates (further CERT payloads) at ``now`` (a
  ``datetime``, aware or naive meaning UTC): signatures up to a trust anchor, validity
  periods, basicConstraints cA and pathLenConstraint on issuers, keyCertSign on issuers and
  digitalSignature on the end entity where keyUsage is present, no unknown critical
  extension, RSA keys of at least 2048 bits. Returns the validated chain, end entity
  first, anchor last.
- ``check_identity(chain[0], id_type, id_data)``: the peer's IDi/IDr must be carried by its
  certificate (see ``cert_matches_identity`` for the rules per ID type).
- ``verify_auth(chain[0], method, auth_data, signed_octets, accepted_hashes=...)``.
- ``verify_peer(store, cert_ders, id_type, id_data, method, auth_data, signed_octets, now)``
  does the three steps above in order and returns the validated chain.
- ``store.certreq_data()`` is our CERTREQ payload data (encoding 4): SHA-1 of each anchor's
  SubjectPublicKeyInfo, concatenated (RFC 7296 §3.7).
- ``build_signature_hash_algorithms()`` / ``parse_signature_hash_algorithms(data)`` for the
  SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4) in IKE_SA_INIT.

Chain validation uses ``cryptography.x509.verification`` with IKE extension policies in place
of its web-PKI defaults: no subjectAltName, EKU or authorityKeyIdentifier requirement on the
end entity (RFC 4945 §5.1.3.12 leaves EKU to local policy), basicConstraints required on
issuers. Its signature-algorithm allow-list still applies, so certificates signed with SHA-1
or MD5 are rejected.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509 import verification

from .const import AuthMethod, IdType, PayloadType
from .errors import AuthenticationError, ParseError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

__all__ = [
    "DEFAULT_HASHES",
    "Credential",
    "HashAlg",
    "TrustStore",
    "build_signature_hash_algorithms",
    "cert_matches_identity",
    "certreq_data",
    "check_identity",
    "choose_auth",
    "choose_hash",
    "identity_for_cert",
    "load_certificates",
    "load_private_key",
    "parse_certreq",
    "parse_signature_hash_algorithms",
    "select_credential",
    "sign_auth",
    "signature_algorithm_identifier",
    "spki_sha1",
    "subject_der",
    "verify_auth",
    "verify_peer",
]

#: Largest number of intermediates accepted from a peer; a longer list is an attack or a bug.
MAX_INTERMEDIATES = 8
MIN_RSA_BITS = 2048
SHA1_LEN = 20


class HashAlg(IntEnum):
    """IANA "IKEv2 Hash Algorithms" (RFC 7427 §7)."""

    SHA1 = 1
    SHA2_256 = 2
    SHA2_384 = 3
    SHA2_512 = 4
    IDENTITY = 5


_HASHES: dict[int, hashes.HashAlgorithm] = {
    HashAlg.SHA2_256: hashes.SHA256(),
    HashAlg.SHA2_384: hashes.SHA384(),
    HashAlg.SHA2_512: hashes.SHA512(),
}
#: Our preference when several hashes are possible: the RFC 8247 MUST first.
DEFAULT_HASHES = (HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512)


# --- DER: just enough to build AlgorithmIdentifiers and find fields of a parsed certificate ---


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (definite length)."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, bytes(body))


def _der_items(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(tag, tlv_start, content_start, content_end)`` for each TLV in data[start:end];
    raise ValueError on anything that would read past ``end``."""
    pos = start
    while pos < end:
        if end - pos < 2 or data[pos] & 0x1F == 0x1F:
            raise ValueError("bad DER header")
        first = data[pos + 1]
        if first < 0x80:
            length, header = first, 2
        else:
            n = first & 0x7F
            if not 1 <= n <= 4 or pos + 2 + n > end:
                raise ValueError("bad DER length")
            length, header = int.from_bytes(data[pos + 2 : pos + 2 + n], "big"), 2 + n
        content = pos + header
        if content + length > end:
            raise ValueError("DER element overruns its container")
        yield data[pos], pos, content, content + length
        pos = content + length


def _tbs_field(cert: x509.Certificate, index: int) -> bytes:
    """The raw DER of field ``index`` of tbsCertificate, counting from serialNumber = 0
    (so 4 = subject, 5 = subjectPublicKeyInfo), skipping the optional [0] version."""
    tbs = cert.tbs_certificate_bytes
    try:
        outer = next(_der_items(tbs, 0, len(tbs)))
        fields = [f for f in _der_items(tbs, outer[2], outer[3]) if f[0] != 0xA0]
        _, begin, _, end = fields[index]
    except (StopIteration, IndexError):
        raise ValueError("tbsCertificate too short") from None
    return tbs[begin:end]


def subject_der(cert: x509.Certificate) -> bytes:
    """The certificate's subject Name exactly as encoded in the certificate."""
    return _tbs_field(cert, 4)


def spki_sha1(cert: x509.Certificate) -> bytes:
    """SHA-1 of the certificate's SubjectPublicKeyInfo DER, as CERTREQ carries it
    (RFC 7296 §3.7)."""
    return hashlib.sha1(_tbs_field(cert, 5)).digest()


# --- RFC 7427 AlgorithmIdentifiers ----------------------------------------------------------

_NULL = b"\x05\x00"
_OID_HASH = {
    HashAlg.SHA2_256: "2.16.840.1.101.3.4.2.1",
    HashAlg.SHA2_384: "2.16.840.1.101.3.4.2.2",
    HashAlg.SHA2_512: "2.16.840.1.101.3.4.2.3",
}
_OID_PKCS1 = {  # sha{256,384,512}WithRSAEncryption (RFC 4055 §5)
    HashAlg.SHA2_256: "1.2.840.113549.1.1.11",
    HashAlg.SHA2_384: "1.2.840.113549.1.1.12",
    HashAlg.SHA2_512: "1.2.840.113549.1.1.13",
}
_OID_ECDSA = {  # ecdsa-with-SHA{256,384,512} (RFC 5758 §3.2)
    HashAlg.SHA2_256: "1.2.840.10045.4.3.2",
    HashAlg.SHA2_384: "1.2.840.10045.4.3.3",
    HashAlg.SHA2_512: "1.2.840.10045.4.3.4",
}
_OID_PSS = "1.2.840.113549.1.1.10"
_OID_MGF1 = "1.2.840.113549.1.1.8"

_PKCS1, _PSS, _ECDSA = "pkcs1", "pss", "ecdsa"


def _pss_identifier(hash_alg: HashAlg, *, hash_null: bool) -> bytes:
    """RSASSA-PSS-params (RFC 4055 §3.1) with MGF1 over the same hash and a salt as long as
    the digest, the form of RFC 7427 Appendix A.4.3; ``hash_null`` says whether the hash
    AlgorithmIdentifiers carry NULL parameters (RFC 4055 requires accepting both)."""
    hash_id = _der(0x30, _oid(_OID_HASH[hash_alg]) + (_NULL if hash_null else b""))
    params = (
        _der(0xA0, hash_id)
        + _der(0xA1, _der(0x30, _oid(_OID_MGF1) + hash_id))
        + _der(0xA2, _der(0x02, bytes((_HASHES[hash_alg].digest_size,))))
    )
    return _der(0x30, _oid(_OID_PSS) + _der(0x30, params))


def signature_algorithm_identifier(scheme: str, hash_alg: HashAlg) -> bytes:
    """The AlgorithmIdentifier DER we send in an RFC 7427 AUTH payload (the encodings of
    RFC 7427 Appendix A: A.1 PKCS#1 v1.5 with NULL parameters, A.3 ECDSA without parameters,
    A.4.3 PSS). ``scheme`` is "pkcs1", "pss" or "ecdsa"."""
    if hash_alg not in _HASHES:
        raise ValueError(f"unsupported hash {hash_alg!r} for RFC 7427 signatures")
    if scheme == _PKCS1:
        return _der(0x30, _oid(_OID_PKCS1[hash_alg]) + _NULL)
    if scheme == _ECDSA:
        return _der(0x30, _oid(_OID_ECDSA[hash_alg]))
    if scheme == _PSS:
        return _pss_identifier(hash_alg, hash_null=True)
    raise ValueError(f"unknown signature scheme {scheme!r}")


def _known_identifiers() -> dict[bytes, tuple[str, HashAlg]]:
    table: dict[bytes, tuple[str, HashAlg]] = {}
    for h in _HASHES:
        hash_alg = HashAlg(h)
        for scheme in (_PKCS1, _ECDSA, _PSS):
            table[signature_algorithm_identifier(scheme, hash_alg)] = (scheme, hash_alg)
        table[_pss_identifier(hash_alg, hash_null=False)] = (_PSS, hash_alg)
    return table


#: Every AlgorithmIdentifier we accept, matched byte for byte (no DER parsing of peer input).
_IDENTIFIERS = _known_identifiers()

# RFC 4754 §8: ECDSA method -> (curve, hash); r and s are each the curve's field size wide.
_RFC4754 = {
    AuthMethod.ECDSA_SHA256_P256: (ec.SECP256R1, HashAlg.SHA2_256, 32),
    AuthMethod.ECDSA_SHA384_P384: (ec.SECP384R1, HashAlg.SHA2_384, 48),
    AuthMethod.ECDSA_SHA512_P521: (ec.SECP521R1, HashAlg.SHA2_512, 66),
}


# --- AUTH: sign and verify ------------------------------------------------------------------


def _pss_padding(hash_alg: HashAlg) -> padding.PSS:
    h = _HASHES[hash_alg]
    return padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)


def _classic_method(key: PrivateKey | PublicKey) -> AuthMethod:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return AuthMethod.RSA_SIG
    for method, (curve, _, _) in _RFC4754.items():
        if isinstance(key.curve, curve):
            return method
    raise ValueError(f"no IKEv2 signature method for curve {key.curve.name}")


def sign_auth(
    key: PrivateKey,
    method: int,
    signed_octets: bytes,
    *,
    hash_alg: HashAlg = HashAlg.SHA2_256,
    pss: bool = False,
) -> bytes:
    """Return the AUTH payload data for ``signed_octets``.

    Method 14 (RFC 7427 §3): 1-octet length, AlgorithmIdentifier, signature (ECDSA as DER
    ECDSA-Sig-Value; RSA as PKCS#1 v1.5 or, with ``pss``, RSASSA-PSS). Method 1: PKCS#1 v1.5
    over SHA-1 (RFC 7296 §3.8). Methods 9/10/11: ECDSA per RFC 4754, r|s fixed width.
    """
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if hash_alg not in _HASHES:
            raise ValueError(f"unsupported hash {hash_alg!r} for RFC 7427 signatures")
        h = _HASHES[hash_alg]
        if isinstance(key, rsa.RSAPrivateKey):
            scheme = _PSS if pss else _PKCS1
            pad = _pss_padding(hash_alg) if pss else padding.PKCS1v15()
            sig = key.sign(signed_octets, pad, h)
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            if pss:
                raise ValueError("PSS needs an RSA key")
            scheme = _ECDSA
            sig = key.sign(signed_octets, ec.ECDSA(h))
        else:
            raise ValueError(f"unsupported key type {type(key).__name__}")
        alg_id = signature_algorithm_identifier(scheme, hash_alg)
        return bytes((len(alg_id),)) + alg_id + sig
    if method == AuthMethod.RSA_SIG:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("RSA_SIG needs an RSA key")
        return key.sign(signed_octets, padding.PKCS1v15(), hashes.SHA1())
    if method in _RFC4754:
        curve, hash_id, width = _RFC4754[AuthMethod(method)]
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
            raise ValueError(f"AUTH method {method} needs an ECDSA {curve.name} key")
        r, s = decode_dss_signature(key.sign(signed_octets, ec.ECDSA(_HASHES[hash_id])))
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")
    raise ValueError(f"AUTH method {method} is not a signature method")


def _public_key(peer: x509.Certificate | PublicKey) -> PublicKey:
    key = peer.public_key() if isinstance(peer, x509.Certificate) else peer
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise AuthenticationError(f"unsupported peer key type {type(key).__name__}")
    return key


def verify_auth(
    peer: x509.Certificate | PublicKey,
    method: int,
    auth_data: bytes,
    signed_octets: bytes,
    *,
    accepted_hashes: Iterable[int] = DEFAULT_HASHES,
) -> None:
    """Check the peer's AUTH payload against its (already validated) certificate or key.

    For method 14 the AlgorithmIdentifier must be one we know byte for byte, fit the key type
    and use a hash in ``accepted_hashes``. Raises AuthenticationError on any failure.
    """
    key = _public_key(peer)
    try:
        if method == AuthMethod.DIGITAL_SIGNATURE:
            _verify_rfc7427(key, auth_data, signed_octets, frozenset(accepted_hashes))
        elif method == AuthMethod.RSA_SIG:
            if not isinstance(key, rsa.RSAPublicKey):
                raise AuthenticationError("RSA_SIG AUTH but the peer key is not RSA")
            key.verify(auth_data, signed_octets, padding.PKCS1v15(), hashes.SHA1())
        elif method in _RFC4754:
            _verify_rfc4754(key, AuthMethod(method), auth_data, signed_octets)
        else:
            raise AuthenticationError(f"AUTH method {method} is not a signature method")
    except InvalidSignature:
        raise AuthenticationError("AUTH signature does not verify") from None


def _verify_rfc7427(
    key: PublicKey, auth_data: bytes, signed_octets: bytes, accepted: frozenset[int]
) -> None:
    if not auth_data:
        raise AuthenticationError("empty AUTH data")
    end = 1 + auth_data[0]
    if len(auth_data) <= end:
        raise AuthenticationError("AUTH data shorter than its AlgorithmIdentifier length")
    known = _IDENTIFIERS.get(auth_data[1:end])
    if known is None:
        raise AuthenticationError("unsupported signature AlgorithmIdentifier")
    scheme, hash_alg = known
    if hash_alg not in accepted:
        raise AuthenticationError(f"signature hash {hash_alg.name} not accepted")
    sig, h = auth_data[end:], _HASHES[hash_alg]
    if scheme == _ECDSA:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise AuthenticationError("ECDSA signature but the peer key is not ECDSA")
        key.verify(sig, signed_octets, ec.ECDSA(h))
        return
    if not isinstance(key, rsa.RSAPublicKey):
        raise AuthenticationError("RSA signature but the peer key is not RSA")
    pad = _pss_padding(hash_alg) if scheme == _PSS else padding.PKCS1v15()
    key.verify(sig, signed_octets, pad, h)


def _verify_rfc4754(
    key: PublicKey, method: AuthMethod, auth_data: bytes, signed_octets: bytes
) -> None:
    curve, hash_id, width = _RFC4754[method]
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
        raise AuthenticationError(f"AUTH method {method.value} needs an ECDSA {curve.name} key")
    if len(auth_data) != 2 * width:
        raise AuthenticationError(f"ECDSA AUTH data must be {2 * width} octets")
    r = int.from_bytes(auth_data[:width], "big")
    s = int.from_bytes(auth_data[width:], "big")
    key.verify(encode_dss_signature(r, s), signed_octets, ec.ECDSA(_HASHES[hash_id]))


# --- SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4) ----------------------------------------


def build_signature_hash_algorithms(algs: Iterable[int] = DEFAULT_HASHES) -> bytes:
    """Notify data: each supported hash as a 2-octet IANA value."""
    return b"".join(struct.pack("!H", a) for a in algs)


def parse_signature_hash_algorithms(data: bytes) -> tuple[int, ...]:
    """The peer's hash list; unknown values stay plain ints. Odd length is a ParseError."""
    if len(data) % 2:
        raise ParseError("odd SIGNATURE_HASH_ALGORITHMS length", len(data) - 1,
                         PayloadType.NOTIFY)
    return tuple(HashAlg(v) if v in HashAlg._value2member_map_ else v
                 for (v,) in struct.iter_unpack("!H", data))


def choose_hash(peer_hashes: Iterable[int],
                preferred: Sequence[HashAlg] = DEFAULT_HASHES) -> HashAlg | None:
    """Our most preferred hash that the peer announced, or None if there is none."""
    offered = set(peer_hashes)
    return next((h for h in preferred if h in offered), None)


def choose_auth(key: PrivateKey, peer_hashes: Iterable[int] | None,
                preferred: Sequence[HashAlg] = DEFAULT_HASHES) -> tuple[AuthMethod, HashAlg]:
    """AUTH method and hash to sign with: RFC 7427 when the peer announced a hash we share in
    SIGNATURE_HASH_ALGORITHMS (``peer_hashes``; None when it sent no such notify), else the
    key's classic method, which a peer without RFC 7427 support can still verify."""
    if peer_hashes is not None:
        chosen = choose_hash(peer_hashes, preferred)
        if chosen is not None:
            return AuthMethod.DIGITAL_SIGNATURE, chosen
    method = _classic_method(key)
    if method == AuthMethod.RSA_SIG:
        return method, HashAlg.SHA1
    return method, _RFC4754[method][1]


# --- loading --------------------------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more blocks) or a single DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ValueError(f"cannot load certificate: {exc}") from None


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """An RSA or EC private key from PEM or DER (PKCS#8, PKCS#1 or SEC1)."""
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    key = loader(data, password)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"unsupported private key type {type(key).__name__}")
    return key


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --- our credential -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """Our private key, certificate and the intermediates we send with it.

    ``anchors`` are the CA certificates our chain ends at; they are never sent but let
    ``select_credential`` answer a CERTREQ naming them.
    """

    key: PrivateKey
    cert: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()
    anchors: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        ours = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        theirs = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if ours != theirs:
            raise ValueError("private key does not match the certificate")

    @classmethod
    def from_pem(cls, key_data: bytes, cert_data: bytes, chain_data: bytes = b"",
                 anchor_data: bytes = b"", password: bytes | None = None) -> Credential:
        """From PEM or DER bytes; certificates after the first in ``cert_data`` are taken as
        intermediates, ahead of those in ``chain_data``."""
        cert, *extra = load_certificates(cert_data)
        chain = extra + (load_certificates(chain_data) if chain_data else [])
        anchors = load_certificates(anchor_data) if anchor_data else []
        return cls(load_private_key(key_data, password), cert, tuple(chain), tuple(anchors))

    @classmethod
    def from_files(cls, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str],
                   chain_paths: Iterable[str | os.PathLike[str]] = (),
                   anchor_paths: Iterable[str | os.PathLike[str]] = (),
                   password: bytes | None = None) -> Credential:
        chain = b"".join(_pem_or_der_to_pem(_read(p)) for p in chain_paths)
        anchors = b"".join(_pem_or_der_to_pem(_read(p)) for p in anchor_paths)
        return cls.from_pem(_read(key_path), _read(cert_path), chain, anchors, password)

    def cert_payloads(self) -> tuple[bytes, ...]:
        """CERT payload data (encoding X509_CERT_SIG): end entity first, then intermediates."""
        return tuple(c.public_bytes(serialization.Encoding.DER)
                     for c in (self.cert, *self.intermediates))

    def issuer_key_hashes(self) -> frozenset[bytes]:
        """CERTREQ hashes that this credential answers: its intermediates and anchors."""
        return frozenset(spki_sha1(c) for c in (*self.intermediates, *self.anchors))


def _pem_or_der_to_pem(data: bytes) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in load_certificates(data))


# --- CERTREQ (RFC 7296 §3.7) ----------------------------------------------------------------


def certreq_data(cas: Iterable[x509.Certificate]) -> bytes:
    """CERTREQ payload data (encoding 4): concatenated SHA-1 SPKI hashes of ``cas``."""
    return b"".join(spki_sha1(c) for c in cas)


def parse_certreq(data: bytes) -> tuple[bytes, ...]:
    """The 20-octet CA key hashes in a CERTREQ payload's data."""
    if len(data) % SHA1_LEN:
        raise ParseError("CERTREQ data not a multiple of 20 octets",
                         len(data) - len(data) % SHA1_LEN, PayloadType.CERTREQ)
    return tuple(data[i : i + SHA1_LEN] for i in range(0, len(data), SHA1_LEN))


def select_credential(credentials: Sequence[Credential],
                      requested: Iterable[bytes]) -> Credential | None:
    """The first credential whose chain includes a CA the peer asked for; with no CERTREQ
    (empty ``requested``) the first credential; None when none matches (the engine may then
    send its default credential anyway, as RFC 7296 §3.7 permits)."""
    wanted = set(requested)
    if not wanted:
        return credentials[0] if credentials else None
    return next((c for c in credentials if c.issuer_key_hashes() & wanted), None)


# --- trust store and chain validation -------------------------------------------------------


def _ca_basic_constraints(_policy: object, _cert: x509.Certificate,
                          bc: x509.BasicConstraints) -> None:
    if not bc.ca:
        raise ValueError("issuer is not a CA (basicConstraints cA is false)")


def _ca_key_usage(_policy: object, _cert: x509.Certificate,
                  ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("issuer keyUsage lacks keyCertSign")


def _ee_key_usage(_policy: object, _cert: x509.Certificate,
                  ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.digital_signature:
        raise ValueError("end-entity keyUsage lacks digitalSignature")


def _ike_policies() -> tuple[verification.ExtensionPolicy, verification.ExtensionPolicy]:
    any_crit = verification.Criticality.AGNOSTIC
    ca = (verification.ExtensionPolicy.permit_all()
          .require_present(x509.BasicConstraints, any_crit, _ca_basic_constraints)
          .may_be_present(x509.KeyUsage, any_crit, _ca_key_usage))
    ee = verification.ExtensionPolicy.permit_all().may_be_present(
        x509.KeyUsage, any_crit, _ee_key_usage)
    return ca, ee


def _as_cert(c: bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(c, x509.Certificate):
        return c
    try:
        return x509.load_der_x509_certificate(c)
    except ValueError:
        raise AuthenticationError("malformed certificate in CERT payload") from None


class TrustStore:
    """Trust anchors (CA certificates) against which peers' chains are validated."""

    def __init__(self, anchors: Iterable[x509.Certificate], *, max_chain_depth: int = 8):
        self.anchors = tuple(anchors)
        if not self.anchors:
            raise ValueError("a trust store needs at least one anchor")
        self._store = verification.Store(list(self.anchors))
        self._depth = max_chain_depth
        self._ca_policy, self._ee_policy = _ike_policies()

    @classmethod
    def from_files(cls, *paths: str | os.PathLike[str], max_chain_depth: int = 8) -> TrustStore:
        return cls([c for p in paths for c in load_certificates(_read(p))],
                   max_chain_depth=max_chain_depth)

    def certreq_data(self) -> bytes:
        """Our CERTREQ payload data naming every anchor."""
        return certreq_data(self.anchors)

    def verify(self, end_entity: bytes | x509.Certificate,
               intermediates: Sequence[bytes | x509.Certificate],
               now: datetime) -> tuple[x509.Certificate, ...]:
        """Validate a peer's certificate chain at ``now`` (aware, or naive meaning UTC);
        return it end entity first, anchor last. Raises AuthenticationError with the reason
        on failure."""
        if len(intermediates) > MAX_INTERMEDIATES:
            raise AuthenticationError(f"more than {MAX_INTERMEDIATES} intermediate certificates")
        leaf = _as_cert(end_entity)
        chain = [_as_cert(c) for c in intermediates]
        key = leaf.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise AuthenticationError(f"peer RSA key shorter than {MIN_RSA_BITS} bits")
        verifier = (verification.PolicyBuilder().store(self._store).time(now)
                    .max_chain_depth(self._depth)
                    .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
                    .build_client_verifier())
        try:
            verified = verifier.verify(leaf, chain)
        except verification.VerificationError as exc:
            raise AuthenticationError(f"certificate chain invalid: {exc}") from None
        return tuple(verified.chain)


# --- identities (RFC 7296 §3.5, RFC 4945 §3.1) ---------------------------------------------


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _key_ids(cert: x509.Certificate) -> set[bytes]:
    ids = {x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest}
    with contextlib.suppress(x509.ExtensionNotFound):
        ids.add(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    return ids


def _email_equal(a: str, b: str) -> bool:
    """Local part exact, domain case-insensitive (RFC 5280 §7.5)."""
    la, _, da = a.rpartition("@")
    lb, _, db = b.rpartition("@")
    return la == lb and da.lower() == db.lower()


def cert_matches_identity(cert: x509.Certificate, id_type: int, id_data: bytes) -> bool:
    """Whether ``cert`` carries the IKE identity ``(id_type, id_data)``.

    ID_FQDN: a subjectAltName dNSName, case-insensitive. ID_RFC822_ADDR: a rfc822Name.
    ID_IPV4_ADDR / ID_IPV6_ADDR: an iPAddress of that family. ID_DER_ASN1_DN: the subject
    DN, byte for byte as encoded in the certificate. ID_KEY_ID: the certificate's
    subjectKeyIdentifier, or the RFC 5280 §4.2.1.2 method-1 hash of its public key (the
    identity is opaque in RFC 7296; this is the usual binding). Other types never match.
    The subject CN is never consulted (RFC 4945 §3.1.3).
    """
    if id_type == IdType.DER_ASN1_DN:
        return id_data == subject_der(cert)
    if id_type == IdType.KEY_ID:
        return id_data in _key_ids(cert)
    san = _san(cert)
    if san is None:
        return False
    if id_type == IdType.FQDN:
        try:
            want = id_data.decode("ascii").rstrip(".").lower()
        except UnicodeDecodeError:
            return False
        return any(n.rstrip(".").lower() == want for n in san.get_values_for_type(x509.DNSName))
    if id_type == IdType.RFC822_ADDR:
        try:
            want = id_data.decode("ascii")
        except UnicodeDecodeError:
            return False
        return any(_email_equal(n, want) for n in san.get_values_for_type(x509.RFC822Name))
    if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        size = 4 if id_type == IdType.IPV4_ADDR else 16
        if len(id_data) != size:
            return False
        return any(isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address))
                   and a.packed == id_data for a in san.get_values_for_type(x509.IPAddress))
    return False


def check_identity(cert: x509.Certificate, id_type: int, id_data: bytes) -> None:
    """Raise AuthenticationError unless ``cert`` carries the peer's claimed identity."""
    if not cert_matches_identity(cert, id_type, id_data):
        name = IdType(id_type).name if id_type in IdType._value2member_map_ else str(id_type)
        raise AuthenticationError(f"identity ({name}) not in the peer certificate")


def identity_for_cert(cert: x509.Certificate,
                      id_type: int = IdType.DER_ASN1_DN) -> tuple[int, bytes]:
    """ID payload ``(id_type, id_data)`` for our own certificate: the subject DN by default,
    or the first subjectAltName of the asked type, or the key identifier.
    Raises ValueError if the certificate has no such name."""
    if id_type == IdType.DER_ASN1_DN:
        return id_type, subject_der(cert)
    if id_type == IdType.KEY_ID:
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            return id_type, ski.digest
        except x509.ExtensionNotFound:
            return id_type, x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    san = _san(cert)
    values: list[bytes] = []
    if san is not None:
        if id_type == IdType.FQDN:
            values = [n.encode("ascii") for n in san.get_values_for_type(x509.DNSName)]
        elif id_type == IdType.RFC822_ADDR:
            values = [n.encode("ascii") for n in san.get_values_for_type(x509.RFC822Name)]
        elif id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            family = ipaddress.IPv4Address if id_type == IdType.IPV4_ADDR else ipaddress.IPv6Address
            values = [a.packed for a in san.get_values_for_type(x509.IPAddress)
                      if isinstance(a, family)]
    if not values:
        raise ValueError(f"certificate has no name usable as ID type {id_type}")
    return id_type, values[0]


def verify_peer(store: TrustStore, certs: Sequence[bytes | x509.Certificate], id_type: int,
                id_data: bytes, method: int, auth_data: bytes, signed_octets: bytes,
                now: datetime, *,
                accepted_hashes: Iterable[int] = DEFAULT_HASHES) -> tuple[x509.Certificate, ...]:
    """Authenticate a peer from its CERT payloads (X.509 DER, end entity first), ID payload
    and AUTH payload: chain, then identity, then signature. Returns the validated chain."""
    if not certs:
        raise AuthenticationError("no certificate received")
    chain = store.verify(certs[0], certs[1:], now)
    check_identity(chain[0], id_type, id_data)
    verify_auth(chain[0], method, auth_data, signed_octets, accepted_hashes=accepted_hashes)
    return chain
