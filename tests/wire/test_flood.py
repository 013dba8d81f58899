"""One host replays one (COOKIE-bearing) IKE_SA_INIT from 2,000 source ports while 500 FAPs
from 500 other loopback addresses attach: at least 99 % of them must succeed. Bounded: the
flood stops after the load or 90 s, whichever comes first; ``max_half_open`` is lowered to
1,000 so the replay from 2,000 ports would fill it if one request could multiply."""

from __future__ import annotations

import json
import subprocess
import threading

from ikecp.lab.hostile import CookieReplayFlood
from test_cli import CLI, ENV, free_ports
from test_segw_crash import start_segw

FAPS = 500


def test_cookie_replay_flood_does_not_lock_faps_out(tmp_path) -> None:
    port, natt = free_ports("127.0.0.1", 2)
    config = tmp_path / "segw.toml"
    config.write_text(f'psk = "flood test psk"\nport = {port}\nnatt_port = {natt}\n'
                      f'bindings = "{tmp_path / "b.sqlite"}"\ndpd = 0\nmax_half_open = 1000\n')
    segw = start_segw(config)
    flood = CookieReplayFlood(("127.0.0.1", port), "127.0.0.66", ports=2000)
    stop = threading.Event()
    try:
        flood.start()
        attacker = threading.Thread(
            target=lambda: [flood.run(1.0, rate=4000) for _ in range(90) if not stop.is_set()])
        attacker.start()
        report = tmp_path / "load.json"
        load = subprocess.run(
            [*CLI, "loadgen", "127.0.0.1", "--port", str(port), "--natt-port", str(natt),
             "-n", str(FAPS), "-w", "32", "--timeout", "30", "--source", "127.11.0.0/16",
             "--psk", "flood test psk", "--plain", "--json", str(report)],
            capture_output=True, text=True, env=ENV, timeout=300)
        stop.set()
        attacker.join(30)
        assert load.returncode in (0, 1), load.stderr
        summary = json.loads(report.read_text())
        print("flood:", flood.result, "load:", summary["established"], summary["failures"])
        assert flood.result.cookie  # the replay carries a COOKIE the SeGW gave out
        assert flood.result.sent >= 2000  # the flood really ran alongside
        assert summary["established"] >= 0.99 * FAPS, summary["failures"]
    finally:
        stop.set()
        segw.terminate()
        segw.wait(30)
