"""Distributed load on Locust: a master and two workers on loopback drive FAPs (Locust users
from ``ikecp locustfile``) against ``ikecp segw``; the master's web UI is looked at in headless
Chromium, and the CSV of the run is read."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ikecp.testing.facility import require
from ops_helpers import CLI, ENV, segw_process, segw_toml, wait_for

#: Screenshots and other files a human may want to look at after the run.
ARTIFACTS = Path(os.environ.get("IKECP_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))
LOCUST = [sys.executable, "-m", "locust"]
USERS, PER_USER = 4, 10


def locustfile() -> str:
    out = subprocess.run([*CLI, "locustfile"], capture_output=True, text=True, check=True,
                         env=ENV)
    return out.stdout.strip()


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request_stats(web: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{web}/stats/requests", timeout=10) as resp:
        data = json.load(resp)
    return {row["name"]: row for row in data["stats"]}



def stop_run(web: str) -> None:
    """Locust's /stop: POST from 2.47 on, GET before (Python 3.10 resolves 2.46)."""
    try:
        urllib.request.urlopen(urllib.request.Request(f"{web}/stop", method="POST"),
                               timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 405:
            raise
        urllib.request.urlopen(f"{web}/stop", timeout=10).close()


def test_master_and_two_workers_against_segw(tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(None if chromium else "chromium missing (run .ci/install-peers.sh)")
    assert chromium is not None
    path = locustfile()
    assert Path(path).is_file()
    master_port, web_port = free_tcp_port(), free_tcp_port()
    web = f"http://127.0.0.1:{web_port}"
    csv_prefix = tmp_path / "run"
    procs: list[subprocess.Popen[str]] = []
    with segw_process(tmp_path, segw_toml(str(tmp_path / "b.sqlite")),
                      "--metrics", "0") as segw:
        try:
            master = subprocess.Popen(
                [*LOCUST, "-f", path, "--master", "--master-bind-host", "127.0.0.1",
                 "--master-bind-port", str(master_port), "--web-host", "127.0.0.1",
                 "--web-port", str(web_port), "--autostart",
                 "--expect-workers", "2", "-u", str(USERS), "-r", str(USERS),
                 "--run-time", "120s", "--host", "127.0.0.1",
                 "--ikecp-port", str(segw.port), "--ikecp-natt-port", str(segw.natt_port),
                 "--ikecp-handshakes", str(PER_USER), "--csv", str(csv_prefix)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
            procs.append(master)
            for _ in range(2):
                procs.append(subprocess.Popen(
                    [*LOCUST, "-f", path, "--worker", "--master-host", "127.0.0.1",
                     "--master-port", str(master_port)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=ENV))

            def finished() -> bool:
                try:
                    rows = request_stats(web)
                except OSError:
                    return False
                return rows.get("delete", {}).get("num_requests", 0) >= USERS * PER_USER

            assert wait_for(finished, 90, 0.5), master.stdout.read() if master.poll() else ""
            rows = request_stats(web)
            assert rows["handshake"]["num_requests"] == USERS * PER_USER
            assert rows["handshake"]["num_failures"] == 0
            assert rows["handshake"]["method"] == "IKEv2"
            assert 0 < rows["handshake"]["avg_response_time"] < 10_000  # milliseconds
            with urllib.request.urlopen(f"{web}/worker-count", timeout=10) as resp:
                assert json.load(resp)["worker_count"] == 2

            # The web UI as a browser renders it: the ikecp rows are in the table.
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "locust-web-ui.png"
            browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                       "--hide-scrollbars", "--window-size=1400,800",
                       "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'chr'}"]
            dom = subprocess.run([*browser, "--dump-dom", f"{web}/"], capture_output=True,
                                 text=True, timeout=120)
            assert "handshake" in dom.stdout and "IKEv2" in dom.stdout, dom.stderr[-2000:]
            subprocess.run([*browser, f"--screenshot={shot}", f"{web}/"], capture_output=True,
                           timeout=120, check=True)
            assert shot.stat().st_size > 10_000

            # Stop the run, then the master (SIGTERM: Locust writes the CSV and exits 0 when
            # nothing failed); the workers quit with it.
            stop_run(web)
            master.send_signal(signal.SIGTERM)
            assert master.wait(60) == 0
            for p in procs[1:]:
                assert p.wait(30) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(10)
        with open(f"{csv_prefix}_stats.csv", newline="") as f:
            table = {r["Name"]: r for r in csv.DictReader(f)}
        assert int(table["handshake"]["Request Count"]) == USERS * PER_USER
        assert int(table["handshake"]["Failure Count"]) == 0
        assert table["handshake"]["Type"] == "IKEv2"
        assert int(table["delete"]["Request Count"]) == USERS * PER_USER
        # The SeGW saw the same: one IKE SA per Locust handshake, each deleted by its FAP.
        from test_metrics import scrape

        got = scrape(segw.metrics_url)
        assert got[("ikecp_handshakes_total", ())] == USERS * PER_USER
        assert got[("ikecp_sas_deleted_by_peer_total", ())] == USERS * PER_USER


def headless(segw, tmp_path: Path, name: str, *extra: str) -> dict[str, dict]:
    """A single-process headless run; it quits by itself once every user is done."""
    prefix = tmp_path / name
    proc = subprocess.run(
        [*LOCUST, "-f", locustfile(), "--headless", "-u", "2", "-r", "2", "-t", "60s",
         "--host", "127.0.0.1", "--ikecp-port", str(segw.port),
         "--ikecp-natt-port", str(segw.natt_port), "--ikecp-handshakes", "3",
         "--ikecp-timeout", "5", "--csv", str(prefix), "--only-summary", *extra],
        capture_output=True, text=True, timeout=90, env=ENV)
    with open(f"{prefix}_stats.csv", newline="") as f:
        stats = {r["Name"]: r for r in csv.DictReader(f)}
    with open(f"{prefix}_failures.csv", newline="") as f:
        failures = {r["Error"]: r for r in csv.DictReader(f)}
    return {"proc": {"returncode": proc.returncode, "stderr": proc.stderr},
            "stats": stats, "failures": failures}


def test_headless_run_writes_csv_and_failures_by_cause(tmp_path) -> None:
    with segw_process(tmp_path, segw_toml(str(tmp_path / "b.sqlite"))) as segw:
        good = headless(segw, tmp_path, "good")
        assert good["proc"]["returncode"] == 0, good["proc"]["stderr"][-2000:]
        assert int(good["stats"]["handshake"]["Request Count"]) == 6
        assert int(good["stats"]["handshake"]["Failure Count"]) == 0
        assert int(good["stats"]["delete"]["Request Count"]) == 6
        bad = headless(segw, tmp_path, "bad", "--ikecp-psk", "not the SeGW's key")
        assert bad["proc"]["returncode"] == 1  # Locust's exit status when requests failed
        assert int(bad["stats"]["handshake"]["Failure Count"]) == 6
        assert "delete" not in bad["stats"]
        (error,) = bad["failures"]
        assert "auth failure" in error and int(bad["failures"][error]["Occurrences"]) == 6


def test_headless_run_with_rekeys(tmp_path) -> None:
    """--ikecp-rekey: every handshake is followed by a CHILD SA rekey and an IKE SA rekey,
    each a request of its own; the SeGW counts the same rekeys."""
    from test_metrics import scrape

    with segw_process(tmp_path, segw_toml(str(tmp_path / "b.sqlite")),
                      "--metrics", "0") as segw:
        run = headless(segw, tmp_path, "rekey", "--ikecp-rekey")
        assert run["proc"]["returncode"] == 0, run["proc"]["stderr"][-2000:]
        for name in ("handshake", "child rekey", "ike rekey", "delete"):
            assert int(run["stats"][name]["Request Count"]) == 6, name
            assert int(run["stats"][name]["Failure Count"]) == 0, name
        got = scrape(segw.metrics_url)
        assert got[("ikecp_rekeys_total", (("sa", "child"),))] == 6
        assert got[("ikecp_rekeys_total", (("sa", "ike"),))] == 6
        assert got[("ikecp_handshakes_total", ())] == 6
