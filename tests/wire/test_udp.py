"""The dispatcher driver with the real engine: IPv4 and IPv6 loopback, blocking and asyncio,
many SAs."""

from __future__ import annotations

import asyncio
import socket

import pytest
from ikecp.events import IkeSaEstablished
from ikecp.net.udp import DispatchDriver, UdpEndpoint
from ikecp.roles.dispatch import Dispatcher
from ikecp.testing.facility import require
from test_dispatch import fap_settings, segw_settings


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def endpoints(segw_host: str, fap_host: str):
    """A SeGW endpoint on two free ports and a FAP endpoint on the same numbers."""
    segw_ep = UdpEndpoint(segw_host, (0, 0))
    fap_ep = UdpEndpoint(fap_host, segw_ep.ports)
    return segw_ep, fap_ep


@pytest.mark.parametrize(("segw_host", "fap_host"), [("127.0.0.1", "127.0.3.1"),
                                                      ("::1", "::1")])
def test_blocking_driver_many_handshakes(segw_host: str, fap_host: str) -> None:
    if ":" in segw_host:
        require(None if has_ipv6() else "no IPv6 loopback on this machine")
    if segw_host == fap_host:  # IPv6 has one loopback address: distinct ports, no NAT
        segw_ep = UdpEndpoint(segw_host, (0, 0))
        fap_ep = UdpEndpoint(fap_host, (0, 0))
    else:
        segw_ep, fap_ep = endpoints(segw_host, fap_host)
    port, natt = segw_ep.ports
    segw = Dispatcher(segw_settings(natt_port=natt), segw_host, port=port,
                      cookie_threshold_ip=None)  # exact datagram counts: no COOKIE round
    fap = Dispatcher(None, fap_host, port=fap_ep.ports[0], natt_ports={fap_ep.ports[1]})
    up: list[object] = []
    sd = DispatchDriver(segw, segw_ep)
    fd = DispatchDriver(fap, fap_ep, on_events=lambda evs: up.extend(
        e for _, e in evs if isinstance(e, IkeSaEstablished)))
    try:
        fset = fap_settings(natt_port=natt)
        sas = [fap.connect(fset, (segw_host, port), fd.clock(), natt_local_port=fap_ep.ports[1])
               for _ in range(20)]
        deadline = fd.clock() + 20
        fd.flush()
        while len(up) < 20 and fd.clock() < deadline:
            fd.core.poll(0.01)
            sd.core.poll(0.01)
        assert len(up) == 20 and all(sa.established for sa in sas)
        assert len(segw) == 20
        assert sd.stats.received == 40 and sd.stats.sent == 40
        assert sd.stats.send_errors == 0
        assert segw.events() == []  # a driver without a sink still drains events
    finally:
        sd.close()
        fd.close()


def test_asyncio_driver_retransmits_on_its_timer() -> None:
    """Nobody answers: the one loop timer drives every SA's retransmissions, then failure."""
    from ikecp.engine import RetransmitPolicy

    async def main() -> None:
        sink = UdpEndpoint("127.0.0.1", (0,))  # bound, never read: a silent peer
        fap_ep = UdpEndpoint("127.0.3.2", (0, 0))
        fap = Dispatcher(None, "127.0.3.2", port=fap_ep.ports[0], natt_ports={fap_ep.ports[1]})
        drv = DispatchDriver(fap, fap_ep)
        drv.start()
        try:
            fset = fap_settings(retransmit=RetransmitPolicy(0.05, 1.0, 2))
            for _ in range(3):
                fap.connect(fset, ("127.0.0.1", sink.ports[0]), drv.clock())
            drv.flush()
            for _ in range(100):
                if len(fap) == 0:
                    break
                await asyncio.sleep(0.02)
            assert len(fap) == 0 and fap.stats.sas_removed == 3
            assert drv.stats.sent == 9  # 3 SAs x (first try + 2 retransmissions)
        finally:
            drv.close()
            sink.close()

    asyncio.run(main())
