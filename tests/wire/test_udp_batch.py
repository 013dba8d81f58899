"""``BatchUdpEndpoint`` (BatchSocket under the UDP drivers) with the real engine, on both
BatchSocket backends: handshakes over IPv4 (with the NAT-T float) and IPv6, both drivers,
mixed with the plain endpoint, and refused datagrams counted without losing the rest."""

from __future__ import annotations

import asyncio

import pytest
from ikecp.engine import Datagram
from ikecp.events import IkeSaEstablished
from ikecp.net.udp import AsyncioDriver, BatchUdpEndpoint, SelectorDriver, UdpEndpoint
from ikecp.roles.dispatch import Dispatcher
from test_dispatch import fap_settings, segw_settings

N = 20


def pair(segw_cls, fap_cls, segw_host: str, fap_host: str):
    segw_ep = segw_cls(segw_host, (0, 0))
    # IPv6 has one loopback address: the FAP takes its own ports (no NAT in between).
    fap_ep = fap_cls(fap_host, (0, 0) if segw_host == fap_host else segw_ep.ports)
    port, natt = segw_ep.ports
    segw = Dispatcher(segw_settings(natt_port=natt), segw_host, port=port,
                      cookie_threshold_ip=None)  # exact datagram counts: no COOKIE round
    fap = Dispatcher(None, fap_host, port=fap_ep.ports[0], natt_ports={fap_ep.ports[1]})
    return segw_ep, fap_ep, segw, fap


def established(events, into: list) -> None:
    into.extend(e for _, e in events if isinstance(e, IkeSaEstablished))


@pytest.mark.parametrize(("segw_host", "fap_host"), [("127.0.0.1", "127.0.3.5"), ("::1", "::1")])
@pytest.mark.parametrize("fap_cls", [BatchUdpEndpoint, UdpEndpoint])
def test_selector_driver_handshakes(backend, segw_host, fap_host, fap_cls):
    segw_ep, fap_ep, segw, fap = pair(BatchUdpEndpoint, fap_cls, segw_host, fap_host)
    up: list = []
    sd = SelectorDriver(segw, segw_ep)
    fd = SelectorDriver(fap, fap_ep, on_events=lambda evs: established(evs, up))
    try:
        port, natt = segw_ep.ports
        fset = fap_settings(natt_port=natt)
        sas = [fap.connect(fset, (segw_host, port), fd.clock(), natt_local_port=fap_ep.ports[1])
               for _ in range(N)]
        deadline = fd.clock() + 20
        while len(up) < N and fd.clock() < deadline:
            fd.run_once(0.01)
            sd.run_once(0.01)
        assert len(up) == N and all(sa.established for sa in sas)
        assert len(segw) == N
        assert segw_ep.stats.received == 2 * N and segw_ep.stats.sent == 2 * N
        assert segw_ep.stats.send_errors == 0
    finally:
        sd.close()
        fd.close()


def test_asyncio_driver_handshakes(backend):
    async def main() -> None:
        segw_ep, fap_ep, segw, fap = pair(BatchUdpEndpoint, BatchUdpEndpoint, "127.0.0.1",
                                          "127.0.3.6")
        up: list = []
        done = asyncio.Event()

        def sink(evs) -> None:
            established(evs, up)
            if len(up) == N:
                done.set()

        sd, fd = AsyncioDriver(segw, segw_ep), AsyncioDriver(fap, fap_ep, on_events=sink)
        sd.start()
        fd.start()
        try:
            fset = fap_settings(natt_port=segw_ep.ports[1])
            for _ in range(N):
                fap.connect(fset, ("127.0.0.1", segw_ep.ports[0]), fd.clock())
            fd.flush()
            await asyncio.wait_for(done.wait(), 20)
            assert len(segw) == N
            assert fap_ep.stats.sent == 2 * N and fap_ep.stats.received == 2 * N
        finally:
            sd.close()
            fd.close()

    asyncio.run(main())


def test_refused_datagrams_are_counted_and_the_rest_goes(backend):
    rx = BatchUdpEndpoint("127.0.0.1", (0,))
    tx = BatchUdpEndpoint("127.0.0.1", (0,))
    try:
        port, to = tx.ports[0], ("127.0.0.1", rx.ports[0])
        bad = ("127.0.0.1", 0)  # port 0: the kernel refuses it
        out = [Datagram(b"a", port, to, False), Datagram(b"x", port, bad, False),
               Datagram(b"x", port, bad, False), Datagram(b"b", port, to, False),
               Datagram(b"c", port + 1, to, False),  # no socket on that port
               Datagram(b"d", port, to, True), Datagram(b"x", port, bad, False)]
        assert tx.send_batch(out) == 3
        assert tx.stats.sent == 3 and tx.stats.send_errors == 4
        key = rx.sockets()[0][0]
        got: list = []
        for _ in range(50):
            got += rx.recv_batch(key)[1]
            if len(got) == 3:
                break
        assert [d for d, _ in got] == [b"a", b"b", b"\0\0\0\0d"]
        assert {src for _, src in got} == {("127.0.0.1", port)}
        assert rx.stats.received == 3
    finally:
        rx.close()
        tx.close()


def test_falls_back_to_the_twin_without_a_native_batch_socket(monkeypatch):
    """Where the extension has no BatchSocket (not Linux) the endpoint uses the twin."""
    from types import SimpleNamespace

    from ikecp import _backend, _reference

    monkeypatch.setattr(_backend, "backend", SimpleNamespace())
    ep = BatchUdpEndpoint("127.0.0.1", (0,))
    try:
        assert all(isinstance(s, _reference.BatchSocket) for _, s in ep.sockets())
    finally:
        ep.close()
