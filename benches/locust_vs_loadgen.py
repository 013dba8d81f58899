"""Handshakes per second per core of the two load tools against the same ``ikecp segw``.

``ikecp loadgen`` (one worker: one blocking I/O core driving many initiator SAs) and the Locust
user (``ikecp locustfile``: one Locust process, each user a FAP on gevent sockets), run one
after the other against one SeGW process on loopback, interleaved ``--rounds`` times. Each
tool's CPU time is its own process's (``os.wait4`` rusage, user + system), so the figure is
handshakes per CPU-second of the load tool, i.e. per core it would need, whatever the SeGW's
own limit on this machine; a one-handshake run of the same tool measures its start-up CPU,
which is subtracted. Every handshake is IKE_SA_INIT + IKE_AUTH with CP and the first
CHILD_SA, then an INFORMATIONAL DELETE (both tools).

Run: ``python benches/locust_vs_loadgen.py`` (about two minutes; ``--quick``: one round).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ikecp.loadgen.generator import DEFAULT_PSK

CLI = [sys.executable, "-m", "ikecp.cli"]


def run_measured(argv: list[str], timeout: float) -> tuple[float, float, str]:
    """Run ``argv``; returns (wall s, CPU s of that process tree's leader and children it
    waited for, stdout)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{argv[2:4]} did not finish in {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}:\n{text[-3000:]}")
    return time.monotonic() - t0, ru.ru_utime + ru.ru_stime, text


def loadgen(port: int, natt: int, count: int) -> tuple[int, float, float]:
    wall, cpu, text = run_measured(
        [*CLI, "loadgen", "127.0.0.1", "--port", str(port), "--natt-port", str(natt),
         "-n", str(count), "-w", "32"], timeout=300)
    m = re.search(r"started \d+, established (\d+), failed (\d+)", text)
    assert m, text
    return int(m[1]), wall, cpu


def locust(port: int, natt: int, users: int, per_user: int, seconds: int, tmp: Path
           ) -> tuple[int, float, float]:
    prefix = tmp / f"locust-{time.monotonic_ns()}"
    path = subprocess.run([*CLI, "locustfile"], capture_output=True, text=True,
                          check=True).stdout.strip()
    wall, cpu, text = run_measured(
        [sys.executable, "-m", "locust", "-f", path, "--headless", "-u", str(users),
         "-r", str(users), "-t", f"{seconds}s", "--host", "127.0.0.1",
         "--ikecp-port", str(port), "--ikecp-natt-port", str(natt),
         "--ikecp-handshakes", str(per_user), "--csv", str(prefix), "--only-summary",
         "--loglevel", "WARNING"], timeout=seconds + 60)
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    if "handshake" not in rows:
        raise RuntimeError(f"no handshake in Locust's CSV:\n{text[-3000:]}")
    failed = int(rows["handshake"]["Failure Count"])
    if failed:
        print(f"  locust: {failed} handshakes failed", flush=True)
    return int(rows["handshake"]["Request Count"]) - failed, wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=3000, help="handshakes per tool and round")
    ap.add_argument("--users", type=int, default=30, help="Locust users (FAPs at once)")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="ikecp-bench-") as tmpdir:
        tmp = Path(tmpdir)
        cfg = tmp / "segw.toml"
        cfg.write_text(f'psk = "{DEFAULT_PSK.decode()}"\nport = 0\nnatt_port = 0\n'
                       f'bindings = "{tmp / "b.sqlite"}"\n')
        segw = subprocess.Popen([*CLI, "segw", "--config", str(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert segw.stdout is not None
            m = re.search(r"ports (\d+)/(\d+)", segw.stdout.readline())
            assert m, "segw did not start"
            port, natt = int(m[1]), int(m[2])
            totals = {"loadgen": [0, 0.0], "locust": [0, 0.0]}
            per_user = max(1, args.count // args.users)

            def measure(name: str, big: bool) -> tuple[int, float]:
                if name == "loadgen":
                    hs, _, cpu = loadgen(port, natt, args.count if big else 1)
                else:
                    hs, _, cpu = locust(port, natt, args.users, per_user if big else 1, 120,
                                        tmp)
                return hs, cpu

            for r in range(rounds):
                for name in ("loadgen", "locust"):
                    # The same tool with one handshake (per user) first: its start-up CPU
                    # (interpreter, imports, Locust's runner) is subtracted.
                    hs0, cpu0 = measure(name, False)
                    hs, cpu = measure(name, True)
                    t = totals[name]
                    t[0] += hs - hs0
                    t[1] += cpu - cpu0
                    print(f"round {r + 1} {name:8}: {hs:6d} handshakes, tool CPU {cpu:6.2f} s, "
                          f"start-up run {hs0} handshakes in {cpu0:5.2f} s -> "
                          f"{(hs - hs0) / (cpu - cpu0):7.0f} hs per CPU-second", flush=True)
        finally:
            segw.send_signal(signal.SIGTERM)
            segw.wait(30)
    lg, lc = totals["loadgen"], totals["locust"]
    lg_rate, lc_rate = lg[0] / lg[1], lc[0] / lc[1]
    print(f"\nloadgen: {lg_rate:.0f} handshakes/s per core; Locust user: {lc_rate:.0f} "
          f"handshakes/s per core; ratio loadgen/Locust = {lg_rate / lc_rate:.1f}")
    print(f"(machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"{rounds} round(s) of {args.count} handshakes per tool)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
