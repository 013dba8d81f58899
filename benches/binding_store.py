"""What the binding store costs the SeGW: ``ikecp segw`` with SQLite vs PostgreSQL.

The same ``ikecp loadgen`` run (closed loop, every handshake followed by its DELETE, so each
handshake is one ``up`` and one ``down`` in the store) against two SeGW processes that differ
only in ``bindings``: an SQLite file, and a database of a throwaway PostgreSQL cluster on a
Unix socket (``ikecp.lab.postgres``). Rounds alternate between the two. Reported per
store: handshakes/s and the SeGW process's CPU per handshake (``/proc/<pid>/stat``).

Run: ``python benches/binding_store.py`` (``--quick``: one round of 1000).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ikecp.lab import postgres
from ikecp.loadgen import generator as loadgen

CLI = [sys.executable, "-m", "ikecp.cli"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    rounds, count = (1, 1000) if args.quick else (args.rounds, args.count)
    with tempfile.TemporaryDirectory(prefix="ikecp-bench-") as tmp, postgres.cluster() as pg:
        stores = {"sqlite": str(Path(tmp) / "b.sqlite"), "postgresql": pg.url}
        procs = {}
        try:
            for name, location in stores.items():
                cfg = Path(tmp) / f"{name}.toml"
                cfg.write_text(f'psk = "{loadgen.DEFAULT_PSK.decode()}"\nport = 0\n'
                               f'natt_port = 0\nbindings = "{location}"\n')
                p = subprocess.Popen([*CLI, "segw", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
                assert p.stdout is not None
                m = re.search(r"ports (\d+)/(\d+)", p.stdout.readline())
                assert m, f"{name} SeGW did not start"
                procs[name] = (p, int(m[1]), int(m[2]))
            totals = {name: [0, 0.0, 0.0] for name in stores}
            for r in range(rounds):
                for name, (p, port, natt) in procs.items():
                    cpu0 = cpu_seconds(p.pid)
                    res = loadgen.run(loadgen.LoadConfig(port=port, natt_port=natt,
                                                         count=count, window=32))
                    cpu = cpu_seconds(p.pid) - cpu0
                    wall = res.t_end - res.t_start
                    t = totals[name]
                    t[0] += res.established
                    t[1] += wall
                    t[2] += cpu
                    print(f"round {r + 1} {name:10}: {res.established} handshakes in "
                          f"{wall:5.2f} s ({res.established / wall:6.0f}/s), SeGW CPU "
                          f"{cpu / res.established * 1e6:5.0f} us per handshake", flush=True)
        finally:
            for p, _, _ in procs.values():
                p.send_signal(signal.SIGTERM)
                p.wait(30)
    print()
    for name, (hs, wall, cpu) in totals.items():
        print(f"{name:10}: {hs / wall:6.0f} handshakes/s, SeGW CPU {cpu / hs * 1e6:5.0f} us "
              "per handshake")
    sq, pq = totals["sqlite"], totals["postgresql"]
    print(f"PostgreSQL / SQLite SeGW CPU per handshake: {(pq[2] / pq[0]) / (sq[2] / sq[0]):.2f}"
          f" (machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
