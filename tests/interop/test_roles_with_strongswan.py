"""The ``ikecp segw`` and ``ikecp fap`` programs against strongSwan through the kernel NAPT,
configured by TOML files; the SeGW's binding registry read back with ``ikecp bindings``."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time

import pytest
from ikecp.lab import netns, strongswan
from ikecp.lab.ca import CertAuthority
from ikecp_roles import bindings, role, wait_bindings
from interop_peers import FAP_ID, IKECP_POOL, PSK, SEGW_ID, SS_POOL, require_peers
from test_fap_to_strongswan import segw_config
from test_strongswan_to_segw import CORE_NET, fap_config

pytestmark = [pytest.mark.peer, pytest.mark.netns]

X25519 = "aes256gcm16-prfsha256-x25519"


def segw_toml(tmp_path) -> dict:
    return {"identity": SEGW_ID, "listen": netns.SEGW_ADDR, "psk": PSK, "pool": IKECP_POOL,
            "bindings": str(tmp_path / "bindings.sqlite"), "dpd": 0}


def fap_toml() -> dict:
    return {"identity": FAP_ID, "segw": netns.SEGW_ADDR, "segw_id": SEGW_ID, "psk": PSK,
            "proposals": [X25519], "esp_proposals": ["aes256gcm16"], "dpd": 0,
            "retransmit_timeout": 0.5, "retries": 3}


def test_strongswan_fap_to_ikecp_segw_program(tmp_path):
    require_peers()
    db = tmp_path / "bindings.sqlite"
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", segw_toml(tmp_path), tmp_path) as segw, \
            strongswan.charon(fap_config(X25519, "aes256gcm16"), netns=topo.fap) as ss:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        out = ss.initiate("net")
        assert "initiate completed successfully" in out, out
        i = ss.wait_for_sa()
        (b,) = wait_bindings(db, lambda rows: len(rows) == 1)

        public = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
        assert public[0] == netns.RTR_OUTSIDE_ADDR
        assert b["identity"] == FAP_ID
        assert (b["public_ip"], b["public_port"]) == public
        assert (b["spi_i"], b["spi_r"]) == (i.raw["initiator-spi"], i.raw["responder-spi"])
        assert ipaddress.ip_address(b["inner_ip"]) in ipaddress.ip_network(IKECP_POOL)
        assert i.local_vips == (b["inner_ip"],) and i.nat_local
        (child,) = i.children.values()
        assert child["state"] == "INSTALLED" and child["remote-ts"] == [CORE_NET]
        assert sorted(b["child_spis"]) == sorted([child["spi-in"], child["spi-out"]])
        # Look-ups a mobile core would make.
        assert bindings(db, "--inner-ip", b["inner_ip"]) == [b]
        assert bindings(db, "--public", f"{public[0]}:{public[1]}") == [b]
        assert bindings(db, "--identity", FAP_ID) == [b]

        # strongSwan deletes: the binding leaves the registry.
        ss.terminate()
        wait_bindings(db, lambda rows: rows == [])
        assert segw.stop() == 0


def test_ikecp_fap_program_to_strongswan_segw(tmp_path):
    require_peers()
    with netns.nat_topology() as topo, \
            strongswan.charon(segw_config(X25519, "aes256gcm16"), netns=topo.segw) as ss, \
            role(topo, "fap", "fap", fap_toml(), tmp_path, "--json") as fap:
        status = fap.wait_status(lambda s: s["state"] == "established")
        r = ss.wait_for_sa()
        assert (status["spi_i"], status["spi_r"]) == (r.raw["initiator-spi"],
                                                      r.raw["responder-spi"])
        assert status["nat_detected"] is True and r.nat_remote
        assert ipaddress.ip_address(status["inner_ip"]) in ipaddress.ip_network(SS_POOL)
        assert r.remote_vips == (status["inner_ip"],)
        # strongSwan does not know attribute 23: no public address, the SA stays up.
        assert status["public_ip"] is None and status["public_port"] is None
        assert "absent" in status["nat_info"]
        (child,) = r.children.values()
        assert child["state"] == "INSTALLED"
        assert (r.remote_host, r.remote_port) == topo.nat_mappings()[(netns.FAP_ADDR, 4500)]

        # SIGTERM: the FAP deletes its SA and strongSwan drops it.
        assert fap.stop() == 0
        ss.wait_for_log(r"deleting IKE_SA ikecp\[1\]|IKE_SA ikecp\[1\] state change: .* => "
                        r"DELETING", timeout=5)
        assert ss.list_sas() == []


def test_ikecp_fap_program_reconnects_when_strongswan_deletes(tmp_path):
    """strongSwan, the SeGW, deletes the IKE SA (as it does when an IKE rekey is refused and the
    FAP does not reauthenticate); the FAP program establishes a new one by itself."""
    require_peers()
    with netns.nat_topology() as topo, \
            strongswan.charon(segw_config(X25519, "aes256gcm16"), netns=topo.segw) as ss, \
            role(topo, "fap", "fap", {**fap_toml(), "reconnect": 0.5}, tmp_path,
                 "--json") as fap:
        first = fap.wait_status(lambda s: s["state"] == "established")
        ss.terminate()
        fap.wait_status(lambda s: s["state"] != "established")
        second = fap.wait_status(lambda s: s["state"] == "established", timeout=20)
        assert second["established"] == first["established"] + 1
        assert second["spi_i"] != first["spi_i"]
        r = ss.wait_for_sa()
        assert (r.raw["initiator-spi"], r.raw["responder-spi"]) == (second["spi_i"],
                                                                    second["spi_r"])
        (child,) = r.children.values()
        assert child["state"] == "INSTALLED"
        assert r.remote_vips == (second["inner_ip"],)


def pem_files(tmp_path) -> dict:
    """One test CA, ECDSA P-256 certificates for both ends, written as PEM files."""
    root = CertAuthority("ikecp interop root CA")
    out = {"ca": tmp_path / "ca.pem"}
    out["ca"].write_bytes(root.cert_pem)
    for name, ident in (("fap", FAP_ID), ("segw", SEGW_ID)):
        issued = root.issue([ident], fresh_key=True)
        for kind, data in (("cert", issued.cert_pem), ("key", issued.key_pem)):
            out[f"{name}_{kind}"] = tmp_path / f"{name}-{kind}.pem"
            out[f"{name}_{kind}"].write_bytes(data)
    return out


def cert_toml(base: dict, files: dict, me: str) -> dict:
    cfg = {k: v for k, v in base.items() if k != "psk"}
    cfg.update(cert=str(files[f"{me}_cert"]), key=str(files[f"{me}_key"]), ca=[str(files["ca"])])
    return cfg


def test_strongswan_fap_with_certificates_to_ikecp_segw_program(tmp_path):
    """Certificates from config files. We announce SIGNATURE_HASH_ALGORITHMS, so strongSwan
    signs with RFC 7427 (method 14), which the SeGW's default verifier checks."""
    require_peers()
    files, db = pem_files(tmp_path), tmp_path / "bindings.sqlite"
    fap = fap_config(X25519, "aes256gcm16", psk=None, cert=files["fap_cert"],
                     key=files["fap_key"], cacert=files["ca"])
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", cert_toml(segw_toml(tmp_path), files, "segw"),
                 tmp_path) as segw, \
            strongswan.charon(fap, netns=topo.fap) as ss:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        out = ss.initiate("net")
        assert "initiate completed successfully" in out, out
        (b,) = wait_bindings(db, lambda rows: len(rows) == 1)
        assert b["identity"] == FAP_ID
        assert (b["public_ip"], b["public_port"]) == topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
        log = ss.log()
        assert "authentication of 'fap.interop.test' (myself) with ECDSA_WITH_SHA256_DER" in log
        assert re.search(r"parsed IKE_SA_INIT response 0 \[ .*CERTREQ .*N\(HASH_ALG\)", log)


def test_ikecp_fap_program_with_certificates_to_strongswan_segw(tmp_path):
    require_peers()
    files = pem_files(tmp_path)
    segw = dataclasses.replace(segw_config(X25519, "aes256gcm16"), psk=None,
                               cert=files["segw_cert"], key=files["segw_key"],
                               cacert=files["ca"])
    with netns.nat_topology() as topo, strongswan.charon(segw, netns=topo.segw) as ss, \
            role(topo, "fap", "fap", cert_toml(fap_toml(), files, "fap"), tmp_path,
                 "--json") as fap:
        status = fap.wait_status(lambda s: s["state"] == "established")
        r = ss.wait_for_sa()
        assert (status["spi_i"], status["spi_r"]) == (r.raw["initiator-spi"],
                                                      r.raw["responder-spi"])
        assert r.remote_vips == (status["inner_ip"],)
        log = ss.log()
        assert "authentication of 'segw.interop.test' (myself) with ECDSA_WITH_SHA256_DER" in log
        assert "authentication of 'fap.interop.test' with ECDSA_WITH_SHA256_DER successful" in log


def test_binding_follows_a_kernel_nat_rebinding(tmp_path):
    """The router forgets idle UDP mappings after a second; strongSwan's liveness checks every
    two seconds then leave through a new random port. The SeGW must move the binding to the
    new public port (an authenticated request from a new address, RFC 7296 §2.23)."""
    require_peers()
    db = tmp_path / "bindings.sqlite"
    fap = fap_config(X25519, "aes256gcm16")
    fap = dataclasses.replace(fap, conn_extra={"dpd_delay": "2s"})
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", segw_toml(tmp_path), tmp_path) as segw, \
            strongswan.charon(fap, netns=topo.fap) as ss:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        assert "initiate completed successfully" in ss.initiate("net")
        (first,) = wait_bindings(db, lambda rows: len(rows) == 1)
        for name in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            topo.run_cmd("rtr", ["sysctl", "-qw", f"net.netfilter.{name}=1"])
        (moved,) = wait_bindings(
            db, lambda rows: len(rows) == 1 and rows[0]["public_port"] != first["public_port"],
            timeout=15)
        assert moved["spi_i"] == first["spi_i"] and moved["identity"] == FAP_ID
        assert moved["public_ip"] == netns.RTR_OUTSIDE_ADDR
        assert ss.wait_for_sa().state == "ESTABLISHED"


def test_strongswan_segw_follows_the_ikecp_fap_through_a_rebinding(tmp_path):
    """The same rebinding the other way: the ikecp FAP's liveness checks leave through new
    ports; strongSwan, the SeGW, follows them and the SA stays up."""
    require_peers()
    with netns.nat_topology() as topo, \
            strongswan.charon(segw_config(X25519, "aes256gcm16"), netns=topo.segw) as ss, \
            role(topo, "fap", "fap", {**fap_toml(), "dpd": 2.0}, tmp_path, "--json") as fap:
        status = fap.wait_status(lambda s: s["state"] == "established")
        first = ss.wait_for_sa()
        for name in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            topo.run_cmd("rtr", ["sysctl", "-qw", f"net.netfilter.{name}=1"])
        deadline = time.monotonic() + 15
        while (sa := ss.wait_for_sa()).remote_port == first.remote_port:
            assert time.monotonic() < deadline, "strongSwan never saw a new port"
            time.sleep(0.3)
        assert sa.raw["initiator-spi"] == status["spi_i"] and sa.remote_host == first.remote_host
        assert re.search(r"remote endpoint changed from 198\.51\.100\.1\[\d+\] to "
                         r"198\.51\.100\.1\[\d+\]", ss.log())
        # The same SA (same SPI, one SA), so the FAP did not have to reconnect.
        assert [s.raw["initiator-spi"] for s in ss.list_sas()] == [status["spi_i"]]
        assert fap.proc.poll() is None
