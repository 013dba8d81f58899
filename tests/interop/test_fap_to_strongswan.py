"""ikecp femtocell -> strongSwan SeGW through the kernel NAPT (issue 4, "Interop").

strongSwan (Debian's 5.9.8) answers as the SeGW in the segw namespace; ikecp's engine runs on
real UDP sockets in the fap namespace, behind nftables masquerade. strongSwan does not know
EXTERNAL_SOURCE_IP4_NAT_INFO (23): it must leave it out of CFG_REPLY and the FAP must carry on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest
from ikecp import pki
from ikecp._backend import backend
from ikecp.const import AuthMethod, ConfigAttr, NotifyType
from ikecp.engine.cert_auth import CertAuthenticator
from ikecp.events import (
    ChildSaEstablished,
    ConfigReceived,
    IkeSaEstablished,
    NatDetected,
    NatInfoNotSupported,
    PublicAddressLearned,
    SaDeleted,
    SaFailed,
)
from ikecp.lab import netns, strongswan
from ikecp.lab.ca import CertAuthority
from ikecp.lab.strongswan import CharonConfig, Child
from interop_peers import (
    FAP_ID,
    PSK,
    SEGW_ID,
    SS_POOL,
    fap_settings,
    ikecp_loop,
    require_peers,
)

pytestmark = [pytest.mark.peer, pytest.mark.netns]

SEGW = (netns.SEGW_ADDR, 500)
X25519 = "aes256gcm16-prfsha256-x25519"


def segw_config(proposal: str, esp: str, **kw: object) -> CharonConfig:
    kw.setdefault("psk", PSK)
    return CharonConfig(
        role="responder", local_addrs=netns.SEGW_ADDR, local_id=SEGW_ID, remote_id=FAP_ID,
        proposals=proposal, pools={"vip4": SS_POOL},
        children=(Child(local_ts=("0.0.0.0/0",), esp_proposals=esp),), **kw)  # type: ignore[arg-type]


def nat_source_hash(loop) -> bytes:
    """strongSwan's NAT_DETECTION_SOURCE_IP from its IKE_SA_INIT response (first datagram in)."""
    first = next(wire for d, port, _, wire in loop.trace if d == "in" and port == 500)
    (n,) = backend.decode_message(first).notifies(NotifyType.NAT_DETECTION_SOURCE_IP)
    return n.data


def real_source_hash(sa) -> bytes:
    return backend.nat_detection_hash(sa.spi_i, sa.spi_r,
                                      ipaddress.IPv4Address(SEGW[0]).packed, SEGW[1])


def run_fap_against_strongswan(proposal: str, esp: str, ss_kw: dict | None = None,
                               fap_kw: dict | None = None, log_has: tuple[str, ...] = ()
                               ) -> None:
    require_peers()
    with netns.nat_topology() as topo, \
            strongswan.charon(segw_config(proposal, esp, **(ss_kw or {})),
                              netns=topo.segw) as ss, \
            ikecp_loop(topo, "fap", netns.FAP_ADDR) as loop:
        sa = loop.initiate(fap_settings(proposal, esp, **(fap_kw or {})), SEGW)

        def up(evs):
            if any(isinstance(e, SaFailed) for _, e in evs):
                raise AssertionError(f"ikecp FAP failed: {evs}\n{ss.log_tail()}")
            return any(isinstance(e, ChildSaEstablished) for _, e in evs)

        loop.wait_for(up, timeout=15)
        (est,) = loop.events_of(IkeSaEstablished)
        (nat,) = loop.events_of(NatDetected)
        (child,) = loop.events_of(ChildSaEstablished)
        (cfg,) = loop.events_of(ConfigReceived)
        (not_supported,) = loop.events_of(NatInfoNotSupported)
        assert loop.events_of(PublicAddressLearned) == []

        # strongSwan's view: one IKE SA, established, with our SPIs, NAT seen, our CHILD_SA.
        r = ss.wait_for_sa()
        assert bytes.fromhex(r.raw["initiator-spi"]) == est.spi_i == sa.spi_i
        assert bytes.fromhex(r.raw["responder-spi"]) == est.spi_r
        assert r.remote_host == netns.RTR_OUTSIDE_ADDR and r.nat_remote and not r.nat_local
        assert (r.local_host, r.local_port) == (netns.SEGW_ADDR, 4500)
        # What strongSwan saw is what the kernel NAT assigned to our port 4500.
        assert topo.nat_mappings()[(netns.FAP_ADDR, 4500)] == (r.remote_host, r.remote_port)

        # NAT detected on our side, floated to 4500 on both ends.
        assert nat.local_behind_nat
        assert est.local_addr == (netns.FAP_ADDR, 4500) and est.remote_addr == (SEGW[0], 4500)
        # strongSwan's kernel-libipsec forces UDP encapsulation by sending a NAT_DETECTION_
        # SOURCE_IP that is not the hash of its real address: we must then see it as NATed.
        assert nat.remote_behind_nat == (nat_source_hash(loop) != real_source_hash(sa))

        # Virtual IP from strongSwan's pool, the same on both sides.
        vips = [a.value for a in cfg.attributes if a.type == ConfigAttr.INTERNAL_IP4_ADDRESS]
        assert len(vips) == 1
        vip = str(ipaddress.IPv4Address(vips[0]))
        assert ipaddress.ip_address(vip) in ipaddress.ip_network(SS_POOL)
        assert r.remote_vips == (vip,)

        # Attribute 23 was asked for (strongSwan parsed it and names it EXTSRC4) and strongSwan
        # left it out of its reply, without harm.
        log = ss.log()
        assert re.search(r"parsed IKE_AUTH request 1 \[ IDi .*CPRQ\(ADDR EXTSRC4\) SA", log)
        assert re.search(r"generating IKE_AUTH response 1 \[ IDr .*CPRP\(ADDR\) SA", log)
        for pattern in log_has:
            assert re.search(pattern, log), pattern
        assert all(a.type != ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO for a in cfg.attributes)
        assert "absent" in not_supported.reason

        # CHILD_SA installed on strongSwan with our SPIs and the narrowed selectors.
        (ss_child,) = r.children.values()
        assert ss_child["state"] == "INSTALLED" and ss_child["encap"] == "yes"
        assert bytes.fromhex(ss_child["spi-in"]) == child.spi_out
        assert bytes.fromhex(ss_child["spi-out"]) == child.spi_in
        assert ss_child["remote-ts"] == [f"{vip}/32"]
        assert child.encapsulated

        # Clean delete from our side; strongSwan drops the SA.
        loop.call(sa.delete)
        loop.wait_for(lambda evs: any(isinstance(e, SaDeleted) for _, e in evs), timeout=10)
        ss.wait_for_log(r"IKE_SA .* deleted|deleting IKE_SA", timeout=5)
        assert ss.list_sas() == []


def test_psk_x25519_aes_gcm():
    run_fap_against_strongswan("aes256gcm16-prfsha256-x25519", "aes256gcm16")


def test_psk_modp2048_aes_cbc_hmac_sha256():
    run_fap_against_strongswan("aes256-sha256-modp2048", "aes256-sha256")


def test_certificates_x25519_aes_gcm(tmp_path):
    """ECDSA P-256 certificates from one test CA. strongSwan (default ``send_cert = ifasked``)
    sends its certificate because we ask with CERTREQ. Our verifier here takes only ECDSA-256
    (method 9), so we announce no SIGNATURE_HASH_ALGORITHMS and strongSwan signs the classic
    way; it verifies our RFC 7427 signature. (The RFC 7427 way back: test_roles_with_strongswan.)
    """
    root = CertAuthority("ikecp interop root CA")
    fap_cert = root.issue([FAP_ID], fresh_key=True)
    segw_cert = root.issue([SEGW_ID], fresh_key=True)
    files = {"ca.pem": root.cert_pem, "segw.pem": segw_cert.cert_pem,
             "segw.key": segw_cert.key_pem}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    trust = pki.TrustStore([root.cert])
    run_fap_against_strongswan(
        "aes256gcm16-prfsha256-x25519", "aes256gcm16",
        ss_kw={"psk": None, "cert": tmp_path / "segw.pem", "key": tmp_path / "segw.key",
               "cacert": tmp_path / "ca.pem"},
        fap_kw={"auth": CertAuthenticator(fap_cert.credential, trust),
                "peer_auth": CertAuthenticator(None, trust,
                                               method=AuthMethod.ECDSA_SHA256_P256)},
        log_has=(r'received cert request for "O=ikecp test, CN=ikecp interop root CA"',
                 r'sending end entity cert "O=ikecp test, CN=segw\.interop\.test"',
                 r"authentication of 'fap\.interop\.test' with ECDSA_WITH_SHA256_DER successful",
                 r"generating IKE_AUTH response 1 \[ IDr CERT AUTH"))


@pytest.mark.parametrize(("text", "learned"), [
    ("d@ABCD", ("100.64.65.66", 17220)),       # 6 octets: address and port
    ("d@AB", ("100.64.65.66", None)),          # 4 octets: the draft's address-only form
    ("0xc633644d115c", None),                  # 14 octets: malformed, must do no harm
])
def test_fap_reads_nat_info_encoded_by_strongswan(text, learned):
    """strongSwan cannot compute attribute 23, but a pool can carry a fixed value for a numbered
    attribute: its CFG_REPLY then holds a 23 with those octets, which our FAP must read as
    address and port (a third party's encoding of the attribute, not our own). swanctl passes
    the value's text as the octets ("0x..." arrives as 14 ASCII octets), so the address and
    port are chosen printable: "d@ABCD" is 100.64.65.66:17220 (CGNAT space)."""
    require_peers()
    cfg = dataclasses.replace(segw_config(X25519, "aes256gcm16"),
                              pool_attrs={"vip4": {"23": text}})
    with netns.nat_topology() as topo, strongswan.charon(cfg, netns=topo.segw) as ss, \
            ikecp_loop(topo, "fap", netns.FAP_ADDR) as loop:
        loop.initiate(fap_settings(X25519, "aes256gcm16"), SEGW)
        loop.wait_for(lambda evs: any(isinstance(e, ChildSaEstablished) for _, e in evs))
        (cfg_reply,) = loop.events_of(ConfigReceived)
        assert [a.value for a in cfg_reply.attributes
                if a.type == ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO] == [text.encode()]
        assert re.search(r"generating IKE_AUTH response 1 \[ IDr AUTH CPRP\(ADDR EXTSRC4\)",
                         ss.log())
        if learned is None:
            assert loop.events_of(PublicAddressLearned) == []
            (why,) = loop.events_of(NatInfoNotSupported)
            assert "14" in why.reason
        else:
            (got,) = loop.events_of(PublicAddressLearned)
            assert (got.address, got.port, got.attr_type) == (*learned, 23)
            assert loop.events_of(NatInfoNotSupported) == []
        assert ss.wait_for_sa().state == "ESTABLISHED"
