"""Instructions per in-memory handshake of the engine's own Python, counted by callgrind.

Instruction counts move far less than timings on a shared machine. The handshake is the one of
``bench_engine.py`` (X25519 + PSK + AES-GCM-256, initiator behind a simulated NAPT, NAT-info)
with every codec/crypto/random call answered from a recording, so what is counted is the
engine (both sides) and the interpreter running it. The script runs itself under
``valgrind --tool=callgrind`` twice, with 0 and with N handshakes after the same set-up, and
divides the difference by N.

Run: ``python benches/engine_instructions.py [-n 200] [--segw-events]`` (valgrind installed,
release build). ``--segw-events``: the responder builds only the events ``ikecp segw`` reads
without a data plane (``Settings.events``), as the SeGW does.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile

import bench_engine
from ikecp import _backend
from ikecp import events as ev

#: What ``ikecp segw`` reads without a data plane, an on_event callback, a key log or INFO logs.
SEGW_READS = frozenset({ev.PeerBinding, ev.LivenessConfirmed, ev.AuthenticationFailed,
                        ev.ChildSaFailed, ev.IkeSaRekeyed, ev.InitialContact,
                        ev.ConfigSetAnswered, ev.SaDeleted, ev.SaFailed})


def canned_runs(n: int, segw_events: bool) -> None:
    """Record one handshake, then replay it ``n`` times from the recording."""
    if segw_events:
        bench_engine.SEGW = dataclasses.replace(bench_engine.SEGW, events=SEGW_READS)
    be = _backend.load("native")
    _backend.backend = be
    tapes = {"i": bench_engine.Tape(), "r": bench_engine.Tape()}
    bench_engine.Sides(be, {s: bench_engine.recording(be, tapes[s]) for s in "ir"}).handshake()
    sides = bench_engine.Sides(be, {s: bench_engine.playing(tapes[s]) for s in "ir"})
    for _ in range(n + 1):  # one more: the first replay warms caches in both runs
        for tape in tapes.values():
            tape.pos = 0
        sides.handshake()


def instructions(n: int, segw_events: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
                sys.executable, __file__, "--child", str(n)]
        if segw_events:
            argv.append("--segw-events")
        # A fixed hash seed: set and dict layouts (and so the counts) repeat from run to run.
        done = subprocess.run(argv, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="handshakes counted")
    ap.add_argument("--segw-events", action="store_true")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        canned_runs(args.child, args.segw_events)
        return 0
    per = (instructions(args.n, args.segw_events) - instructions(0, args.segw_events)) / args.n
    print(f"{per:,.0f} instructions per canned handshake (both sides"
          f"{', SeGW events only' if args.segw_events else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
