"""Kernel NAPT in network namespaces: what the SeGW sees of a FAP behind a home router."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ikecp.lab import netns
from ikecp.testing.facility import require

pytestmark = pytest.mark.netns

# A process in the segw namespace that answers each datagram with the source it saw.
ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)
print("ready", flush=True)
while True:
    try:
        data, (ip, port) = s.recvfrom(2048)
    except TimeoutError:
        break
    s.sendto(b"%s seen %s:%d" % (data, ip.encode(), port), (ip, port))
"""


def test_udp_from_fap_is_translated_and_reply_returns(topo):
    echo = topo.popen("segw", [sys.executable, "-c", ECHO, netns.SEGW_ADDR, "4500"],
                      stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready"

    seen = {}
    for port in (500, 4500):  # a FAP's two IKE source ports
        s = topo.socket("fap")
        try:
            s.settimeout(3)
            s.bind((netns.FAP_ADDR, port))
            s.sendto(b"ike", (netns.SEGW_ADDR, 4500))
            data, frm = s.recvfrom(2048)
        finally:
            s.close()
        assert frm == (netns.SEGW_ADDR, 4500)  # the reply came back through the NAPT
        word, _, where = data.decode().partition(" seen ")
        assert word == "ike"
        ip, _, p = where.rpartition(":")
        seen[port] = (ip, int(p))

    # The router's conntrack table agrees with what the SeGW saw.
    nat = topo.nat_mappings()
    assert nat[(netns.FAP_ADDR, 500)] == seen[500]
    assert nat[(netns.FAP_ADDR, 4500)] == seen[4500]
    # The SeGW sees the router's operator-side address, never the FAP's own.
    assert {ip for ip, _ in seen.values()} == {netns.RTR_OUTSIDE_ADDR}
    assert seen[500][1] != seen[4500][1]
    # "masquerade random": ports are translated (both kept by chance: p ~ 2**-32).
    assert (seen[500][1], seen[4500][1]) != (500, 4500)


def test_segw_cannot_reach_fap_without_nat(topo):
    s = topo.socket("segw")
    try:
        with pytest.raises(OSError) as err:
            s.sendto(b"x", (netns.FAP_ADDR, 4500))
        assert err.value.errno == errno.ENETUNREACH  # only the NAPT connects them
    finally:
        s.close()


def test_call_runs_inside_namespace_and_not_outside(topo):
    names = {n for _, n in topo.call("fap", socket.if_nameindex)}
    assert names == {"lo", "eth0"}
    assert {n for _, n in topo.call("rtr", socket.if_nameindex)} == {"lo", "inside0", "outside0"}
    # The calling thread stayed where it was.
    assert "inside0" not in {n for _, n in socket.if_nameindex()}
    with pytest.raises(ZeroDivisionError):
        topo.call("segw", lambda: 1 // 0)
    assert "masquerade random" in topo.run_cmd("rtr", ["nft", "list", "ruleset"])


def test_names_unique_and_stale_namespaces_removed():
    require(netns.probe())
    a, b = netns.NatTopology(), netns.NatTopology()
    assert set(a.names.values()).isdisjoint(b.names.values())
    # Pretend a crashed run (a pid that no longer exists) left a namespace behind.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=10)
    stale = f"ikecp-{dead.stdout.strip()}-abcdef-fap"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        assert stale in netns.cleanup_stale()
        assert not Path("/run/netns", stale).exists()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=10)


def test_destroy_stops_processes_and_survives_failure():
    require(netns.probe())
    with pytest.raises(RuntimeError), netns.nat_topology() as t:
        proc = t.popen("segw", ["sleep", "30"])
        raise RuntimeError("test body failed")
    assert proc.poll() is not None
    assert not t.exists()


def test_two_topologies_side_by_side():
    require(netns.probe())
    with netns.nat_topology() as a, netns.nat_topology() as b:
        socks = []
        try:
            for topo, word in ((a, b"a"), (b, b"b")):
                srv, cli = topo.socket("segw"), topo.socket("fap")
                socks += [srv, cli]
                srv.settimeout(3)
                srv.bind((netns.SEGW_ADDR, 4500))  # same address and port in each topology
                cli.sendto(word, (netns.SEGW_ADDR, 4500))
                data, frm = srv.recvfrom(10)
                assert (data, frm[0]) == (word, netns.RTR_OUTSIDE_ADDR)
        finally:
            for s in socks:
                s.close()
    assert not a.exists() and not b.exists()
