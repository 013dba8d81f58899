"""Each way IKE_AUTH can fail gives one ``AuthenticationFailed`` event with its class and the
identity the peer claimed (what the SeGW logs at WARNING), and never the secret."""

from __future__ import annotations

import pytest
from engine_pair import FAP_ID, PSK, Pair, fap_settings, segw_settings
from ikecp.engine import Identity, PskAuthenticator, auth
from ikecp.events import AuthenticationFailed, SaFailed
from test_engine_cert_auth import cert_settings

OTHER = Identity.fqdn("fap-9999.example.net")


def failures(pair: Pair, side: str) -> list[AuthenticationFailed]:
    return pair.events(side, AuthenticationFailed)


@pytest.mark.parametrize(("responder_auth", "failure"), [
    (PskAuthenticator(b"another secret of 32 octets....."), auth.BAD_AUTH),
    (PskAuthenticator(peers={OTHER: PSK}), auth.UNKNOWN_IDENTITY),
])
def test_psk_failures_are_classified(backend, responder_auth, failure) -> None:
    pair = Pair(backend, fap_settings(), segw_settings(auth=responder_auth)).run()
    (ev,) = failures(pair, "r")
    assert (ev.identity, ev.failure) == (FAP_ID, failure)
    assert PSK.decode() not in ev.reason and "another secret" not in ev.reason
    assert pair.events("r", SaFailed)  # the SA still fails as before


def test_unexpected_identity_is_classified(backend) -> None:
    pair = Pair(backend, fap_settings(), segw_settings(remote_id=OTHER)).run()
    (ev,) = failures(pair, "r")
    assert (ev.identity, ev.failure) == (FAP_ID, auth.WRONG_IDENTITY)


def test_certificate_failure_is_classified(backend) -> None:
    # The FAP claims an identity its certificate does not carry.
    fap, segw = cert_settings(fap_name="not-in-the-cert.example.net")
    pair = Pair(backend, fap, segw).run()
    (ev,) = failures(pair, "r")
    assert ev.failure == auth.CERTIFICATE
    assert ev.identity == Identity.fqdn("not-in-the-cert.example.net")
    assert "certificate" in ev.reason


def test_initiator_reports_a_responder_that_fails_too(backend) -> None:
    """The FAP side classifies the SeGW's AUTH the same way."""
    class Split(PskAuthenticator):
        def sign(self, sa, octets):
            return PskAuthenticator(b"a wrong secret of 32 octets.....").sign(sa, octets)

    pair = Pair(backend, fap_settings(), segw_settings(auth=Split(PSK))).run()
    (ev,) = failures(pair, "i")
    assert ev.failure == auth.BAD_AUTH and not failures(pair, "r")
