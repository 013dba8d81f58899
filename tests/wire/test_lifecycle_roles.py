"""The SeGW and FAP programs through rekeys and reauthentications on real UDP sockets and the
userspace NAPT: the FAP stays connected, the binding row is there at every sample (an IKE
rekey keeps the row with new SPIs and a history entry, a reauthentication replaces it), and
the Dispatcher routes every new SPI."""

from __future__ import annotations

import asyncio

import pytest
from ikecp.events import IkeSaRekeyed, ReauthStarted, SaDeleted, SaFailed
from ikecp.lab.demo import Topology
from test_roles import wait_until

FAST = {"rekey_time": 1.2, "over_time": 2.0, "rand_time": 0.3,
        "child_rekey_time": 0.5, "child_life_time": 1.5, "child_rand_time": 0.1}


def _watch(topo: Topology, seconds: float, period: float = 0.05):
    """Sample the registry and the FAP while the lifetimes run; every sample must hold."""
    async def run() -> int:
        fap = topo.faps[0]
        identity = fap.config.identity
        samples = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            rows = topo.registry.by_identity(identity)
            assert rows, f"no binding for {identity} after {samples} samples"
            assert fap.status.state == "established"
            assert fap.sa is not None and fap.sa.children, "no CHILD SA"
            samples += 1
            await asyncio.sleep(period)
        return samples
    return run()


@pytest.mark.parametrize("rekeying", ["fap", "segw"])
def test_rekeys_keep_the_binding_row_and_the_fap_connected(rekeying: str) -> None:
    quiet = {"rekey_time": 0, "child_rekey_time": 0}
    async def main() -> None:
        events: list = []
        topo = Topology(1, fap_options={**(FAST if rekeying == "fap" else quiet), "dpd": 0},
                        segw_options={**(FAST if rekeying == "segw" else quiet), "dpd": 0})
        try:
            await topo.start()
            fap = topo.faps[0]
            fap.on_event = lambda sa, ev: events.append(ev)
            first = topo.registry.all()[0]
            samples = await _watch(topo, 4.5)
            assert samples > 40
            assert fap.status.rekeys >= 3, fap.status
            (row,) = topo.registry.all()
            assert row.spi_r != first.spi_r and row.identity == first.identity
            assert row.inner_ip == first.inner_ip and row.first_seen == first.first_seen
            kinds = [h[1] for h in topo.registry.history()]
            assert kinds.count("rekey") >= 3 and "down" not in kinds
            assert sum(isinstance(e, IkeSaRekeyed) for e in events) >= 3
            assert not any(isinstance(e, SaFailed) for e in events)
            assert all(e.replaced for e in events if isinstance(e, SaDeleted))
            d = topo.gateway.dispatcher
            own = row.spi_i if rekeying == "segw" else row.spi_r  # who started the last rekey
            assert d is not None and d.find(bytes.fromhex(own)) is not None
            assert len(d) == 1  # every replaced SA is gone from the table
        finally:
            await topo.stop()

    asyncio.run(main())


def test_reauthentication_replaces_the_row_without_a_gap() -> None:
    async def main() -> None:
        events: list = []
        topo = Topology(1, fap_options={"reauth_time": 1.0, "rekey_time": 0, "over_time": 3.0,
                                        "rand_time": 0.2, "dpd": 0},
                        segw_options={"dpd": 0, "rekey_time": 0})
        try:
            await topo.start()
            fap = topo.faps[0]
            fap.on_event = lambda sa, ev: events.append(ev)
            first = topo.registry.all()[0]
            await _watch(topo, 3.6)
            assert fap.status.reauths >= 3, fap.status
            await wait_until(lambda: len(topo.registry) == 1)
            (row,) = topo.registry.all()
            assert row.spi_r != first.spi_r and row.identity == first.identity
            ups = [h for h in topo.registry.history() if h[1] == "up"]
            downs = [h for h in topo.registry.history() if h[1] == "down"]
            assert len(ups) >= 4 and len(downs) >= 3
            assert sum(isinstance(e, ReauthStarted) for e in events) >= 3
            assert not any(isinstance(e, SaFailed) for e in events)
            assert fap.status.public_ip is not None
        finally:
            await topo.stop()

    asyncio.run(main())


def test_fap_reports_a_public_address_that_changed_at_reauthentication(caplog) -> None:
    """The NAT moves the FAP's mapping between two SAs: the next reauthentication learns the
    new address:port from the SeGW and the FAP reports it (status, previous value, WARNING)."""
    async def main() -> None:
        statuses: list = []
        topo = Topology(1, fap_options={"reauth_time": 1.5, "rekey_time": 0, "over_time": 5.0,
                                        "rand_time": 0.0, "dpd": 0},
                        segw_options={"dpd": 0, "rekey_time": 0})
        try:
            await topo.start()
            fap = topo.faps[0]
            fap.on_status = statuses.append
            first = (fap.status.public_ip, fap.status.public_port)
            assert first == topo.mapping_of(fap)
            assert topo.relay is not None
            # Rebound quietly (no liveness check): only the next SA's NAT info can tell.
            moved = await topo.relay.rebind((fap.config.local, topo.ports[1]))
            await wait_until(lambda: fap.status.reauths >= 1, timeout=10)
            await wait_until(lambda: (fap.status.public_ip, fap.status.public_port) == moved)
            assert fap.status.previous_public == f"{first[0]}:{first[1]}"
            assert fap.status.state == "established"
            assert any(s.previous_public for s in statuses)
            assert any("public address changed" in r.getMessage() and r.levelname == "WARNING"
                       for r in caplog.records)
        finally:
            await topo.stop()

    asyncio.run(main())
