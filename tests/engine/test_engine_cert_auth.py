"""Certificate authentication through the engine (``CertAuthenticator``), in memory."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
from engine_pair import NAT_PUBLIC_IP, Pair, fap_settings, segw_settings
from ikecp import pki
from ikecp.const import AuthMethod, NotifyType
from ikecp.engine import Identity
from ikecp.engine.cert_auth import CertAuthenticator
from ikecp.engine.events import (
    IkeSaEstablished,
    PeerBinding,
    ProtocolErrorSent,
    PublicAddressLearned,
    SaFailed,
)
from ikecp.testing.ca import CertAuthority

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
FAP_NAME = "fap-0001.example.net"


def clock() -> datetime:
    return NOW


def cert_settings(fap_method=AuthMethod.DIGITAL_SIGNATURE,
                  segw_method=AuthMethod.DIGITAL_SIGNATURE, fap_ca=None, fap_name=FAP_NAME):
    """FAP: ECDSA P-256 certificate from a sub-CA; SeGW: RSA-2048 from the root."""
    root = CertAuthority("operator root", now=NOW)
    fap_cert = (fap_ca or root.intermediate("femto sub-CA")).issue([FAP_NAME])
    segw_cert = root.issue(["segw.example.net"], key_type="rsa2048")
    trust = pki.TrustStore([root.cert])
    segw_id = Identity.der_dn(pki.subject_der(segw_cert.cert))
    fap = fap_settings(
        auth=CertAuthenticator(fap_cert.credential, trust, method=fap_method, clock=clock),
        peer_auth=CertAuthenticator(None, trust, method=segw_method, clock=clock))
    fap = dataclasses.replace(fap, local_id=Identity.fqdn(fap_name), remote_id=segw_id)
    segw = segw_settings(
        auth=CertAuthenticator(segw_cert.credential, trust, method=segw_method,
                               hash_alg=pki.HashAlg.SHA2_384, pss=True, clock=clock),
        peer_auth=CertAuthenticator(None, trust, method=fap_method, clock=clock))
    segw = dataclasses.replace(segw, local_id=segw_id)
    return fap, segw


@pytest.mark.parametrize(("fap_method", "segw_method"), [
    (AuthMethod.DIGITAL_SIGNATURE, AuthMethod.DIGITAL_SIGNATURE),
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
