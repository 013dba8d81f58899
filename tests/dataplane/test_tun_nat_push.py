"""With the TUN data plane an authenticated ESP packet from a new port moves the binding
too, so the SeGW's CFG_SET push reaches the FAP long before its next liveness check: the FAP
reports the new public address:port (the router's conntrack mapping) within a couple of
seconds of the rebinding, with the liveness interval at its default 30 s."""

from __future__ import annotations

import json
import time

import pytest
from ikecp.lab import netns
from test_tun_traffic import BEHIND, start_pair

pytestmark = pytest.mark.netns


def test_esp_traffic_brings_the_pushed_nat_info_before_any_liveness_check(topo, tmp_path):
    fap, status = start_pair(topo, tmp_path, fap_extra="dpd = 30.0\n")
    first = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
    assert (status["public_ip"], status["public_port"]) == first
    pinger = topo.popen("fap", ["ping", "-c", "30", "-i", "0.2", "-W", "2", BEHIND])
    time.sleep(1.0)
    topo.rebind()
    t0 = time.monotonic()
    assert fap.stdout is not None
    seen: dict = status
    while seen.get("public_port") == first[1] and time.monotonic() - t0 < 15:
        line = fap.stdout.readline()
        if not line:
            break
        seen = json.loads(line)
    elapsed = time.monotonic() - t0
    print(f"NAT rebinding: the FAP reported the new public port after {elapsed:.2f} s")
    pinger.wait(30)
    moved = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
    assert moved != first
    assert (seen["public_ip"], seen["public_port"]) == moved, (tmp_path / "fap.log").read_text()
    assert elapsed < 10, elapsed  # well inside the 30 s liveness interval
    assert (seen["spi_i"], seen["established"]) == (status["spi_i"], 1)
    assert "pushed by the SeGW" in (tmp_path / "fap.log").read_text()
