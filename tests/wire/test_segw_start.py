"""A second ``ikecp segw`` on the same config must leave the running one alone: it takes the
instance lock and binds its sockets before it touches a single row, and says which address
is taken."""

from __future__ import annotations

import asyncio

from ikecp.lab.demo import Topology
from ikecp.roles.bindings import BindingRegistry
from test_cli import run


def test_second_start_fails_cleanly_and_keeps_the_registry(tmp_path) -> None:
    db = tmp_path / "b.sqlite"

    async def main() -> None:
        topo = Topology(3, registry=BindingRegistry(db))
        try:
            await topo.start()
            port, natt = topo.ports
            before = [b.spi_r for b in topo.registry.all()]
            assert len(before) == 3
            cfg = tmp_path / "segw.toml"
            # The same config: the ports are taken, and the message says which.
            cfg.write_text(f'psk = "x"\nport = {port}\nnatt_port = {natt}\n'
                           f'bindings = "{db}"\n')
            proc = await asyncio.to_thread(run, "segw", "--config", str(cfg))
            assert proc.returncode != 0
            assert "Traceback" not in proc.stderr
            assert f"127.0.0.1:{port}" in proc.stderr and "in use" in proc.stderr, proc.stderr
            # Free ports, the same registry: its lock is held.
            cfg.write_text(f'psk = "x"\nport = 0\nnatt_port = 0\nbindings = "{db}"\n')
            proc = await asyncio.to_thread(run, "segw", "--config", str(cfg))
            assert proc.returncode != 0
            assert "Traceback" not in proc.stderr
            assert f"registry {db} is in use" in proc.stderr, proc.stderr
            after = [b.spi_r for b in topo.registry.all()]
            assert after == before
            assert all(f.status.state == "established" for f in topo.faps)
        finally:
            await topo.stop()

    asyncio.run(main())
