"""ikecp FAP behind the Linux kernel's NAPT (nftables masquerade in network namespaces) and
ikecp SeGW on the operator side, both as the CLI runs them. The public address the FAP learns
must be 198.51.100.1:<port the kernel chose>, read back from the router's conntrack table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from ikecp.lab import netns

pytestmark = pytest.mark.netns

CLI = [sys.executable, "-m", "ikecp.cli"]


def test_fap_behind_kernel_napt_learns_translated_address(topo, tmp_path) -> None:
    db = tmp_path / "b.sqlite"
    (tmp_path / "segw.toml").write_text(
        f'psk = "kernel nat"\nlisten = "{netns.SEGW_ADDR}"\nbindings = "{db}"\n'
        'identity = "segw.example.net"\n')
    (tmp_path / "fap.toml").write_text(
        f'psk = "kernel nat"\nsegw = "{netns.SEGW_ADDR}"\nidentity = "fap-k.example.net"\n'
        'segw_id = "segw.example.net"\n')
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    segw = topo.popen("segw", [*CLI, "segw", "--config", str(tmp_path / "segw.toml")],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert segw.stdout is not None
    assert "SeGW" in segw.stdout.readline()
    fap = topo.popen("fap", [*CLI, "fap", "--config", str(tmp_path / "fap.toml"), "--json"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert fap.stdout is not None
    status: dict = {}
    deadline = time.monotonic() + 30
    while status.get("state") != "established" and time.monotonic() < deadline:
        line = fap.stdout.readline()
        if not line:
            break
        status = json.loads(line)
    assert status.get("state") == "established", fap.stderr.read() if fap.stderr else ""
    assert status["nat_detected"] is True
    mapped = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
    assert mapped[0] == netns.RTR_OUTSIDE_ADDR
    assert (status["public_ip"], status["public_port"]) == mapped
    rows = subprocess.run([*CLI, "bindings", "--db", str(db), "--json",
                           "--identity", "fap-k.example.net"],
                          capture_output=True, text=True, timeout=30)
    assert rows.returncode == 0, rows.stderr
    row = json.loads(rows.stdout)
    assert (row["public_ip"], row["public_port"]) == mapped
    assert row["inner_ip"] == status["inner_ip"]
