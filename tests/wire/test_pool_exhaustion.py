"""A FAP beyond the address pool: it is told INTERNAL_ADDRESS_FAILURE and still learns its
public address (the NAT info is answered), the SeGW keeps no binding row without an inner IP
and deletes that IKE SA at once (it carries no CHILD_SA and no address: the FAP retries)."""

from __future__ import annotations

import asyncio

from ikecp.lab.demo import Topology
from test_roles import wait_until


def test_fap_beyond_the_pool_gets_nat_info_and_no_row() -> None:
    async def main() -> None:
        topo = Topology(3, segw_options={"pool": "10.99.0.0/30"},  # two host addresses
                        fap_options={"reconnect": 30.0})
        try:
            await topo.start()
            reg = topo.registry
            await wait_until(lambda: any(f.status.state == "down" for f in topo.faps), 10)
            rows = reg.all()
            assert len(rows) == 2 and all(r.inner_ip for r in rows)
            (late,) = [f for f in topo.faps if f.status.state == "down"]
            assert late.status.reason == "deleted by the SeGW"
            # What it learned before the DELETE (kept until it reconnects, 30 s later).
            assert late.status.established == 1 and late.status.inner_ip is None
            assert (late.status.public_ip, late.status.public_port) == topo.mapping_of(late)
            history = reg.history()
            assert all(h[5] is not None for h in history)  # no row ever without inner IP
        finally:
            await topo.stop()

    asyncio.run(main())
