"""SIGTERM with thousands of SAs up: the SeGW paces its DELETE burst and has socket buffers
sized for the answers, so every peer's answer is counted and every binding leaves the
registry as "shutdown", none as "peer did not answer". Over loopback, the FAPs held by the
load generator (its own process, 5,000 SAs from 127.7.0.0/16)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter

from ikecp.config import SegwConfig
from ikecp.roles.bindings import BindingRegistry
from ikecp.roles.gateway import Gateway
from test_cli import CLI, ENV

SAS = 5000


def test_shutdown_with_5000_sas_counts_every_answer(tmp_path) -> None:
    psk = "shutdown test psk"
    cfg = SegwConfig(identity="segw.test", listen=("127.0.0.1",), port=0, natt_port=0,
                     psk=psk, pool="10.96.0.0/16", dpd=0, bindings=str(tmp_path / "b.sqlite"))

    async def main() -> None:
        gw = Gateway(cfg)
        await gw.start()
        port, natt = gw.ports
        load = subprocess.Popen(
            [*CLI, "loadgen", "127.0.0.1", "--port", str(port), "--natt-port", str(natt),
             "-n", str(SAS), "-w", "96", "--hold", "600", "--no-teardown", "--timeout", "60",
             "--source", "127.7.0.0/16", "--psk", psk, "--plain"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        try:
            deadline = time.monotonic() + 300
            while len(gw.store) < SAS:
                assert load.poll() is None, "the load generator ended early"
                assert time.monotonic() < deadline, f"only {len(gw.store)} SAs up"
                await asyncio.sleep(0.5)
            await gw.stop(timeout=10.0)
        finally:
            if load.poll() is None:
                load.terminate()
            load.wait(30)

    asyncio.run(main())
    reg = BindingRegistry.reader(cfg.bindings)
    downs = Counter(h[2] for h in reg.history() if h[1] == "down")
    reg.close()
    assert downs == Counter({"shutdown": SAS}), downs
    assert os.path.exists(cfg.bindings)


def test_shutdown_gives_up_on_silent_peers_after_the_timeout() -> None:
    from ikecp.lab.demo import Topology

    async def main() -> float:
        topo = Topology(3)
        await topo.start()
        for fap in topo.faps:  # the FAPs vanish without a word
            assert fap._driver is not None
            fap._driver.close()
            fap._driver = None
        gw = topo.gateway
        assert gw is not None
        started = time.monotonic()
        await gw.stop(timeout=1.0)
        took = time.monotonic() - started
        reasons = Counter(h[2] for h in topo.registry.history() if h[1] == "down")
        await topo.stop()
        assert reasons == Counter({"shutdown (peer did not answer DELETE)": 3})
        return took

    assert asyncio.run(main()) < 5.0
