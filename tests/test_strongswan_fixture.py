"""strongSwan as a test peer: initiator behind the kernel NAPT, responder on the operator side."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ikecp.lab import netns, strongswan
from ikecp.lab.ca import write_pki
from ikecp.lab.strongswan import Charon, CharonConfig, Child, parse_raw
from ikecp.testing.facility import require

PSK = strongswan.TEST_PSK
POOL = strongswan.TEST_POOL
INNER = "198.51.100.200"  # an operator-side host behind the SeGW, reached through the tunnel


@pytest.fixture
def peers():
    require(netns.probe())
    require(strongswan.probe())
    with netns.nat_topology() as topo:
        with strongswan.charon(strongswan.segw_responder(), netns=topo.segw) as resp, \
                strongswan.charon(strongswan.fap_initiator(), netns=topo.fap) as init:
            yield topo, resp, init
        assert not Path(resp.workdir).exists()


@pytest.mark.peer
@pytest.mark.netns
def test_strongswan_through_kernel_napt(peers):
    topo, resp, init = peers
    out = init.initiate("net")
    assert "initiate completed successfully" in out

    r = resp.wait_for_sa()
    i = init.wait_for_sa()
    assert r.raw["initiator-spi"] == i.raw["initiator-spi"]
    assert r.raw["responder-spi"] == i.raw["responder-spi"]
    for sa in (r, i):
        assert (sa.raw["encr-alg"], sa.raw["encr-keysize"]) == ("AES_GCM_16", "256")
        assert (sa.raw["prf-alg"], sa.raw["dh-group"]) == ("PRF_HMAC_SHA2_256", "CURVE_25519")

    # NAT detected on both sides, both floated to 4500.
    assert r.nat_remote and not r.nat_local
    assert i.nat_local
    assert (i.local_host, i.local_port) == (netns.FAP_ADDR, 4500)
    assert (r.local_host, r.local_port) == (netns.SEGW_ADDR, 4500)

    # The responder sees the router's public address and the port the kernel NAPT chose for
    # the FAP's 4500: exactly what EXTERNAL_SOURCE_IP4_NAT_INFO must carry.
    assert r.remote_host == netns.RTR_OUTSIDE_ADDR
    assert topo.nat_mappings()[(netns.FAP_ADDR, 4500)] == (r.remote_host, r.remote_port)

    # Virtual IP from the responder's pool, the same on both sides.
    assert len(i.local_vips) == 1 and i.local_vips == r.remote_vips
    assert ipaddress.ip_address(i.local_vips[0]) in ipaddress.ip_network(POOL)

    # CHILD_SA (userspace ESP through kernel-libipsec) installed on the responder.
    (child,) = r.children.values()
    assert (child["state"], child["encap"]) == ("INSTALLED", "yes")
    assert child["remote-ts"] == [f"{i.local_vips[0]}/32"]

    assert "IKE_SA ikecp[1] established" in resp.log()

    # ESP-in-UDP data both ways (userspace ESP through kernel-libipsec on both sides). The
    # SeGW's own IKE address is excluded from the tunnel, so the inner peer is another one.
    topo.run_cmd("segw", ["ip", "addr", "add", f"{INNER}/32", "dev", "lo"])
    srv, cli = topo.socket("segw"), topo.socket("fap")
    try:
        srv.settimeout(5)
        cli.settimeout(5)
        srv.bind((INNER, 7000))
        cli.bind((i.local_vips[0], 0))
        cli.sendto(b"inner", (INNER, 7000))
        data, frm = srv.recvfrom(100)
        assert (data, frm[0]) == (b"inner", i.local_vips[0])  # arrived untranslated: tunnelled
        srv.sendto(b"reply", frm)
        assert cli.recvfrom(100) == (b"reply", (INNER, 7000))
    finally:
        srv.close()
        cli.close()
    for c in (resp, init):
        (child,) = c.wait_for_sa().children.values()
        assert (child["packets-in"], child["packets-out"]) == ("1", "1")

    init.terminate()
    assert init.list_sas() == []
    resp.wait_for_log(r"deleting IKE_SA ikecp\[1\]|IKE_SA deleted", timeout=5)
    assert resp.list_sas() == []


@pytest.mark.peer
@pytest.mark.netns
def test_libipsec_initiator_child_sa_cannot_cover_the_peer_itself():
    """Pins down the CHILD_SA failure seen in the lab: a remote TS equal to the SeGW's own
    address would route IKE traffic into the tunnel, so kernel-libipsec refuses to install it;
    the IKE_SA stays up. (0.0.0.0/0 works: charon adds an exclude route for the peer.)"""
    require(netns.probe())
    require(strongswan.probe())
    peer_only = (Child(remote_ts=(f"{netns.SEGW_ADDR}/32",)),)
    with netns.nat_topology() as topo, \
            strongswan.charon(strongswan.segw_responder(), netns=topo.segw) as resp, \
            strongswan.charon(strongswan.fap_initiator(children=peer_only),
                              netns=topo.fap) as init:
        with pytest.raises(strongswan.CharonError):
            init.initiate("net")
        init.wait_for_log("conflicts with IKE traffic")
        assert init.wait_for_sa().children == {}
        assert resp.wait_for_sa().state == "ESTABLISHED"


def test_config_rendering_and_raw_parsing():
    cfg = strongswan.fap_initiator()
    text = strongswan.swanctl_conf(cfg)
    assert "vips = 0.0.0.0\n" in text
    assert "proposals = aes256gcm16-prfsha256-x25519\n" in text
    assert f'secret = "{PSK}"\n' in text
    conf = strongswan.strongswan_conf(cfg, Path("/tmp/x"))
    assert "routing_table = 0\n" in conf
    assert "socket = unix:///tmp/x/charon.vici\n" in conf
    with pytest.raises(ValueError):
        CharonConfig(role="initiator", local_addrs="198.51.100.10")  # no credentials
    with pytest.raises(ValueError):
        strongswan.render({"a": "x\ny"})

    raw = ("list-sa event {ikecp {state=ESTABLISHED remote-host=198.51.100.1 remote-port=10145 "
           "nat-remote=yes remote-vips=[100.64.128.1] child-sas {net-1 {state=INSTALLED "
           "local-ts=[0.0.0.0/0 ::/0]}}}}\nlist-sas reply {}\n")
    (event, body), (reply, empty) = parse_raw(raw)
    assert (event, reply, empty) == ("list-sa event", "list-sas reply", {})
    sa = body["ikecp"]
    assert sa["remote-port"] == "10145" and sa["remote-vips"] == ["100.64.128.1"]
    assert sa["child-sas"]["net-1"]["local-ts"] == ["0.0.0.0/0", "::/0"]
    assert parse_raw("garbage } ] = [\n{{{\n") == [("", {})]


def test_charon_start_failure_is_reported_and_cleaned_up():
    require(strongswan.probe())
    bad = CharonConfig(role="responder", local_addrs="198.51.100.10", psk="x",
                       proposals="no-such-proposal")
    c = Charon(bad)
    with pytest.raises(strongswan.CharonError, match="load-all"):
        c.start()
    c.stop()
    assert not c.running and not c.workdir.exists()


@pytest.mark.peer
@pytest.mark.netns
def test_certificate_authentication_through_kernel_napt(tmp_path):
    require(netns.probe())
    require(strongswan.probe())
    pki = write_pki(tmp_path)
    segw, fap = pki.identities["segw.test"], pki.identities["fap.test"]
    certs = {"psk": None, "cacert": pki.ca_cert}
    with netns.nat_topology() as topo, \
            strongswan.charon(strongswan.segw_responder(cert=segw.cert, key=segw.key, **certs),
                              netns=topo.segw) as resp, \
            strongswan.charon(strongswan.fap_initiator(cert=fap.cert, key=fap.key, **certs),
                              netns=topo.fap) as init:
        init.initiate("net")
        r = resp.wait_for_sa()
        assert r.raw["remote-id"] == "fap.test" and r.nat_remote
        assert r.remote_host == netns.RTR_OUTSIDE_ADDR
        resp.wait_for_log(r"authentication of 'fap.test' with ECDSA\S* successful")
        init.wait_for_log(r"authentication of 'segw.test' with ECDSA\S* successful")


def test_stale_charon_dirs_and_processes_are_removed():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=10)
    stale = Path(tempfile.gettempdir()) / f"ikecp-charon-{dead.stdout.strip()}-test"
    stale.mkdir()
    env = {"STRONGSWAN_CONF": str(stale / "strongswan.conf"), "PATH": "/usr/bin:/bin"}
    orphan = subprocess.Popen(["sleep", "30"], env=env)  # stands in for a leftover charon
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        assert stale in strongswan.cleanup_stale()
        assert orphan.wait(5) == -9
        assert not stale.exists()
        assert bystander.poll() is None  # only processes tied to the stale dir are killed
    finally:
        for p in (orphan, bystander):
            p.kill()
            p.wait()


@pytest.mark.peer
@pytest.mark.netns
def test_segw_pool_can_send_raw_attribute_23():
    """A strongSwan SeGW can carry a static 6-byte EXTERNAL_SOURCE_IP4_NAT_INFO (type 23) in
    CFG_REPLY: the third-party reply our FAP will have to parse."""
    require(netns.probe())
    require(strongswan.probe())
    value = "0x" + bytes([198, 51, 100, 1, 0x11, 0x5C]).hex()  # 198.51.100.1 port 4444
    segw = strongswan.segw_responder(pool_attrs={"vip4": {"23": value}})
    with netns.nat_topology() as topo, \
            strongswan.charon(segw, netns=topo.segw) as resp, \
            strongswan.charon(strongswan.fap_initiator(), netns=topo.fap) as init:
        init.initiate("net")
        resp.wait_for_log(r"building EXT_SRC_IP4_NAT_INFO attribute")
        init.wait_for_log(r"parsed IKE_AUTH response 1 \[.*CPRP\(ADDR EXTSRC4\)")
        # strongSwan's initiator has no handler for it and carries on: SA up, vip assigned.
        init.wait_for_log(r"handling EXT_SRC_IP4_NAT_INFO attribute failed")
        i = init.wait_for_sa()
        assert i.local_vips and i.children
