"""strongSwan femtocell -> ikecp SeGW through the kernel NAPT (issue 4, "Interop").

strongSwan initiates from the fap namespace behind nftables masquerade and asks for a virtual
IP; ikecp's engine answers on real UDP sockets in the segw namespace with its own pool. The
binding the SeGW reports must hold strongSwan's identity and the address:port the kernel NAT
assigned (read from the router's conntrack table).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from ikecp import pki
from ikecp.const import AuthMethod
from ikecp.cp import AddressPool, CpRegistry, NatInfoProvider, PoolProvider
from ikecp.engine import Identity, PskAuthenticator, Settings, selector
from ikecp.engine.cert_auth import CertAuthenticator
from ikecp.events import (
    ChildSaEstablished,
    IkeSaEstablished,
    NatDetected,
    PeerBinding,
    SaDeleted,
    SaFailed,
)
from ikecp.lab import netns, strongswan
from ikecp.lab.ca import CertAuthority
from ikecp.lab.strongswan import CharonConfig, Child
from interop_peers import FAP_ID, IKECP_POOL, PSK, SEGW_ID, ikecp_loop, require_peers

pytestmark = [pytest.mark.peer, pytest.mark.netns]

#: The operator network behind the SeGW that the FAP's CHILD_SA protects.
CORE_NET = "10.99.0.0/16"


def segw_settings(**kw: Any) -> Settings:
    registry = (CpRegistry()
                .add_provider(PoolProvider(AddressPool(IKECP_POOL)))
                .add_provider(NatInfoProvider()))
    kw.setdefault("auth", PskAuthenticator(PSK.encode()))
    return Settings(local_id=Identity.fqdn(SEGW_ID), local_ts=(selector(CORE_NET),),
                    cp=registry, **kw)


def fap_config(proposal: str, esp: str, **kw: Any) -> CharonConfig:
    # kernel-libipsec (userspace ESP) installs the CHILD_SA; seen here with remote_ts
    # 0.0.0.0/0 too (it adds an exclude route for the SeGW). With kernel-netlink alone the
    # SAD entry fails with ENOSYS and strongSwan deletes the CHILD_SA, keeping the IKE SA.
    return CharonConfig(
        role="initiator", local_addrs=netns.FAP_ADDR, remote_addrs=netns.SEGW_ADDR,
        local_id=FAP_ID, remote_id=SEGW_ID, proposals=proposal, vips=("0.0.0.0",),
        children=(Child(remote_ts=(CORE_NET,), esp_proposals=esp),),
        **{"psk": PSK, **kw})


@pytest.mark.parametrize(("proposal", "esp"), [
    ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
])
def test_strongswan_fap_to_ikecp_segw(proposal, esp):
    run_strongswan_fap(fap_config(proposal, esp), segw_settings())


def test_strongswan_fap_with_certificates(tmp_path):
    """ECDSA P-256 certificates. Our verifier here takes only ECDSA-256 (method 9), so we do
    not answer strongSwan's SIGNATURE_HASH_ALGORITHMS and it signs the classic way; we sign
    with RFC 7427 (14). strongSwan sends its certificate because we send CERTREQ."""
    root = CertAuthority("ikecp interop root CA")
    fap_cert = root.issue([FAP_ID], fresh_key=True)
    segw_cert = root.issue([SEGW_ID], fresh_key=True)
    for name, data in {"ca.pem": root.cert_pem, "fap.pem": fap_cert.cert_pem,
                       "fap.key": fap_cert.key_pem}.items():
        (tmp_path / name).write_bytes(data)
    trust = pki.TrustStore([root.cert])
    segw = segw_settings(
        auth=CertAuthenticator(segw_cert.credential, trust),
        peer_auth=CertAuthenticator(None, trust, method=AuthMethod.ECDSA_SHA256_P256))
    fap = fap_config("aes256gcm16-prfsha256-x25519", "aes256gcm16", psk=None,
                     cert=tmp_path / "fap.pem", key=tmp_path / "fap.key",
                     cacert=tmp_path / "ca.pem")
    run_strongswan_fap(fap, segw)


def run_strongswan_fap(fap: CharonConfig, segw: Settings) -> None:
    require_peers()
    with netns.nat_topology() as topo, \
            ikecp_loop(topo, "segw", netns.SEGW_ADDR, responder=segw) as loop, \
            strongswan.charon(fap, netns=topo.fap) as ss:
        out = ss.initiate("net")
        assert "initiate completed successfully" in out, out
        i = ss.wait_for_sa()
        loop.wait_for(lambda evs: any(isinstance(e, PeerBinding) for _, e in evs), timeout=5)
        assert loop.events_of(SaFailed) == []
        (est,) = loop.events_of(IkeSaEstablished)
        (nat,) = loop.events_of(NatDetected)
        (child,) = loop.events_of(ChildSaEstablished)
        (binding,) = loop.events_of(PeerBinding)

        # The same IKE SA on both sides, strongSwan's identity authenticated by us.
        assert bytes.fromhex(i.raw["initiator-spi"]) == est.spi_i == binding.spi_i
        assert bytes.fromhex(i.raw["responder-spi"]) == est.spi_r == binding.spi_r
        assert est.remote_id == Identity.fqdn(FAP_ID) == binding.peer_id

        # NAT: we see the peer behind one, strongSwan sees itself behind one; both on 4500.
        assert nat.remote_behind_nat and not nat.local_behind_nat
        assert i.nat_local and (i.local_host, i.local_port) == (netns.FAP_ADDR, 4500)

        # The binding holds the translated address:port, exactly what the kernel NAT chose.
        public = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
        assert public[0] == netns.RTR_OUTSIDE_ADDR
        assert (binding.public_address, binding.public_port) == public
        assert est.remote_addr == public

        # Virtual IP from ikecp's pool, installed by strongSwan.
        assert binding.inner_address is not None
        assert ipaddress.ip_address(binding.inner_address) in ipaddress.ip_network(IKECP_POOL)
        assert i.local_vips == (binding.inner_address,)

        # strongSwan's CHILD_SA (userspace ESP through kernel-libipsec) is installed.
        (ss_child,) = i.children.values()
        assert ss_child["state"] == "INSTALLED", ss.log_tail()
        assert ss_child["encap"] == "yes"
        assert bytes.fromhex(ss_child["spi-out"]) == child.spi_in
        assert bytes.fromhex(ss_child["spi-in"]) == child.spi_out
        assert ss_child["local-ts"] == [f"{binding.inner_address}/32"]
        assert ss_child["remote-ts"] == [CORE_NET]
        assert binding.child_spis == (child.spi_in, child.spi_out)

        # strongSwan deletes; our SA learns it from the peer.
        ss.terminate()
        loop.wait_for(lambda evs: any(isinstance(e, SaDeleted) and e.by_peer for _, e in evs),
                      timeout=10)
        assert ss.list_sas() == []
