"""Real traffic through the ESP data plane: an ikecp FAP behind the kernel NAPT and an
ikecp SeGW, both with ``dataplane = "tun"``, as the CLI runs them. A host address behind the
SeGW (198.51.100.200 in the segw namespace) answers ping and receives an iperf3 TCP transfer
from the FAP's inner IP; every packet crosses the NAPT as ESP in UDP/4500."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from ikecp.lab import netns
from ikecp.testing.facility import require

pytestmark = pytest.mark.netns

CLI = [sys.executable, "-m", "ikecp.cli"]
BEHIND = "198.51.100.200"
POOL = "100.100.0.0/24"


def tools_missing() -> str | None:
    for tool in ("ping", "iperf3", "conntrack"):
        if shutil.which(tool) is None:
            return f"{tool} not found (.ci/install-peers.sh installs it)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def start_pair(topo, tmp_path, *, fap_extra: str = "") -> tuple[subprocess.Popen, dict]:
    """SeGW and FAP up with the TUN data plane; returns the FAP process and its status."""
    require(tools_missing())
    topo.run_cmd("segw", ["ip", "addr", "add", f"{BEHIND}/32", "dev", "lo"])
    db = tmp_path / "b.sqlite"
    (tmp_path / "segw.toml").write_text(
        f'psk = "esp"\nlisten = "{netns.SEGW_ADDR}"\nbindings = "{db}"\npool = "{POOL}"\n'
        'identity = "segw.example.net"\ndataplane = "tun"\ntun_name = "ikecps0"\n')
    (tmp_path / "fap.toml").write_text(
        f'psk = "esp"\nsegw = "{netns.SEGW_ADDR}"\nidentity = "fap-esp.example.net"\n'
        f'dataplane = "tun"\ntun_name = "ikecpf0"\n{fap_extra}')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    segw = topo.popen("segw", [*CLI, "segw", "--config", str(tmp_path / "segw.toml")],
                      stdout=subprocess.PIPE, stderr=open(tmp_path / "segw.log", "w"),  # noqa: SIM115 (lives with the process)
                      text=True, env=env)
    assert segw.stdout is not None
    line = segw.stdout.readline()
    assert "SeGW" in line, (tmp_path / "segw.log").read_text()
    fap = topo.popen("fap", [*CLI, "-v", "fap", "--config", str(tmp_path / "fap.toml"),
                             "--json", "--stats", "1"],
                     stdout=subprocess.PIPE, stderr=open(tmp_path / "fap.log", "w"),  # noqa: SIM115 (lives with the process)
                     text=True, env=env)
    assert fap.stdout is not None
    status: dict = {}
    deadline = time.monotonic() + 30
    while status.get("state") != "established" and time.monotonic() < deadline:
        line = fap.stdout.readline()
        if not line:
            break
        status = json.loads(line)
    assert status.get("state") == "established", (tmp_path / "fap.log").read_text()
    assert status["dataplane"] == "tun"
    assert status["inner_ip"].startswith("100.100.0.")
    return fap, status


def ping(topo, count: int = 5) -> int:
    out = topo.run_cmd("fap", ["ping", "-c", str(count), "-i", "0.2", "-W", "2", BEHIND],
                       timeout=30)
    m = re.search(r"(\d+) received", out)
    return int(m.group(1)) if m else 0


def test_ping_and_iperf3_through_ikecp_fap_and_segw(topo, tmp_path) -> None:
    fap, status = start_pair(topo, tmp_path)
    # The FAP's inner address is on its TUN device; the SeGW routes it into its own.
    assert status["inner_ip"] in topo.run_cmd("fap", ["ip", "-4", "addr", "show", "ikecpf0"])
    assert "ikecps0" in topo.run_cmd("segw", ["ip", "route", "get", status["inner_ip"]])
    assert ping(topo) == 5
    server = topo.popen("segw", ["iperf3", "-s", "-1", "-B", BEHIND],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    out = topo.run_cmd("fap", ["iperf3", "-c", BEHIND, "-t", "3", "-J"], timeout=60)
    result = json.loads(out)
    received = result["end"]["sum_received"]["bytes"]
    assert received > 1_000_000, result["end"]
    mbps = result["end"]["sum_received"]["bits_per_second"] / 1e6
    print(f"iperf3 TCP through the tunnel: {mbps:.0f} Mbit/s")
    server.wait(10)
    # Every packet crossed the NAPT as ESP in UDP: the NAT's only UDP mapping is 4500's.
    assert (netns.FAP_ADDR, 4500) in topo.nat_mappings()
    # The counters: the FAP's status (--stats) and the SeGW's bindings.
    esp: dict = {}
    deadline = time.monotonic() + 10
    while esp.get("bytes_out", 0) <= received and time.monotonic() < deadline:  # lines queue
        esp = json.loads(fap.stdout.readline()).get("esp") or {}
    assert esp["packets_out"] >= 1000 and esp["packets_in"] >= 5
    assert esp["bytes_out"] > received
    assert esp["icv_failures"] == esp["replay_drops"] == 0
    seen: dict = {}
    deadline = time.monotonic() + 15
    while not seen.get("packets_in") and time.monotonic() < deadline:
        time.sleep(1)
        rows = subprocess.run([*CLI, "bindings", "--db", str(tmp_path / "b.sqlite"), "--json"],
                              capture_output=True, text=True, timeout=30)
        seen = json.loads(rows.stdout.splitlines()[0]).get("esp") or {}
    assert seen["packets_in"] >= 1000 and seen["packets_out"] >= 5


def test_traffic_follows_a_kernel_nat_rebinding(topo, tmp_path) -> None:
    """Mid-ping, the router forgets every UDP mapping (``conntrack -F``): the FAP's next ESP
    packet leaves through a new random port. The SeGW's data plane sees an authenticated
    packet from there, moves the CHILD SA and tells the control plane, which moves the IKE SA
    and the binding. Loss is measured and must stay small."""
    _, status = start_pair(topo, tmp_path)
    first = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
    count = 40
    pinger = topo.popen("fap", ["ping", "-c", str(count), "-i", "0.1", "-W", "2", BEHIND],
                        stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    topo.rebind()
    out, _ = pinger.communicate(timeout=30)
    received = int(re.search(r"(\d+) received", out).group(1))  # type: ignore[union-attr]
    lost = count - received
    print(f"NAT rebinding: {lost} of {count} pings lost")
    assert lost <= 3, out
    moved = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
    assert moved[0] == netns.RTR_OUTSIDE_ADDR and moved[1] != first[1]
    rows = subprocess.run([*CLI, "bindings", "--db", str(tmp_path / "b.sqlite"), "--json",
                           "--identity", "fap-esp.example.net"],
                          capture_output=True, text=True, timeout=30)
    row = json.loads(rows.stdout)
    assert (row["public_ip"], row["public_port"]) == moved
    assert row["inner_ip"] == status["inner_ip"]
    assert ping(topo, 3) == 3


def test_traffic_across_child_rekeys(topo, tmp_path) -> None:
    """The FAP rekeys its CHILD SA every 1.5 s (CREATE_CHILD_SA with REKEY_SA) while a ping
    runs: each rekey installs the new SA pair in both data planes before the old one goes
    (make-before-break), so loss across several rekeys is measured and must stay small."""
    fap, status = start_pair(topo, tmp_path, fap_extra="child_rekey_time = 1.5\n"
                             "child_rand_time = 0\nchild_life_time = 30\n")
    first = tuple(status["child_spis"])
    count = 60
    pinger = topo.popen("fap", ["ping", "-c", str(count), "-i", "0.1", "-W", "2", BEHIND],
                        stdout=subprocess.PIPE, text=True)
    out, _ = pinger.communicate(timeout=60)
    received = int(re.search(r"(\d+) received", out).group(1))  # type: ignore[union-attr]
    # The status lines (--stats 1) show the CHILD SPIs the FAP holds now: several rekeys.
    spis = {first}
    deadline = time.monotonic() + 10
    while len(spis) < 4 and time.monotonic() < deadline:
        line = fap.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        spis.add(tuple(json.loads(line).get("child_spis") or ()))
    lost = count - received
    print(f"CHILD rekeys: {len(spis) - 1} seen, {lost} of {count} pings lost")
    assert len(spis) >= 4, spis  # at least three rekeys happened under the ping
    assert lost <= 3, out
    assert ping(topo, 3) == 3  # and the latest CHILD SA carries traffic
