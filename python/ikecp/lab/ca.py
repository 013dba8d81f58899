"""Throwaway certificate authorities for tests, demos and the load generator.

``CertAuthority()`` makes a self-signed root; ``ca.intermediate(...)`` a sub-CA; ``ca.issue(...)``
an end-entity certificate for IKE identities (FQDN / e-mail strings, IP addresses). Results
carry both ``cryptography`` objects and PEM bytes, and ``Issued.credential`` is ready for
``ikecp.pki``.

Key generation dominates the cost (RSA-2048 takes tens of milliseconds), so end-entity keys
are shared per key type unless ``fresh_key=True``: issuing a certificate then costs one
signature, which lets a load generator give every simulated FAP its own certificate.
Never use these for anything but tests: keys are cached in process memory, unencrypted.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ..pki import Credential, PrivateKey

KeyType = Literal["rsa2048", "rsa4096", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"]
Identity = str | ipaddress.IPv4Address | ipaddress.IPv6Address

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ecdsa-p256": ec.SECP256R1,
    "ecdsa-p384": ec.SECP384R1,
    "ecdsa-p521": ec.SECP521R1,
}


def new_key(key_type: KeyType) -> PrivateKey:
    """A freshly generated private key of ``key_type``."""
    if key_type in ("rsa2048", "rsa4096"):  # 4096: big chains, for IKE fragmentation tests
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    raise ValueError(f"unknown key type {key_type!r}")


@functools.cache
def shared_key(key_type: KeyType) -> PrivateKey:
    """One process-wide key per type, reused across certificates to keep issuing cheap."""
    return new_key(key_type)


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384() if key.curve.key_size <= 384 else hashes.SHA512()
    return hashes.SHA256()


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ikecp test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(identity: Identity) -> x509.GeneralName:
    if isinstance(identity, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return x509.IPAddress(identity)
    if "@" in identity:
        return x509.RFC822Name(identity)
    return x509.DNSName(identity)


@dataclass(frozen=True)
class Issued:
    """An end-entity certificate with its key, the intermediates to send and the root."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    root: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)

    @property
    def cert_pem(self) -> bytes:
        return _pem([self.cert])

    @property
    def chain_pem(self) -> bytes:
        return _pem(self.chain)

    @property
    def credential(self) -> Credential:
        return Credential(self.key, self.cert, self.chain, (self.root,))


class CertAuthority:
    """A CA that signs certificates; a root unless made by ``intermediate``.

    ``is_ca=False`` makes a deliberately broken issuer (basicConstraints cA false) for
    negative tests; ``path_length`` sets basicConstraints pathLenConstraint. Validity runs
    from ``now - 1 day`` to ``now + days``.
    """

    def __init__(self, name: str = "ikecp test root CA", *, key_type: KeyType = "ecdsa-p256",
                 now: datetime | None = None, days: int = 3650,
                 parent: CertAuthority | None = None, is_ca: bool = True,
                 path_length: int | None = None) -> None:
        self.now = now or datetime.now(timezone.utc)
        self.key = new_key(key_type)
        self.name = _name(name)
        issuer = parent or self
        builder = (self._builder(self.name, issuer.name, self.key, days)
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length),
                                  critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=False, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                       decipher_only=False), critical=True))
        if parent is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                critical=False)
        self.cert = builder.sign(issuer.key, _signing_hash(issuer.key))
        self.root: x509.Certificate = parent.root if parent else self.cert
        #: Certificates between this CA and the root, this CA first (empty for a root).
        self.chain: tuple[x509.Certificate, ...] = (
            (self.cert, *parent.chain) if parent else ())

    @property
    def cert_pem(self) -> bytes:
        return _pem([self.cert])

    def _builder(self, subject: x509.Name, issuer: x509.Name, key: PrivateKey,
                 days: int, not_before: datetime | None = None) -> x509.CertificateBuilder:
        start = not_before or self.now - timedelta(days=1)
        return (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + timedelta(days=days))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False))

    def intermediate(self, name: str, **kwargs: object) -> CertAuthority:
        """A sub-CA signed by this CA (same keyword arguments as the constructor)."""
        kwargs.setdefault("now", self.now)
        return CertAuthority(name, parent=self, **kwargs)  # type: ignore[arg-type]

    def issue(self, identities: Iterable[Identity] = (), *, common_name: str | None = None,
              key_type: KeyType = "ecdsa-p256", key: PrivateKey | None = None,
              fresh_key: bool = False, not_before: datetime | None = None, days: int = 365,
              digital_signature: bool = True) -> Issued:
        """An end-entity certificate whose subjectAltName carries ``identities``
        (strings with "@" become rfc822Name, other strings dNSName, IP addresses iPAddress).
        ``digital_signature=False`` sets a keyUsage without it, for negative tests."""
        ids = list(identities)
        if key is None:
            key = new_key(key_type) if fresh_key else shared_key(key_type)
        cn = common_name or (str(ids[0]) if ids else "ikecp test end entity")
        builder = self._builder(_name(cn), self.name, key, days, not_before).add_extension(
            x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                          key_encipherment=not digital_signature, data_encipherment=False,
                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
        if ids:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(i) for i in ids]), critical=False)
        cert = builder.sign(self.key, _signing_hash(self.key))
        return Issued(key, cert, self.chain, self.root)


@dataclass(frozen=True)
class PemFiles:
    """Where ``write_pki`` put one end entity's certificate and private key."""

    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class PkiFiles:
    """The CA certificate and the end entities' files, by name (see ``write_pki``)."""

    ca_cert: Path
    identities: dict[str, PemFiles]


def write_pki(directory: Path, names: Iterable[str] = ("segw.test", "fap.test")) -> PkiFiles:
    """Write ``ca.pem`` and ``<name>.pem`` / ``<name>.key.pem`` (ECDSA P-256, dNSName = name)
    into ``directory``: the file layout a third-party peer such as strongSwan loads."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertAuthority()
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.cert_pem)
    files = {}
    for name in names:
        issued = ca.issue([name], fresh_key=True)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key.pem"
        cert_path.write_bytes(issued.cert_pem)
        key_path.write_bytes(issued.key_pem)
        key_path.chmod(0o600)
        files[name] = PemFiles(name, cert_path, key_path)
    return PkiFiles(ca_path, files)
