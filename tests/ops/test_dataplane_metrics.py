"""The data plane's counters on the metrics endpoint: a FAP and a SeGW with the TUN data
plane (as ``tests/dataplane/test_tun_traffic.py`` runs them, kernel NAPT in between), ping
through the tunnel, then the FAP's endpoint is scraped inside its namespace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.netns

_spec = importlib.util.spec_from_file_location(
    "tun_traffic", Path(__file__).resolve().parents[1] / "dataplane" / "test_tun_traffic.py")
assert _spec is not None and _spec.loader is not None
tun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tun)

SCRAPE = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
          "'http://127.0.0.1:9470/metrics', timeout=10).read().decode())")


def test_fap_endpoint_counts_esp_through_the_tun_data_plane(topo, tmp_path) -> None:
    _, status = tun.start_pair(topo, tmp_path, fap_extra='metrics = "127.0.0.1:9470"\n')
    assert status["dataplane"] == "tun"
    assert tun.ping(topo, 5) == 5
    text = topo.run_cmd("fap", [sys.executable, "-c", SCRAPE], timeout=30)
    got = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "role"))): s.value
           for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert got[("ikecp_dataplane_child_sas", ())] == 1
    installed = {dict(k[1])["counter"]: v for k, v in got.items()
                 if k[0] == "ikecp_dataplane_installed"}
    assert installed["packets_out"] >= 5 and installed["packets_in"] >= 5
    assert installed["icv_failures"] == installed["replay_drops"] == 0
    plane = {dict(k[1])["counter"]: v for k, v in got.items()
             if k[0] == "ikecp_dataplane_total"}
    assert plane["send_errors"] == 0 and "no_sa_in" in plane
    assert got[("ikecp_handshakes_total", ())] == 1
