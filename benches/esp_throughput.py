"""ESP data plane throughput: ikecp FAP <-> ikecp SeGW (``dataplane = "tun"``) against
strongSwan <-> strongSwan (kernel-libipsec, userspace ESP on TUN, both ends), in one run.

Run as root with iperf3 and strongSwan installed (``.ci/install-peers.sh``), release build of
the extension: ``python benches/esp_throughput.py`` (``--seconds 3`` for a quicker run,
``--json`` for machine-readable output).

Topology (``ikecp.lab.netns``): the FAP in the fap namespace behind the kernel NAPT, the
SeGW in the segw namespace, a host address behind the SeGW (198.51.100.200 on segw's
loopback). iperf3 runs from the FAP's inner address to that host: TCP (one flow), UDP with
1372-octet payloads (1400-octet inner packets: the TUN MTU of both stacks, so nothing is
fragmented) and UDP with 64-octet payloads, unlimited rate. Both stacks use AES-256-GCM for
ESP. Reported per test and stack:

- Mbit/s of payload the receiver got, and ESP packets/s the SeGW's outer interface received;
- CPU µs per packet on each side: CPU time (/proc/<pid>/stat, all threads) of every process in
  that namespace except iperf3, over the packets that crossed the NAPT;
- the AES-GCM floor for the same packets: one AES-256-GCM seal of a packet that size by
  OpenSSL (``openssl speed``), measured in the same run; ``cpu/floor`` is the ratio.

Caveat on the CPU figures: a veth transmit runs the receiving namespace's stack (the NAPT's
forwarding and more) in the sender's softirq, so the sending side is charged for part of the
path beyond it. Both stacks are measured the same way.

Goals (issue 9): ikecp >= 3x strongSwan kernel-libipsec throughput; CPU per 1400-octet packet
within 4x the AES-GCM floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ikecp.lab import netns, strongswan
from ikecp.lab.strongswan import TEST_PSK, Child

BEHIND = "198.51.100.200"
POOL = "100.100.0.0/24"
CLI = [sys.executable, "-m", "ikecp.cli"]
TICK = os.sysconf("SC_CLK_TCK")

TESTS = [("tcp", "TCP, 1 flow", []),
         ("udp1400", "UDP, 1400-octet packets", ["-u", "-b", "0", "-l", "1372"]),
         ("udp64", "UDP, 64-octet payloads", ["-u", "-b", "0", "-l", "64"])]


def cpu_seconds(topo: netns.NatTopology, role: str) -> float:
    """CPU time of every process in ``role``'s namespace but iperf3 (the IPsec stack)."""
    total = 0
    for pid in netns._netns_pids(topo.names[role]):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm == "iperf3":
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def rx_packets(topo: netns.NatTopology) -> int:
    return int(topo.run_cmd("segw", ["cat", "/sys/class/net/eth0/statistics/rx_packets"]))


def run_iperf(topo: netns.NatTopology, args: list[str], seconds: float) -> dict[str, Any]:
    server = topo.popen("segw", ["iperf3", "-s", "-1", "-B", BEHIND],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    cpu0 = {r: cpu_seconds(topo, r) for r in ("fap", "segw")}
    pk0, t0 = rx_packets(topo), time.monotonic()
    out = topo.run_cmd("fap", ["iperf3", "-c", BEHIND, "-t", str(seconds), "-J", *args],
                       timeout=seconds + 60)
    elapsed = time.monotonic() - t0
    pk1 = rx_packets(topo)
    cpu1 = {r: cpu_seconds(topo, r) for r in ("fap", "segw")}
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(10)
    end = json.loads(out)["end"]
    if "sum_received" in end:  # TCP
        bps = end["sum_received"]["bits_per_second"]
    else:  # UDP: what the server got
        s = end["sum"]
        bps = s["bits_per_second"] * (1 - s.get("lost_percent", 0) / 100)
    packets = max(1, pk1 - pk0)
    return {"mbit_s": bps / 1e6, "packets_s": packets / elapsed, "packets": packets,
            "cpu_us_fap": (cpu1["fap"] - cpu0["fap"]) * 1e6 / packets,
            "cpu_us_segw": (cpu1["segw"] - cpu0["segw"]) * 1e6 / packets}


@contextlib.contextmanager
def ikecp_pair(topo: netns.NatTopology, work: Path) -> Iterator[None]:
    (work / "segw.toml").write_text(
        f'psk = "{TEST_PSK}"\nlisten = "{netns.SEGW_ADDR}"\nidentity = "segw.test"\n'
        f'pool = "{POOL}"\nbindings = "{work / "b.sqlite"}"\ndataplane = "tun"\n'
        'esp_proposals = ["aes256gcm16"]\n')
    (work / "fap.toml").write_text(
        f'psk = "{TEST_PSK}"\nsegw = "{netns.SEGW_ADDR}"\nidentity = "fap.test"\n'
        'dataplane = "tun"\nesp_proposals = ["aes256gcm16"]\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    segw = topo.popen("segw", [*CLI, "segw", "--config", str(work / "segw.toml")],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert segw.stdout is not None
    segw.stdout.readline()
    fap = topo.popen("fap", [*CLI, "fap", "--config", str(work / "fap.toml"), "--json"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert fap.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = fap.stdout.readline()
        if not line or json.loads(line).get("state") == "established":
            break
    yield


@contextlib.contextmanager
def strongswan_pair(topo: netns.NatTopology, work: Path) -> Iterator[None]:
    fap = strongswan.fap_initiator(children=(Child(remote_ts=(f"{BEHIND}/32",)),))
    with strongswan.charon(strongswan.segw_responder(), netns=topo.segw), \
            strongswan.charon(fap, netns=topo.fap) as ss:
        ss.initiate("net")
        yield


def warm_up(topo: netns.NatTopology) -> None:
    """Let the stack's TUN routes settle: wait for the first answered ping."""
    for _ in range(10):
        done = subprocess.run(topo.command("fap", ["ping", "-c", "1", "-W", "1", BEHIND]),
                              capture_output=True)
        if done.returncode == 0:
            return
    raise RuntimeError("no ping got through the tunnel")


def gcm_floor_us(size: int) -> float:
    """µs for one AES-256-GCM seal of ``size`` octets: OpenSSL's own loop (``openssl speed``,
    no Python call in the way), or ``cryptography`` if the openssl tool is missing."""
    if shutil.which("openssl"):
        out = subprocess.run(["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", str(size),
                              "-seconds", "1"], capture_output=True, text=True, timeout=60)
        rate = out.stdout.strip().splitlines()[-1].split()[-1]  # "1606909.55k" (1000 B/s)
        if rate.endswith("k"):
            return size / (float(rate[:-1]) * 1000) * 1e6
    aead, data, aad, nonce, n = AESGCM(bytes(32)), bytes(size), bytes(8), bytes(12), 20000
    t0 = time.perf_counter()
    for _ in range(n):
        aead.encrypt(nonce, data, aad)
    return (time.perf_counter() - t0) * 1e6 / n


def measure(stack: str, seconds: float) -> dict[str, dict[str, Any]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp, netns.nat_topology() as topo:
        topo.run_cmd("segw", ["ip", "addr", "add", f"{BEHIND}/32", "dev", "lo"])
        pair = ikecp_pair if stack == "ikecp" else strongswan_pair
        with pair(topo, Path(tmp)):
            warm_up(topo)
            for key, _, args in TESTS:
                results[key] = run_iperf(topo, args, seconds)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per iperf3 test (default 5)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    missing = netns.probe() or strongswan.probe() or \
        (None if shutil.which("iperf3") else "iperf3 not found")
    if missing:
        print(f"esp_throughput: {missing}", file=sys.stderr)
        return 2
    floors = {"tcp": gcm_floor_us(1400), "udp1400": gcm_floor_us(1400),
              "udp64": gcm_floor_us(92)}
    runs = {stack: measure(stack, args.seconds) for stack in ("ikecp", "strongswan")}
    if args.json:
        print(json.dumps({"runs": runs, "gcm_floor_us": floors}, indent=2))
        return 0
    print(f"ESP throughput, {args.seconds:g} s per test, AES-256-GCM, "
          f"{os.cpu_count()} CPUs; CPU = µs per ESP packet (fap side / segw side)\n")
    print("| test | stack | Mbit/s | packets/s | CPU fap | CPU segw | GCM floor | "
          "cpu/floor (worse side) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for key, label, _ in TESTS:
        for stack in ("ikecp", "strongswan"):
            r = runs[stack][key]
            worse = max(r["cpu_us_fap"], r["cpu_us_segw"])
            print(f"| {label} | {stack} | {r['mbit_s']:.0f} | {r['packets_s']:,.0f} | "
                  f"{r['cpu_us_fap']:.1f} | {r['cpu_us_segw']:.1f} | {floors[key]:.2f} | "
                  f"{worse / floors[key]:.0f}x |")
    print()
    for key, label, _ in TESTS:
        ratio = runs["ikecp"][key]["mbit_s"] / max(runs["strongswan"][key]["mbit_s"], 1e-9)
        print(f"{label}: ikecp / strongSwan throughput = {ratio:.1f}x "
              f"(goal >= 3x: {'met' if ratio >= 3 else 'missed'})")
    r = runs["ikecp"]["udp1400"]
    worse = max(r["cpu_us_fap"], r["cpu_us_segw"]) / floors["udp1400"]
    print(f"ikecp CPU per 1400-octet packet = {worse:.0f}x the AES-GCM floor "
          f"(goal <= 4x: {'met' if worse <= 4 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
