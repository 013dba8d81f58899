"""Exchanges beyond the first handshake against strongSwan through the kernel NAPT: KE group
negotiation (INVALID_KE_PAYLOAD) both ways, liveness checks both ways, and a DELETE started by
strongSwan as the responder (a request in the responder-to-initiator direction)."""

from __future__ import annotations

import dataclasses

import pytest
from ikecp.const import DhGroup, NotifyType
from ikecp.engine import IkeProposal
from ikecp.events import (
    ChildSaEstablished,
    IkeSaEstablished,
    LivenessConfirmed,
    PeerBinding,
    ProtocolErrorSent,
    SaDeleted,
    SaFailed,
)
from ikecp.lab import netns, strongswan
from ikecp_roles import role, wait_bindings
from interop_peers import fap_settings, ikecp_loop, require_peers
from test_fap_to_strongswan import SEGW, segw_config
from test_roles_with_strongswan import segw_toml
from test_strongswan_to_segw import fap_config, segw_settings

pytestmark = [pytest.mark.peer, pytest.mark.netns]

X25519_ONLY = "aes256gcm16-prfsha256-x25519"


def child_up(evs):
    if any(isinstance(e, SaFailed) for _, e in evs):
        raise AssertionError(f"ikecp SA failed: {evs}")
    return any(isinstance(e, ChildSaEstablished) for _, e in evs)


def test_fap_retries_with_the_group_strongswan_asks_for():
    """We open with an ECP-256 KE; strongSwan accepts only X25519 and says INVALID_KE."""
    require_peers()
    with netns.nat_topology() as topo, \
            strongswan.charon(segw_config(X25519_ONLY, "aes256gcm16"), netns=topo.segw) as ss, \
            ikecp_loop(topo, "fap", netns.FAP_ADDR) as loop:
        loop.initiate(fap_settings("aes256gcm16-prfsha256-ecp256-x25519", "aes256gcm16"), SEGW)
        loop.wait_for(child_up, timeout=15)
        (est,) = loop.events_of(IkeSaEstablished)
        assert est.dh == DhGroup.CURVE25519
        log = ss.log()
        assert "generating IKE_SA_INIT response 0 [ N(INVAL_KE) ]" in log
        assert ss.wait_for_sa().raw["dh-group"] == "CURVE_25519"


def test_strongswan_retries_with_the_group_we_ask_for():
    """strongSwan opens with ECP-256; the ikecp SeGW accepts only X25519."""
    require_peers()
    settings = segw_settings()

    settings = dataclasses.replace(settings, ike_proposals=(IkeProposal.parse(X25519_ONLY),))
    with netns.nat_topology() as topo, \
            ikecp_loop(topo, "segw", netns.SEGW_ADDR, responder=settings) as loop, \
            strongswan.charon(fap_config("aes256gcm16-prfsha256-ecp256-x25519", "aes256gcm16"),
                              netns=topo.fap) as ss:
        out = ss.initiate("net")
        assert "initiate completed successfully" in out, out
        loop.wait_for(lambda evs: any(isinstance(e, PeerBinding) for _, e in evs), timeout=5)
        errors = loop.events_of(ProtocolErrorSent)
        assert [e.notify_type for e in errors] == [NotifyType.INVALID_KE_PAYLOAD]
        assert "peer didn't accept DH group ECP_256, it requested CURVE_25519" in ss.log()
        assert ss.wait_for_sa().raw["dh-group"] == "CURVE_25519"


def test_liveness_both_ways_and_delete_by_strongswan_segw():
    require_peers()
    cfg = segw_config(X25519_ONLY, "aes256gcm16", conn_extra={"dpd_delay": "1s"})
    with netns.nat_topology() as topo, \
            strongswan.charon(cfg, netns=topo.segw) as ss, \
            ikecp_loop(topo, "fap", netns.FAP_ADDR) as loop:
        sa = loop.initiate(fap_settings(X25519_ONLY, "aes256gcm16"), SEGW)
        loop.wait_for(child_up, timeout=15)
        # strongSwan's DPD: an empty INFORMATIONAL request from the responder; we answer.
        ss.wait_for_log(r"parsed INFORMATIONAL response 0 \[ \]", timeout=10)
        # Our liveness check; strongSwan answers.
        loop.call(sa.check_liveness)
        loop.wait_for(lambda evs: any(isinstance(e, LivenessConfirmed) for _, e in evs))
        assert ss.wait_for_sa().state == "ESTABLISHED"
        # strongSwan, the responder, deletes the IKE SA; we learn it from the peer.
        ss.terminate()
        loop.wait_for(lambda evs: any(isinstance(e, SaDeleted) and e.by_peer for _, e in evs))
        assert ss.list_sas() == []
        assert loop.events_of(SaFailed) == []


def test_strongswan_break_before_make_reauthentication(tmp_path):
    """strongSwan's default reauthentication: DELETE, then a new IKE_SA started on the NAT-T
    port. The ikecp SeGW program must answer that IKE_SA_INIT with the non-ESP marker, so the
    new SA comes up at once (no retransmission) and the binding registry follows it."""
    require_peers()
    cfg = dataclasses.replace(fap_config(X25519_ONLY, "aes256gcm16"),
                              conn_extra={"rekey_time": "0", "reauth_time": "2s",
                                          "over_time": "10s", "rand_time": "0s"})
    db = tmp_path / "bindings.sqlite"
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", segw_toml(tmp_path), tmp_path) as segw, \
            strongswan.charon(cfg, netns=topo.fap) as ss:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        assert "initiate completed successfully" in ss.initiate("net")
        (first,) = wait_bindings(db, lambda rows: len(rows) == 1)
        ss.wait_for_log(r"reauthenticating IKE_SA ikecp\[1\]")
        (second,) = wait_bindings(
            db, lambda rows: len(rows) == 1 and rows[0]["spi_i"] != first["spi_i"])
        sa = ss.wait_for_sa()
        assert (sa.raw["initiator-spi"], sa.raw["responder-spi"]) == (second["spi_i"],
                                                                      second["spi_r"])
        assert (sa.local_port, sa.remote_port) == (4500, 4500)
        assert "retransmit" not in ss.log()
        assert (second["public_ip"], second["public_port"]) == \
            topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
