"""Traffic between ikecp's ESP data plane and strongSwan's kernel-libipsec (userspace ESP on
its own TUN device), both directions, through the kernel NAPT: ping and an iperf3 TCP
transfer from the FAP's inner address to a host address behind the SeGW (198.51.100.200 in
the segw namespace)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from ikecp.lab import netns, strongswan
from ikecp.lab.strongswan import TEST_PSK, Child
from ikecp.testing.facility import require
from ikecp_roles import role
from interop_peers import require_peers

pytestmark = [pytest.mark.peer, pytest.mark.netns]

BEHIND = "198.51.100.200"
POOL = "100.100.0.0/24"


def setup(topo) -> None:
    require_peers()
    require(None if shutil.which("ping") else "ping not found (.ci/install-peers.sh)")
    topo.run_cmd("segw", ["ip", "addr", "add", f"{BEHIND}/32", "dev", "lo"])


def pings(topo, count: int = 5) -> int:
    """Replies to ``count`` pings, after one unanswered-or-not warm-up ping: strongSwan
    brings its TUN device and routes up just after the CHILD SA, and the first packet may
    race that."""
    subprocess.run(topo.command("fap", ["ping", "-c", "1", "-W", "3", BEHIND]),
                   capture_output=True, timeout=10)
    out = topo.run_cmd("fap", ["ping", "-c", str(count), "-i", "0.2", "-W", "2", BEHIND],
                       timeout=30)
    m = re.search(r"(\d+) received", out)
    return int(m.group(1)) if m else 0


def tcp_transfer(topo) -> int:
    """Bytes an iperf3 TCP client on the FAP got across to a server behind the SeGW in 2 s."""
    require(None if shutil.which("iperf3") else "iperf3 not found (.ci/install-peers.sh)")
    server = topo.popen("segw", ["iperf3", "-s", "-1", "-B", BEHIND],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    out = topo.run_cmd("fap", ["iperf3", "-c", BEHIND, "-t", "2", "-J"], timeout=60)
    server.wait(10)
    return int(json.loads(out)["end"]["sum_received"]["bytes"])


def test_strongswan_fap_pings_through_ikecp_segw(tmp_path) -> None:
    with netns.nat_topology() as topo:
        setup(topo)
        segw_cfg = {"psk": TEST_PSK, "listen": netns.SEGW_ADDR, "identity": "segw.test",
                    "pool": POOL, "bindings": str(tmp_path / "b.sqlite"),
                    "dataplane": "tun", "tun_name": "ikecps0"}
        fap = strongswan.fap_initiator(children=(Child(remote_ts=(f"{BEHIND}/32",)),))
        with role(topo, "segw", "segw", segw_cfg, tmp_path) as segw, \
                strongswan.charon(fap, netns=topo.fap) as ss:
            segw.wait_line(lambda line: line.startswith("SeGW "))
            assert "initiate completed successfully" in ss.initiate("net")
            received = pings(topo)
            assert received == 5, ss.log()[-3000:] + segw.stderr_tail()
            assert tcp_transfer(topo) > 1_000_000
            assert re.search(r"CHILD SA [0-9a-f]{8}/[0-9a-f]{8} installed", segw.stderr_tail())


def test_ikecp_fap_pings_through_strongswan_segw(tmp_path) -> None:
    with netns.nat_topology() as topo:
        setup(topo)
        fap_cfg = {"psk": TEST_PSK, "segw": netns.SEGW_ADDR, "identity": "fap.test",
                   "segw_id": "segw.test", "dataplane": "tun", "tun_name": "ikecpf0"}
        with strongswan.charon(strongswan.segw_responder(), netns=topo.segw) as ss, \
                role(topo, "fap", "fap", fap_cfg, tmp_path, "--json") as fap:
            status = fap.wait_status(lambda s: s["state"] == "established", timeout=30)
            assert status["dataplane"] == "tun" and status["inner_ip"]
            ss.wait_for_sa()
            received = pings(topo)
            assert received == 5, ss.log()[-3000:] + fap.stderr_tail()
            assert tcp_transfer(topo) > 1_000_000
