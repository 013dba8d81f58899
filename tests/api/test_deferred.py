"""A deferred CP value on a running Gateway: once the application settles it, the IKE_AUTH
response goes out at once (not on the FAP's next retransmission)."""

from __future__ import annotations

import asyncio

import pytest
from ikecp import Deferred, FapConfig, Femto, Gateway, SaFailure, SegwConfig
from ikecp.const import ConfigAttr, NotifyType


class Ipam:
    """A custom inner-address provider whose answer comes later (an IPAM lookup)."""

    attr_type = ConfigAttr.INTERNAL_IP4_ADDRESS

    def __init__(self) -> None:
        self.pending: list[Deferred] = []
        self.asked = asyncio.Event()

    def provide(self, ctx, requested) -> Deferred:
        self.pending.append(Deferred())
        self.asked.set()
        return self.pending[-1]

    def release(self, ctx) -> None:
        return None


def test_done_callbacks() -> None:
    d, seen = Deferred(), []
    d.add_done_callback(seen.append)
    assert seen == []
    d.resolve([b"\x0a\x00\x00\x01"])
    d.add_done_callback(seen.append)  # already settled: called at once
    assert seen == [d, d] and d.values == [b"\x0a\x00\x00\x01"]
    failed = Deferred()
    failed.add_done_callback(seen.append)
    failed.fail(NotifyType.INTERNAL_ADDRESS_FAILURE, "pool empty")
    assert seen[-1] is failed and failed.failure is not None


@pytest.mark.parametrize("outcome", ["resolve", "fail"])
def test_settling_sends_the_response_now(outcome: str) -> None:
    async def main() -> None:
        ipam = Ipam()
        failures: list[SaFailure] = []  # the FAP's
        refused: list[SaFailure] = []  # the SeGW's
        gw = Gateway(SegwConfig(psk="deferred-" * 2, port=0, natt_port=0), providers=[ipam],
                     on_sa_failed=refused.append)
        await gw.start()
        port, natt = gw.ports
        # The first retransmission would come 20 s later: only the resume can answer in time.
        fap = Femto(FapConfig(psk="deferred-" * 2, segw="127.0.0.1", port=0, natt_port=0,
                              segw_port=port, segw_natt_port=natt, retransmit_timeout=20.0),
                    on_sa_failed=failures.append)
        try:
            await fap.start()
            await asyncio.wait_for(ipam.asked.wait(), 10)
            await asyncio.sleep(0.3)  # the FAP waits; nothing is sent meanwhile
            assert fap.status.state == "connecting"
            loop = asyncio.get_running_loop()
            settled = loop.time()
            if outcome == "resolve":
                ipam.pending[0].resolve([bytes([10, 55, 0, 9])])
            else:
                ipam.pending[0].fail(NotifyType.INTERNAL_ADDRESS_FAILURE, "IPAM says no")
            if outcome == "resolve":
                status = await fap.wait_established(5)
                assert loop.time() - settled < 5
                assert status.inner_ip == "10.55.0.9"
                assert fap.sa is not None and fap.sa.stats.retransmissions == 0
                assert failures == refused == []
            else:
                while not any(f.kind == "child" for f in failures):
                    assert loop.time() - settled < 5, failures
                    await asyncio.sleep(0.02)
                child = next(f for f in failures if f.kind == "child")
                assert child.reason == "INTERNAL_ADDRESS_FAILURE: peer refused the CHILD_SA"
                assert child.peer == "segw.ikecp.test"
                assert [(f.kind, f.peer, f.reason) for f in refused] == [
                    ("child", "fap.ikecp.test", "IPAM says no")]
        finally:
            await fap.stop()
            await gw.stop()

    asyncio.run(main())
