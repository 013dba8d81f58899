"""What happens to a FAP, on real UDP sockets through the userspace NAPT relay: a rebooted FAP
replaces its old SA at the SeGW (INITIAL_CONTACT), a NAT rebinding reaches the FAP's status
within one liveness interval (CFG_SET push), a refused CHILD SA is reported and repaired."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from ikecp.config import FapConfig
from ikecp.const import ConfigAttr
from ikecp.events import ChildSaDeleted, ConfigSetAnswered, InitialContact
from ikecp.lab.demo import Topology, fap_ip
from ikecp.roles.femto import FapStatus, Femto
from ikecp.roles.gateway import Gateway
from test_roles import wait_until

NAT_INFO = ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO


def _pool(gw: Gateway):
    assert gw.dispatcher is not None and gw.dispatcher.responder is not None
    return gw.dispatcher.responder.cp.providers[ConfigAttr.INTERNAL_IP4_ADDRESS].pool


def _gateway(topo: Topology, events: list) -> Gateway:
    return Gateway(topo.segw_config(), store=topo.registry,
                   on_event=lambda sa, ev: events.append((sa, ev)))


def test_rebooted_fap_replaces_its_old_sa_binding_and_inner_ip() -> None:
    async def main() -> None:
        events: list = []
        topo = Topology(2, fap_options={"reconnect": 0.2})
        try:
            gw = _gateway(topo, events)
            await topo.start(gateway=gw)
            old_fap, other = topo.faps
            ident = old_fap.config.identity
            old = old_fap.status
            other_row = topo.registry.by_identity(other.config.identity)
            assert len([e for _, e in events if isinstance(e, InitialContact)]) == 2
            assert len(_pool(gw).in_use) == 2

            await old_fap.stop(delete=False)  # power cut: the SeGW still holds its SA
            new_fap = Femto(old_fap.config)
            topo.faps[0] = new_fap
            await new_fap.start()
            new = await new_fap.wait_established(10)
            await wait_until(lambda: [b.spi_r for b in topo.registry.by_identity(ident)]
                             == [new.spi_r])
            assert new.spi_i != old.spi_i
            # The old SA, its binding and its inner IP are gone; the other FAP is untouched.
            assert gw.dispatcher is not None
            assert gw.dispatcher.find(bytes.fromhex(old.spi_r)) is None
            assert len(_pool(gw).in_use) == 2
            assert topo.registry.by_identity(other.config.identity) == other_row
            (down,) = [h for h in topo.registry.history() if h[1] == "down"]
            assert down[3] == old.spi_r and "INITIAL_CONTACT" in down[2]
            assert len(topo.registry) == 2

            # A re-establishment within the same run carries no INITIAL_CONTACT.
            sa = gw.dispatcher.find(bytes.fromhex(new.spi_r))
            assert sa is not None
            sa.delete()
            gw.dispatcher.update(sa, gw.clock())
            assert gw._driver is not None
            gw._driver.flush()
            await wait_until(lambda: new_fap.status.established == 2
                             and new_fap.status.state == "established")
            assert len([e for _, e in events if isinstance(e, InitialContact)]) == 3
            assert len(topo.registry.by_identity(ident)) == 1
        finally:
            await topo.stop()

    asyncio.run(main())


def test_rebinding_reaches_the_fap_status_within_one_liveness_interval() -> None:
    interval = 1.0

    async def main() -> None:
        events: list = []
        statuses: list[FapStatus] = []
        topo = Topology(2, fap_options={"dpd": interval}, on_status=statuses.append)
        try:
            await topo.start(gateway=_gateway(topo, events))
            fap = topo.faps[0]
            before = fap.status
            assert (before.public_ip, before.public_port) == topo.mapping_of(fap)
            assert topo.relay is not None
            new = await topo.relay.rebind((fap.config.local, topo.ports[1]))
            t0 = time.monotonic()
            await wait_until(lambda: (fap.status.public_ip, fap.status.public_port) == new,
                             timeout=10)
            elapsed = time.monotonic() - t0
            # One interval, plus generous slack for a loaded machine.
            assert elapsed < interval + 1.5, elapsed
            after = fap.status
            assert (after.spi_i, after.spi_r, after.established) == \
                (before.spi_i, before.spi_r, before.established)
            assert after.state == "established" and after.child_state == "installed"
            assert statuses[-1].public_port == new[1]  # on_status (and --json) saw it
            row = topo.registry.by_identity(fap.config.identity)[0]
            assert (row.public_ip, row.public_port) == new
            answers = [e for _, e in events if isinstance(e, ConfigSetAnswered)]
            assert answers == [ConfigSetAnswered((NAT_INFO,), (NAT_INFO,))]
            # The other FAP did not move and was not pushed to.
            other = topo.faps[1]
            assert (other.status.public_ip, other.status.public_port) == \
                topo.mapping_of(other)
        finally:
            await topo.stop()

    asyncio.run(main())


def test_refused_child_sa_is_reported_and_repaired(caplog) -> None:
    """The pool has two addresses: a third FAP's CHILD SA is refused
    (INTERNAL_ADDRESS_FAILURE), which it logs and shows; once a FAP leaves, its repair
    succeeds."""
    caplog.set_level(logging.WARNING, logger="ikecp.fap")

    async def main() -> None:
        topo = Topology(2, segw_options={"pool": "10.99.0.0/30"},
                        fap_options={"reconnect": 0.2})
        third: Femto | None = None
        try:
            await topo.start()
            seen: list[FapStatus] = []
            cfg = topo.faps[0].config
            third = Femto(replace(cfg, identity="fap-003.demo.ikecp", local=fap_ip(2)),
                          on_status=seen.append)
            await third.start()
            await wait_until(lambda: any(s.child_state == "refused" for s in seen))
            refused = next(s for s in seen if s.child_state == "refused")
            assert (refused.child_reason or "").startswith("INTERNAL_ADDRESS_FAILURE")
            # (The ikecp SeGW also deletes such an IKE SA itself, so the status may already
            # be "down" here; the text of an established one names the refusal.)
            assert "CHILD SA refused (INTERNAL_ADDRESS_FAILURE" in \
                replace(refused, state="established").describe()
            assert refused.to_json()["child_state"] == "refused"
            assert any("CHILD SA refused" in r.getMessage() and r.levelno == logging.WARNING
                       for r in caplog.records)
            await topo.faps[0].stop()
            await wait_until(lambda: third.status.child_state == "installed"
                             and third.status.state == "established", timeout=15)
            assert third.status.inner_ip is not None
            assert third.status.child_losses >= 1
        finally:
            if third is not None:
                await third.stop()
            await topo.stop()

    asyncio.run(main())


def test_fap_mourns_only_its_own_child_sa() -> None:
    """A DELETE naming ESP SPIs of some other CHILD SA leaves the FAP's status alone; one
    naming our outbound SPI marks the CHILD SA deleted (no SA here: nothing to repair)."""
    fap = Femto(FapConfig(psk="x"))
    fap._set(state="established", child_state="installed", child_spis=("01020304", "0a0b0c0d"))
    fap._handle(None, ChildSaDeleted((bytes.fromhex("deadbeef"), bytes.fromhex("01020304"))))
    assert fap.status.child_state == "installed" and fap.status.child_losses == 0
    fap._handle(None, ChildSaDeleted((bytes.fromhex("0a0b0c0d"),)))
    assert (fap.status.child_state, fap.status.child_reason, fap.status.child_losses) == \
        ("deleted", "deleted by the SeGW", 1)
