"""kill -9 of a SeGW holding a load, then a restart on the same config:

- while no SeGW runs, ``ikecp bindings`` says the rows are stale (the registry's lock is
  free), and the JSON event stream holds every change SQLite committed;
- the restarted SeGW closes the old rows, answers the old SAs' requests with INVALID_IKE_SPI,
  and ikecp's own FAPs are back within seconds instead of after their retransmission backoff
  (about a minute with the default policy).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time

from ikecp.config import FapConfig
from ikecp.roles.bindings import BindingRegistry
from ikecp.roles.femto import Femto
from test_cli import CLI, ENV, free_ports, run
from test_roles import wait_until

HELD = 150
FAPS = 5


def start_segw(config) -> subprocess.Popen:
    proc = subprocess.Popen([*CLI, "segw", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None and "SeGW" in proc.stdout.readline(), proc.stderr
    return proc


def test_kill9_and_restart_with_a_held_load(tmp_path) -> None:
    port, natt = free_ports("127.0.0.1", 2)
    db, events = tmp_path / "b.sqlite", tmp_path / "events.jsonl"
    config = tmp_path / "segw.toml"
    config.write_text(f'psk = "crash test psk"\nport = {port}\nnatt_port = {natt}\n'
                      f'bindings = "{db}"\nevents = "{events}"\ndpd = 0\n')

    async def main() -> None:
        segw = start_segw(config)
        load = subprocess.Popen(
            [*CLI, "loadgen", "127.0.0.1", "--port", str(port), "--natt-port", str(natt),
             "-n", str(HELD), "-w", "32", "--hold", "600", "--no-teardown",
             "--source", "127.9.0.0/16", "--psk", "crash test psk", "--plain"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        faps = [Femto(FapConfig(identity=f"fap-{i}.crash.test", psk="crash test psk",
                                segw="127.0.0.1", local=f"127.8.0.{i + 1}", port=port,
                                natt_port=natt, dpd=1.0, reconnect=0.5))
                for i in range(FAPS)]
        restarted = None
        try:
            for f in faps:
                await f.start()
            await asyncio.gather(*(f.wait_established(30) for f in faps))
            reader = BindingRegistry.reader(db)
            await wait_until(lambda: len(reader) == HELD + FAPS, 120)
            assert reader.live()
            listed = await asyncio.to_thread(run, "bindings", "--db", str(db), "--json")
            assert "stale" not in listed.stderr
            assert not any(json.loads(line)["stale"] for line in listed.stdout.splitlines())

            segw.send_signal(signal.SIGKILL)
            segw.wait(10)
            assert not reader.live()
            listed = await asyncio.to_thread(run, "bindings", "--db", str(db), "--json")
            rows = [json.loads(line) for line in listed.stdout.splitlines()]
            assert len(rows) == HELD + FAPS and all(r["stale"] for r in rows)
            assert "stale" in listed.stderr
            # Every committed change has its line in the event stream.
            lines = [json.loads(line) for line in events.read_text().splitlines()]
            streamed = {(e["event"], e["spi_r"]) for e in lines}
            committed = {(h[1], h[3]) for h in reader.history()}
            assert committed <= streamed

            crashed_at = time.monotonic()
            restarted = start_segw(config)
            await wait_until(lambda: all(f.status.established == 2 for f in faps), 20)
            took = time.monotonic() - crashed_at
            assert took < 20
            await wait_until(lambda: len([b for b in reader.all()
                                          if b.identity.endswith(".crash.test")]) == FAPS, 10)
            history = reader.history()
            assert sum(1 for h in history if h[2] == "stale at startup") == HELD + FAPS
            assert reader.live()
            reader.close()
        finally:
            for f in faps:
                await f.stop(0.5)
            for p in (load, segw, restarted):
                if p is not None and p.poll() is None:
                    p.terminate()
                    p.wait(30)

    asyncio.run(main())
