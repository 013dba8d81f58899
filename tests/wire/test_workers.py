"""``ikecp segw`` with two worker processes on loopback, as a user runs it:

- the load generator's handshakes are spread over both workers (each SPIr carries its
  worker's index, each inner address comes from that worker's half of the pool), and no
  message reaches the wrong worker (the misrouted counter of each worker stays 0);
- SIGKILL of one worker: its rows are closed at once with the reason, the other worker's rows
  stay, the killed worker is started again and new handshakes are all served;
- SIGTERM of the supervisor: every worker DELETEs its SAs, every row leaves through the
  history, the store is released and the process exits 0.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from ikecp.config import ConfigError, SegwConfig
from ikecp.cp import AddressPool
from ikecp.roles.bindings import BindingRegistry
from test_cli import CLI, ENV, free_ports

PSK = "two workers share this psk"
POOL = "10.77.0.0/24"


def worker_pids(supervisor: int) -> dict[int, int]:
    """Worker index -> pid, from the supervisor's children's command lines."""
    kids = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    out = {}
    for pid in map(int, kids):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"ikecp.roles.workers" in argv:
            out[int(argv[argv.index(b"--index") + 1])] = pid
    return out


def scrape(url: str) -> dict[tuple[str, str], float]:
    """(metric, worker) -> value for the per-worker dispatch counters."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(m[1], m[2]): float(m[3]) for m in re.finditer(
        r'^ikecp_dispatch_(\w+)_total\{role="segw",worker="(\d+)"\} (\S+)$', text, re.M)}


def wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def loadgen(port: int, natt: int, n: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "loadgen", "127.0.0.1", "--port", str(port), "--natt-port", str(natt),
         "-n", str(n), "-w", "32", "--source", "127.9.0.0/16", "--psk", PSK, "--plain",
         "--timeout", "30", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_two_workers_share_the_load_survive_a_crash_and_stop_cleanly(tmp_path) -> None:
    port, natt = free_ports("127.0.0.1", 2)
    db = tmp_path / "b.sqlite"
    config = tmp_path / "segw.toml"
    config.write_text(f'psk = "{PSK}"\nport = {port}\nnatt_port = {natt}\nbindings = "{db}"\n'
                      f'pool = "{POOL}"\nworkers = 2\nmetrics = "127.0.0.1:0"\ndpd = 0\n')
    segw = subprocess.Popen([*CLI, "segw", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    held = None
    try:
        assert segw.stdout is not None
        ready = segw.stdout.readline()
        assert ready.startswith("SeGW ") and ready.rstrip().endswith("2 workers"), \
            segw.stderr.read() if segw.stderr else ""
        url = segw.stdout.readline().split()[-1]
        pids = worker_pids(segw.pid)
        assert sorted(pids) == [0, 1]

        held = loadgen(port, natt, 120, "--hold", "120", "--no-teardown")
        reader = BindingRegistry.reader(db)
        wait_for(lambda: len(reader) == 120, 60, "120 bindings")
        rows = reader.all()
        by_worker = {i: [b for b in rows if int(b.spi_r[:2], 16) == i] for i in (0, 1)}
        assert by_worker[0] and by_worker[1] and sum(map(len, by_worker.values())) == 120
        hosts = list(ipaddress.ip_network(POOL).hosts())
        halves = {0: set(map(str, hosts[:127])), 1: set(map(str, hosts[127:]))}
        for i in (0, 1):
            assert {b.inner_ip for b in by_worker[i]} <= halves[i]
        assert len({b.inner_ip for b in rows}) == 120
        counters = scrape(url)
        assert counters[("misrouted", "0")] == counters[("misrouted", "1")] == 0
        assert counters[("sas_created", "0")] >= len(by_worker[0])
        assert counters[("sas_created", "1")] >= len(by_worker[1])

        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: len(reader) == len(by_worker[1]), 20, "worker 0's rows closed")
        assert {b.spi_r for b in reader.all()} == {b.spi_r for b in by_worker[1]}
        gone = [h for h in reader.history()
                if h[1] == "down" and h[2] == "worker 0 exited (signal 9): its SAs are gone"]
        assert sorted(h[3] for h in gone) == sorted(b.spi_r for b in by_worker[0])
        wait_for(lambda: worker_pids(segw.pid).get(0) not in (None, pids[0]), 30,
                 "worker 0 started again")
        fresh = loadgen(port, natt, 60, "--json", str(tmp_path / "fresh.json"))
        assert fresh.wait(90) == 0, fresh.stderr.read() if fresh.stderr else ""
        report = json.loads((tmp_path / "fresh.json").read_text())
        assert report["established"] == 60 and report["failed"] == 0
        counters = scrape(url)
        assert counters[("misrouted", "0")] == counters[("misrouted", "1")] == 0
        assert counters[("sas_created", "0")] > 0  # the new worker 0 served some

        segw.send_signal(signal.SIGTERM)
        assert segw.wait(60) == 0, segw.stderr.read() if segw.stderr else ""
        assert len(reader) == 0 and not reader.live()
        history = reader.history()
        ups = {h[3] for h in history if h[1] == "up"}
        downs = [h[3] for h in history if h[1] == "down"]
        assert sorted(downs) == sorted(ups) and len(ups) == 180
        assert sum(1 for h in history if h[2] == "shutdown") == len(by_worker[1])
        assert not Path(f"/proc/{pids[1]}").exists()
    finally:
        for proc in (held, segw):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_rebooted_fap_leaves_one_binding_whichever_worker_it_lands_on(tmp_path) -> None:
    """INITIAL_CONTACT (RFC 7296 §2.4) on one worker deletes the peer's older SA on the
    other: a FAP that reboots until its new SA lands on the other worker than its old one
    (the initiator SPI picks the worker) still leaves exactly one binding."""
    import asyncio

    from ikecp.config import FapConfig
    from ikecp.roles.femto import Femto

    port, natt = free_ports("127.0.0.1", 2)
    db = tmp_path / "b.sqlite"
    config = tmp_path / "segw.toml"
    config.write_text(f'psk = "{PSK}"\nport = {port}\nnatt_port = {natt}\nbindings = "{db}"\n'
                      "workers = 2\ndpd = 0\n")
    segw = subprocess.Popen([*CLI, "segw", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)

    async def reboots() -> set[int]:
        reader = BindingRegistry.reader(db)
        tags: set[int] = set()
        for n in range(24):
            fap = Femto(FapConfig(identity="fap.reboot.test", psk=PSK, segw="127.0.0.1",
                                  local="127.8.1.1", port=0, natt_port=0, segw_port=port,
                                  segw_natt_port=natt, dpd=0))
            await fap.start()
            status = await fap.wait_established(30)
            await fap.stop(delete=False)  # a reboot: no DELETE
            spi = status.spi_r
            end = time.monotonic() + 20
            while True:
                rows = reader.by_identity("fap.reboot.test")
                if len(rows) == 1 and rows[0].spi_r == spi:
                    break
                assert time.monotonic() < end, f"reboot {n}: {rows}"
                await asyncio.sleep(0.05)
            tags.add(int(rows[0].spi_r[:2], 16))
            if len(tags) == 2 and n >= 3:
                break
        return tags

    try:
        assert segw.stdout is not None and segw.stdout.readline().startswith("SeGW ")
        assert asyncio.run(reboots()) == {0, 1}
        segw.send_signal(signal.SIGTERM)
        assert segw.wait(30) == 0
    finally:
        if segw.poll() is None:
            segw.kill()
            segw.wait(10)


def test_workers_setting() -> None:
    assert SegwConfig(psk="x" * 16).worker_count() == len(os.sched_getaffinity(0))
    assert SegwConfig(psk="x" * 16, dataplane="tun", natt_port=4500).worker_count() == 1
    assert SegwConfig(psk="x" * 16, workers=3).worker_count() == 3
    for bad in (0, 257):
        with pytest.raises(ConfigError, match="workers"):
            SegwConfig(psk="x" * 16, workers=bad)
    with pytest.raises(ConfigError, match='"tun" data plane runs in one process'):
        SegwConfig(psk="x" * 16, workers=2, dataplane="tun", natt_port=4500)
    settings = SegwConfig(psk="x" * 16, pool=POOL).settings(4500, worker=(1, 2))
    assert settings.spi_tag == 1


@pytest.mark.parametrize("cidr", ["10.0.0.0/30", "10.0.0.0/24", "10.9.0.0/16", "fd00::/126"])
def test_pool_shares_split_the_hosts(cidr: str) -> None:
    """Every host address in exactly one worker's share, in order, shares within one of
    each other in size."""
    for count in (1, 2, 3):
        shares = []
        for i in range(count):
            pool = AddressPool(cidr, share=(i, count))
            got = []
            while (addr := pool.allocate()) is not None:
                got.append(addr)
            shares.append(got)
        assert [a for s in shares for a in s] == list(ipaddress.ip_network(cidr).hosts())
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError):
        AddressPool(cidr, share=(2, 2))
