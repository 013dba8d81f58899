"""The role callbacks on real sockets: a failed authentication on both sides, and a NAT
rebinding through the userspace NAPT as the SeGW's binding table and the FAP see it."""

from __future__ import annotations

import asyncio

from ikecp import (
    BindingChanged,
    FapConfig,
    Femto,
    Gateway,
    PublicAddressUpdate,
    SaFailure,
    SegwConfig,
)
from ikecp.const import NotifyType
from ikecp.lab.demo import Topology
from ikecp.testing.wait import wait_until


def test_a_wrong_psk_is_reported_on_both_sides() -> None:
    async def main() -> None:
        segw_saw: list[SaFailure] = []
        fap_saw: list[SaFailure] = []
        bindings: list[BindingChanged] = []
        gw = Gateway(SegwConfig(psk="the right secret", port=0, natt_port=0),
                     on_sa_failed=segw_saw.append, on_binding=bindings.append)
        await gw.start()
        port, natt = gw.ports
        fap = Femto(FapConfig(psk="a wrong secret!!", segw="127.0.0.1", port=0, natt_port=0,
                              segw_port=port, segw_natt_port=natt, identity="fap-x.example",
                              reconnect=30.0), on_sa_failed=fap_saw.append)
        try:
            await fap.start()
            await wait_until(lambda: bool(fap_saw) and len(segw_saw) >= 2)
        finally:
            await fap.stop()
            await gw.stop()
        assert [(f.kind, f.peer) for f in segw_saw[:2]] == [
            ("auth", "fap-x.example"), ("sa", None)]
        assert segw_saw[0].reason.startswith("bad AUTH: ")
        assert segw_saw[0].remote[0] == "127.0.0.1"
        (failed,) = fap_saw
        assert (failed.kind, failed.reason, failed.notify_type) == (
            "sa", "peer refused IKE_AUTH", NotifyType.AUTHENTICATION_FAILED)
        assert segw_saw[0].notify_type == NotifyType.AUTHENTICATION_FAILED
        assert bindings == []  # no binding without authentication

    asyncio.run(main())


def test_a_nat_rebinding_reaches_both_callbacks() -> None:
    async def main() -> None:
        changes: list[BindingChanged] = []
        topo = Topology(1, fap_options={"nat_info_mode": "always"})
        gw = Gateway(topo.segw_config(), store=topo.registry, on_binding=changes.append)
        try:
            await topo.start(gateway=gw)
            fap = topo.faps[0]
            updates: list[PublicAddressUpdate] = []
            fap.on_public_address = updates.append
            old = topo.mapping_of(fap)
            assert old is not None and (fap.status.public_ip, fap.status.public_port) == old
            assert topo.relay is not None
            new = await topo.relay.rebind((fap.config.local, topo.ports[1]))
            assert fap.check_liveness()  # an authenticated request from the new port
            await wait_until(lambda: bool(updates))
            (update,) = updates
            assert (update.address, update.port, update.previous, update.pushed) == (
                *new, old, True)
            kinds = [(c.kind, c.identity) for c in changes]
            assert kinds == [("up", fap.config.identity), ("rebind", fap.config.identity)]
            rebind = changes[1]
            assert (rebind.public_ip, rebind.public_port) == new
            assert rebind.reason == f"{old[0]}:{old[1]}"
            assert rebind.spi_r == changes[0].spi_r == fap.status.spi_r
        finally:
            await topo.stop()
        assert [c.kind for c in changes][-1] == "down"

    asyncio.run(main())


def test_a_callback_that_raises_is_logged_and_the_role_carries_on(caplog) -> None:
    def broken(change: BindingChanged) -> None:
        raise RuntimeError("bug in the application")

    async def main() -> None:
        gw = Gateway(SegwConfig(psk="a long enough psk", port=0, natt_port=0),
                     on_binding=broken)
        await gw.start()
        port, natt = gw.ports
        fap = Femto(FapConfig(psk="a long enough psk", segw="127.0.0.1", port=0, natt_port=0,
                              segw_port=port, segw_natt_port=natt),
                    on_status=lambda status: 1 / 0)
        try:
            await fap.start()
            status = await fap.wait_established(10)
            assert status.inner_ip is not None
            await wait_until(lambda: len(gw.store) == 1)  # the row was written all the same
        finally:
            await fap.stop()
            await gw.stop()
        assert len(gw.store) == 0

    asyncio.run(main())
    raised = [r for r in caplog.records if "callback" in r.getMessage()]
    assert {r.name for r in raised} == {"ikecp.segw", "ikecp.fap"}
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in raised)
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in raised)
