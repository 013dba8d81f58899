"""ikecp.pki: RFC 7427 encodings, AUTH sign/verify, chain validation, identities, CERTREQ."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings
from hypothesis import strategies as st
from ikecp import pki
from ikecp.const import AuthMethod, IdType
from ikecp.errors import AuthenticationError, ParseError
from ikecp.lab.ca import CertAuthority, new_key, shared_key
from ikecp.pki import HashAlg

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DER = serialization.Encoding.DER
OCTETS = b"IKE_AUTH signed octets: message | nonce | prf(SK_p, ID)"
V4 = ipaddress.ip_address("100.64.0.7")
V6 = ipaddress.ip_address("2001:db8::7")
IDS = ("fap7.femto.example.net", "fap7@femto.example.net", V4, V6)


@pytest.fixture(scope="module")
def root() -> CertAuthority:
    return CertAuthority("root", now=NOW)


@pytest.fixture(scope="module")
def sub(root: CertAuthority) -> CertAuthority:
    return root.intermediate("sub")


@pytest.fixture(scope="module")
def store(root: CertAuthority) -> pki.TrustStore:
    return pki.TrustStore([root.cert])


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(DER)


# --- RFC 7427 AlgorithmIdentifiers ----------------------------------------------------------

# Hex from RFC 7427 Appendix A (A.1.2-A.1.4, A.3.2-A.3.4, A.4.3), the "Length = n" dumps.
RFC7427_APPENDIX_A = {
    ("pkcs1", HashAlg.SHA2_256): "300d06092a864886f70d01010b0500",
    ("pkcs1", HashAlg.SHA2_384): "300d06092a864886f70d01010c0500",
    ("pkcs1", HashAlg.SHA2_512): "300d06092a864886f70d01010d0500",
    ("ecdsa", HashAlg.SHA2_256): "300a06082a8648ce3d040302",
    ("ecdsa", HashAlg.SHA2_384): "300a06082a8648ce3d040303",
    ("ecdsa", HashAlg.SHA2_512): "300a06082a8648ce3d040304",
    ("pss", HashAlg.SHA2_256): (
        "3041 0609 2a86 4886 f70d 0101 0a30 34a0 0f30 0d06 0960 8648 0165 0304 0201 0500"
        " a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500"
        " a203 0201 20"
    ),
}


@pytest.mark.parametrize(("scheme", "hash_alg"), list(RFC7427_APPENDIX_A))
def test_algorithm_identifier_equals_rfc7427(scheme: str, hash_alg: HashAlg) -> None:
    expected = bytes.fromhex(RFC7427_APPENDIX_A[(scheme, hash_alg)])
    assert pki.signature_algorithm_identifier(scheme, hash_alg) == expected


def _cert_signature_algorithm(cert: x509.Certificate) -> bytes:
    """signatureAlgorithm DER of a certificate: the element after tbsCertificate."""
    data = der(cert)
    pos = data.index(cert.tbs_certificate_bytes) + len(cert.tbs_certificate_bytes)
    assert data[pos] == 0x30 and data[pos + 1] < 0x80
    return data[pos : pos + 2 + data[pos + 1]]


@pytest.mark.parametrize("hash_alg", [HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512])
@pytest.mark.parametrize("scheme", ["pkcs1", "pss", "ecdsa"])
def test_algorithm_identifier_matches_openssl_encoding(scheme: str, hash_alg: HashAlg) -> None:
    """Cross-check against the encoder cryptography uses for certificate signatures."""
    key = shared_key("ecdsa-p256" if scheme == "ecdsa" else "rsa2048")
    h = pki._HASHES[hash_alg]
    pss = padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.DIGEST_LENGTH)
    name = x509.Name([])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
            .sign(key, h, rsa_padding=pss if scheme == "pss" else None))
    encoded = _cert_signature_algorithm(cert)
    assert encoded == pki.signature_algorithm_identifier(scheme, hash_alg)
    assert pki._IDENTIFIERS[encoded] == (scheme, hash_alg)


# --- AUTH sign / verify ---------------------------------------------------------------------

CASES = [
    *[("rsa2048", AuthMethod.DIGITAL_SIGNATURE, h, pss)
      for h in (HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512) for pss in (False, True)],
    *[(kt, AuthMethod.DIGITAL_SIGNATURE, h, False)
      for kt in ("ecdsa-p256", "ecdsa-p384")
      for h in (HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512)],
    ("rsa2048", AuthMethod.RSA_SIG, HashAlg.SHA1, False),
    ("ecdsa-p256", AuthMethod.ECDSA_SHA256_P256, HashAlg.SHA2_256, False),
    ("ecdsa-p384", AuthMethod.ECDSA_SHA384_P384, HashAlg.SHA2_384, False),
    ("ecdsa-p521", AuthMethod.ECDSA_SHA512_P521, HashAlg.SHA2_512, False),
]


@pytest.mark.parametrize(("key_type", "method", "hash_alg", "pss"), CASES)
def test_auth_round_trip_and_rejections(key_type, method, hash_alg, pss) -> None:
    key = shared_key(key_type)
    data = pki.sign_auth(key, method, OCTETS, hash_alg=hash_alg, pss=pss)
    pki.verify_auth(key.public_key(), method, data, OCTETS)

    if method == AuthMethod.DIGITAL_SIGNATURE:
        scheme = "pss" if pss else ("pkcs1" if key_type == "rsa2048" else "ecdsa")
        alg_id = pki.signature_algorithm_identifier(scheme, hash_alg)
        assert data[0] == len(alg_id) and data[1 : 1 + len(alg_id)] == alg_id
    elif method != AuthMethod.RSA_SIG:  # RFC 4754: r | s, each the field size
        assert len(data) == 2 * {256: 32, 384: 48, 521: 66}[key.curve.key_size]

    with pytest.raises(AuthenticationError):
        pki.verify_auth(key.public_key(), method, data, OCTETS[:-1] + b"!")
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(AuthenticationError):
        pki.verify_auth(key.public_key(), method, tampered, OCTETS)
    with pytest.raises(AuthenticationError):
        pki.verify_auth(new_key(key_type).public_key(), method, data, OCTETS)


def test_pss_identifier_without_hash_null_is_accepted() -> None:
    """RFC 4055 §2.1: hash AlgorithmIdentifier parameters may be absent as well as NULL."""
    key = shared_key("rsa2048")
    data = pki.sign_auth(key, AuthMethod.DIGITAL_SIGNATURE, OCTETS, pss=True)
    sent_id = data[1 : 1 + data[0]]
    bare_id = pki._pss_identifier(HashAlg.SHA2_256, hash_null=False)
    assert len(bare_id) == len(sent_id) - 4  # two NULLs fewer
    pki.verify_auth(key.public_key(), AuthMethod.DIGITAL_SIGNATURE,
                    bytes((len(bare_id),)) + bare_id + data[1 + data[0] :], OCTETS)


def test_auth_mismatches_are_authentication_errors() -> None:
    rsa_key, ec_key = shared_key("rsa2048"), shared_key("ecdsa-p256")
    ec_auth = pki.sign_auth(ec_key, AuthMethod.DIGITAL_SIGNATURE, OCTETS)
    cases = [
        (rsa_key, AuthMethod.DIGITAL_SIGNATURE, ec_auth),  # ECDSA identifier, RSA key
        (ec_key, AuthMethod.RSA_SIG, b"\x00" * 256),
        (shared_key("ecdsa-p384"), AuthMethod.ECDSA_SHA256_P256, b"\x01" * 64),  # wrong curve
        (ec_key, AuthMethod.ECDSA_SHA256_P256, b"\x01" * 63),  # wrong width
        (ec_key, AuthMethod.DIGITAL_SIGNATURE, b""),
        (ec_key, AuthMethod.DIGITAL_SIGNATURE, ec_auth[:13]),  # nothing after the identifier
        (ec_key, AuthMethod.DIGITAL_SIGNATURE, b"\xff" + ec_auth[1:]),  # length overruns
        (ec_key, AuthMethod.DIGITAL_SIGNATURE, b"\x02\x05\x00" + ec_auth[13:]),  # unknown id
        (ec_key, AuthMethod.SHARED_KEY_MIC, ec_auth),
    ]
    for key, method, data in cases:
        with pytest.raises(AuthenticationError):
            pki.verify_auth(key.public_key(), method, data, OCTETS)
    with pytest.raises(AuthenticationError, match="not accepted"):
        pki.verify_auth(ec_key.public_key(), AuthMethod.DIGITAL_SIGNATURE, ec_auth, OCTETS,
                        accepted_hashes=[HashAlg.SHA2_512])


def test_sign_rejects_key_method_mismatch() -> None:
    with pytest.raises(ValueError):
        pki.sign_auth(shared_key("ecdsa-p256"), AuthMethod.RSA_SIG, OCTETS)
    with pytest.raises(ValueError):
        pki.sign_auth(shared_key("ecdsa-p384"), AuthMethod.ECDSA_SHA256_P256, OCTETS)
    with pytest.raises(ValueError):
        pki.sign_auth(shared_key("ecdsa-p256"), AuthMethod.DIGITAL_SIGNATURE, OCTETS, pss=True)
    with pytest.raises(ValueError):
        pki.sign_auth(shared_key("rsa2048"), AuthMethod.DIGITAL_SIGNATURE, OCTETS,
                      hash_alg=HashAlg.SHA1)


def test_signature_hash_algorithms_notify() -> None:
    assert pki.build_signature_hash_algorithms() == bytes.fromhex("000200030004")
    assert pki.parse_signature_hash_algorithms(bytes.fromhex("00040009000100")[:6]) == (
        HashAlg.SHA2_512, 9, HashAlg.SHA1)
    with pytest.raises(ParseError):
        pki.parse_signature_hash_algorithms(b"\x00\x02\x00")
    assert pki.choose_hash([HashAlg.SHA2_512, HashAlg.SHA2_384]) == HashAlg.SHA2_384
    assert pki.choose_hash([HashAlg.SHA1, 5]) is None
    ec_key = shared_key("ecdsa-p384")
    assert pki.choose_auth(ec_key, [4]) == (AuthMethod.DIGITAL_SIGNATURE, HashAlg.SHA2_512)
    assert pki.choose_auth(ec_key, None) == (AuthMethod.ECDSA_SHA384_P384, HashAlg.SHA2_384)
    assert pki.choose_auth(shared_key("rsa2048"), [1])[0] == AuthMethod.RSA_SIG


# --- chain validation -----------------------------------------------------------------------


def test_chain_validates_with_intermediate(root, sub, store) -> None:
    for key_type in ("ecdsa-p256", "rsa2048"):
        issued = sub.issue(IDS, key_type=key_type)
        chain = store.verify(der(issued.cert), [der(c) for c in issued.chain], NOW)
        assert chain == (issued.cert, sub.cert, root.cert)
        data = pki.sign_auth(issued.key, AuthMethod.DIGITAL_SIGNATURE, OCTETS)
        pki.verify_auth(chain[0], AuthMethod.DIGITAL_SIGNATURE, data, OCTETS)


def test_chain_rejections(root, sub, store) -> None:
    good = sub.issue(IDS)
    inter = [der(sub.cert)]
    other_root = CertAuthority("other root", now=NOW)
    not_ca = root.intermediate("not a CA", is_ca=False)
    bad_ku = sub.issue(IDS, digital_signature=False)
    expired = sub.issue(IDS, not_before=NOW - timedelta(days=30), days=10)
    short_root = CertAuthority("pathlen 0 root", now=NOW, path_length=0)
    too_deep = short_root.intermediate("below pathlen 0").issue(IDS)
    cases = {
        "expired": (good.cert, inter, NOW + timedelta(days=400)),
        "expired ee": (expired.cert, inter, NOW),
        "not yet valid": (good.cert, inter, NOW - timedelta(days=2)),
        "wrong CA": (other_root.issue(IDS).cert, [], NOW),
        "missing intermediate": (good.cert, [], NOW),
        "non-CA issuer": (not_ca.issue(IDS).cert, [der(not_ca.cert)], NOW),
        "keyUsage without digitalSignature": (bad_ku.cert, inter, NOW),
        "malformed DER": (der(good.cert)[:-5], inter, NOW),
        "too many intermediates": (good.cert, inter * 9, NOW),
    }
    for why, (leaf, chain, when) in cases.items():
        with pytest.raises(AuthenticationError) as info:
            store.verify(leaf, chain, when)
        assert info.value.reason, why
    with pytest.raises(AuthenticationError, match="path length"):
        pki.TrustStore([short_root.cert]).verify(too_deep.cert, too_deep.chain, NOW)


def test_verify_peer_runs_chain_identity_and_signature(root, sub, store) -> None:
    issued = sub.issue(IDS)
    certs = issued.credential.cert_payloads()
    id_type, id_data = pki.identity_for_cert(issued.cert, IdType.FQDN)
    auth = pki.sign_auth(issued.key, AuthMethod.DIGITAL_SIGNATURE, OCTETS)
    chain = pki.verify_peer(store, certs, id_type, id_data, AuthMethod.DIGITAL_SIGNATURE,
                            auth, OCTETS, NOW)
    assert chain[0] == issued.cert and chain[-1] == root.cert
    bad = [
        ([], id_data, auth, "no certificate"),
        (certs[:1], id_data, auth, "chain invalid"),
        (certs, b"someone.else.example", auth, "identity"),
        (certs, id_data, auth[:-2] + b"\x00\x00", "does not verify"),
    ]
    for peer_certs, peer_id, peer_auth, reason in bad:
        with pytest.raises(AuthenticationError, match=reason):
            pki.verify_peer(store, peer_certs, id_type, peer_id, AuthMethod.DIGITAL_SIGNATURE,
                            peer_auth, OCTETS, NOW)


def test_short_rsa_end_entity_rejected(sub, store) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = sub.issue(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(AuthenticationError, match="2048"):
        store.verify(weak.cert, [sub.cert], NOW)


# --- identities -----------------------------------------------------------------------------


def test_identity_matching(sub) -> None:
    cert = sub.issue(IDS).cert
    matches = [
        (IdType.FQDN, b"FAP7.femto.example.net"),
        (IdType.RFC822_ADDR, b"fap7@FEMTO.example.net"),
        (IdType.IPV4_ADDR, V4.packed),
        (IdType.IPV6_ADDR, V6.packed),
        (IdType.DER_ASN1_DN, cert.subject.public_bytes()),
        (IdType.KEY_ID, cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest),
    ]
    for id_type, data in matches:
        assert pki.cert_matches_identity(cert, id_type, data), id_type
        pki.check_identity(cert, id_type, data)
        assert pki.identity_for_cert(cert, id_type)[1].lower() == data.lower()
    mismatches = [
        (IdType.FQDN, b"fap8.femto.example.net"),
        (IdType.FQDN, b"\xff"),
        (IdType.RFC822_ADDR, b"FAP7@femto.example.net"),  # local part is case-sensitive
        (IdType.IPV4_ADDR, ipaddress.ip_address("100.64.0.8").packed),
        (IdType.IPV4_ADDR, V6.packed),  # wrong length for the type
        (IdType.IPV6_ADDR, V4.packed),
        (IdType.DER_ASN1_DN, sub.cert.subject.public_bytes()),
        (IdType.KEY_ID, b"\x00" * 20),
        (IdType.DER_ASN1_GN, b""),
    ]
    for id_type, data in mismatches:
        assert not pki.cert_matches_identity(cert, id_type, data), (id_type, data)
        with pytest.raises(AuthenticationError):
            pki.check_identity(cert, id_type, data)


def test_identity_for_cert_without_san(sub) -> None:
    cert = sub.issue([], common_name="no alt names").cert
    assert pki.identity_for_cert(cert) == (IdType.DER_ASN1_DN, cert.subject.public_bytes())
    assert not pki.cert_matches_identity(cert, IdType.FQDN, b"no alt names")  # CN not used
    with pytest.raises(ValueError):
        pki.identity_for_cert(cert, IdType.FQDN)


# --- CERTREQ --------------------------------------------------------------------------------


def test_certreq_hashes_match_independent_sha1(root) -> None:
    rsa_root = CertAuthority("rsa root", key_type="rsa2048", now=NOW)
    expected = b""
    for cert in (root.cert, rsa_root.cert):
        spki = cert.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        digest = hashlib.sha1(spki).digest()
        assert pki.spki_sha1(cert) == digest
        expected += digest
    data = pki.TrustStore([root.cert, rsa_root.cert]).certreq_data()
    assert data == expected and len(data) == 40
    assert pki.parse_certreq(data) == (expected[:20], expected[20:])
    with pytest.raises(ParseError):
        pki.parse_certreq(data[:-1])


def test_select_credential_by_certreq(root, sub) -> None:
    other = CertAuthority("other root", now=NOW)
    cred_a, cred_b = sub.issue(IDS).credential, other.issue(IDS).credential
    creds = [cred_a, cred_b]
    assert pki.select_credential(creds, [pki.spki_sha1(other.cert)]) is cred_b
    assert pki.select_credential(creds, [pki.spki_sha1(sub.cert)]) is cred_a  # intermediate
    assert pki.select_credential(creds, pki.parse_certreq(pki.certreq_data([root.cert]))) is cred_a
    assert pki.select_credential(creds, [b"\x00" * 20]) is None
    assert pki.select_credential(creds, []) is cred_a


# --- loading --------------------------------------------------------------------------------


def test_credential_from_pem_and_files(root, sub, tmp_path) -> None:
    issued = sub.issue(IDS, key_type="rsa2048")
    cred = pki.Credential.from_pem(issued.key_pem, issued.cert_pem, issued.chain_pem,
                                   root.cert_pem)
    assert cred.cert_payloads() == (der(issued.cert), der(sub.cert))
    assert cred.anchors == (root.cert,)
    # files: DER certificate, PEM key, bundle of end entity + intermediate in one PEM file
    (tmp_path / "ee.der").write_bytes(der(issued.cert))
    (tmp_path / "sub.pem").write_bytes(issued.chain_pem)
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    (tmp_path / "root.der").write_bytes(der(root.cert))
    from_files = pki.Credential.from_files(tmp_path / "key.pem", tmp_path / "ee.der",
                                           [tmp_path / "sub.pem"], [tmp_path / "root.der"])
    assert from_files.cert_payloads() == cred.cert_payloads()
    assert from_files.issuer_key_hashes() == {pki.spki_sha1(sub.cert), pki.spki_sha1(root.cert)}
    (tmp_path / "bundle.pem").write_bytes(issued.cert_pem + issued.chain_pem)
    bundled = pki.Credential.from_files(tmp_path / "key.pem", tmp_path / "bundle.pem")
    assert bundled.intermediates == (sub.cert,)
    store = pki.TrustStore.from_files(tmp_path / "root.der")
    assert store.verify(*cred.cert_payloads()[:1], cred.cert_payloads()[1:], NOW)[-1] == root.cert
    with pytest.raises(ValueError, match="does not match"):
        pki.Credential(shared_key("ecdsa-p384"), issued.cert)
    with pytest.raises(ValueError):
        pki.load_certificates(b"not a certificate")


# --- hostile input --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from([1, 2, 9, 10, 11, 14, 200]), data=st.binary(max_size=300))
def test_random_auth_data_only_raises_authentication_error(method: int, data: bytes) -> None:
    for key_type in ("rsa2048", "ecdsa-p256"):
        with pytest.raises(AuthenticationError):
            pki.verify_auth(shared_key(key_type).public_key(), method, data, OCTETS)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_peer_input_gives_structured_errors(data: bytes) -> None:
    store = pki.TrustStore([shared_ca().cert])
    with pytest.raises(AuthenticationError):
        store.verify(data, [data], NOW)
    try:
        assert all(len(h) == 20 for h in pki.parse_certreq(data))
    except ParseError as exc:
        assert exc.payload == 38 and len(data) % 20
    try:
        assert len(pki.parse_signature_hash_algorithms(data)) == len(data) // 2
    except ParseError:
        assert len(data) % 2


@functools.cache
def shared_ca() -> CertAuthority:
    return CertAuthority("hypothesis root", now=NOW)
