"""The Prometheus endpoint of ``ikecp segw`` / ``ikecp fap``, scraped over HTTP."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import urllib.request

import pytest
from ikecp.config import ConfigError, FapConfig, SegwConfig, from_dict
from ikecp.loadgen import generator as loadgen
from ikecp.roles.gateway import Gateway
from ikecp.roles.metrics import EventCounts, MetricsServer, gateway_snapshot, parse_address
from ops_helpers import CLI, ENV, segw_process, segw_toml, wait_for
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape: (name, sorted labels without 'role') -> value."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "role"))
            out[(s.name, labels)] = s.value
    return out


W0 = (("worker", "0"),)


def test_parse_address_defaults_to_loopback() -> None:
    assert parse_address("9464") == ("127.0.0.1", 9464)
    assert parse_address("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    for bad in ("localhost:9464", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
    with pytest.raises(ConfigError, match="metrics"):
        from_dict(FapConfig, {"psk": "x", "metrics": "here:1"})


def test_segw_counters_match_a_loadgen_run(tmp_path) -> None:
    """COOKIE on every IKE_SA_INIT, every FAP behind the userspace NAPT: the scrape after
    the run agrees with what the load generator counted; scrapes during it succeed."""
    n = 120
    # one process: the worker="0" series are the totals
    cfg = segw_toml(str(tmp_path / "b.sqlite"), "cookie_threshold = 0", "workers = 1")
    with segw_process(tmp_path, cfg, "--metrics", "127.0.0.1:0") as segw:
        assert segw.metrics_url is not None
        assert segw.metrics_url.startswith("http://127.0.0.1:")
        before = scrape(segw.metrics_url)
        assert before[("ikecp_handshakes_total", ())] == 0
        lc = loadgen.LoadConfig(port=segw.port, natt_port=segw.natt_port, count=n, window=16,
                                nat=True, hold=0.3, timeout=20.0)
        result: list[loadgen.WorkerResult] = []
        runner = threading.Thread(target=lambda: result.append(loadgen.run(lc)))
        runner.start()
        during = []
        while runner.is_alive():
            during.append(scrape(segw.metrics_url))
            runner.join(0.05)
        res = result[0]
        after = scrape(segw.metrics_url)
        # SAs held for 0.3 s: some scrape saw established SAs and bindings.
        assert any(s[("ikecp_ike_sas", (("state", "established"), *W0))] > 0 for s in during)
        assert any(s[("ikecp_bindings", ())] > 0 for s in during)
        assert res.established == n, res.failures
        assert after[("ikecp_handshakes_total", ())] == n
        assert after[("ikecp_child_sas_established_total", ())] == n
        assert after[("ikecp_peer_bindings_total", ())] >= n
        assert after[("ikecp_nat_info_answered_total", ())] == res.nat_info_returned == n
        # One challenge per IKE_SA_INIT sent without a cookie (retransmissions included).
        assert n <= after[("ikecp_dispatch_cookies_sent_total", W0)] <= n + res.retransmissions
        assert after[("ikecp_dispatch_sas_created_total", W0)] == n
        assert not any(k[0] == "ikecp_handshake_failures_total" for k in after)
        assert after[("process_cpu_seconds_total", ())] > 0
        # Teardown: every FAP deleted its SA; the table and the registry are empty again.
        assert wait_for(lambda: scrape(segw.metrics_url)[
            ("ikecp_sas_deleted_by_peer_total", ())] == res.deleted == n, 10)
        final = scrape(segw.metrics_url)
        assert final[("ikecp_bindings", ())] == 0
        assert sum(v for (name, _), v in final.items() if name == "ikecp_ike_sas") == 0
        assert final[("ikecp_udp_received_total", W0)] >= \
            final[("ikecp_dispatch_ike_total", W0)] >= 3 * n


def test_segw_counts_failures_by_cause(tmp_path) -> None:
    """A wrong PSK: handshake failures by cause on the SeGW, nothing established."""
    with segw_process(tmp_path, segw_toml(str(tmp_path / "b.sqlite")),
                      "--metrics", "0") as segw:
        lc = loadgen.LoadConfig(port=segw.port, natt_port=segw.natt_port, count=5, window=5,
                                psk=b"not the SeGW's key", timeout=10.0)
        res = loadgen.run(lc)
        assert res.failures["auth failure"] == 5
        after = scrape(segw.metrics_url)
        assert after[("ikecp_handshakes_total", ())] == 0
        failures = {dict(k[1])["cause"]: v for k, v in after.items()
                    if k[0] == "ikecp_handshake_failures_total"}
        assert sum(failures.values()) == 5, failures


def test_fap_metrics(tmp_path) -> None:
    with segw_process(tmp_path, segw_toml(str(tmp_path / "b.sqlite"))) as segw:
        (tmp_path / "fap.toml").write_text(
            f'psk = "{loadgen.DEFAULT_PSK.decode()}"\nport = 0\nnatt_port = 0\n'
            f'segw_port = {segw.port}\nsegw_natt_port = {segw.natt_port}\n'
            'local = "127.0.0.1"\nmetrics = "127.0.0.1:0"\ndpd = 0.3\n')
        fap = subprocess.Popen([*CLI, "fap", "--config", str(tmp_path / "fap.toml"), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV)
        try:
            assert fap.stdout is not None
            assert fap.stderr is not None
            line = ""
            while "metrics on " not in line:  # on stderr: stdout carries only JSON
                line = fap.stderr.readline()
                assert line, "no 'metrics on' line"
            url = line.split("metrics on ", 1)[1].strip()
            status = json.loads(fap.stdout.readline())
            while status["state"] != "established":
                status = json.loads(fap.stdout.readline())
            assert wait_for(lambda: scrape(url)[("ikecp_dpd_answered_total", ())] >= 2, 15)
            got = scrape(url)
            assert got[("ikecp_handshakes_total", ())] == 1
            assert got[("ikecp_ike_sas", (("state", "established"), *W0))] == 1
            assert ("ikecp_bindings", ()) not in got  # a FAP has no registry
        finally:
            fap.send_signal(signal.SIGTERM)
            assert fap.wait(10) == 0


def test_data_plane_hook_and_snapshot_on_the_loop(tmp_path) -> None:
    """A data plane's counters join the scrape; the snapshot runs on the gateway's loop."""
    async def main() -> dict:
        counts = EventCounts()
        gw = Gateway(SegwConfig(psk="x", port=0, natt_port=0,
                                bindings=str(tmp_path / "b.sqlite")), on_event=counts.observe)
        await gw.start()
        loop = asyncio.get_running_loop()
        threads = []

        def snapshot():
            threads.append(threading.get_ident())
            return gateway_snapshot(gw, counts)

        server = MetricsServer("127.0.0.1:0", "segw", snapshot, loop).start()
        server.data_plane["esp"] = lambda: {"packets_in": 7, "packets_out": 5}
        try:
            got = await asyncio.to_thread(scrape, server.url)
            assert threads == [threading.get_ident()]  # taken on the loop's thread
            return got
        finally:
            server.close()
            await gw.stop()

    got = asyncio.run(main())
    assert got[("ikecp_dataplane_total", (("counter", "packets_in"),))] == 7
    assert got[("ikecp_dataplane_total", (("counter", "packets_out"),))] == 5
    assert got[("ikecp_bindings", ())] == 0
    assert got[("ikecp_ike_sas", (("state", "established"), *W0))] == 0


def test_rekey_series_exist_before_any_rekey(tmp_path) -> None:
    with segw_process(tmp_path, segw_toml(str(tmp_path / "b.sqlite")), "--metrics", "0") as s:
        got = scrape(s.metrics_url)
    assert got[("ikecp_rekeys_total", (("sa", "child"),))] == 0
    assert got[("ikecp_rekeys_total", (("sa", "ike"),))] == 0
