"""Batched endpoints (BatchSocket under the dispatcher driver) with the real engine, on both
BatchSocket backends: handshakes over IPv4 (with the NAT-T float) and IPv6, blocking and
asyncio, mixed with plain sockets, and refused datagrams counted without losing the rest."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from ikecp.engine import Datagram
from ikecp.events import IkeSaEstablished
from ikecp.net.core import IoCore
from ikecp.net.udp import DispatchDriver, UdpEndpoint
from ikecp.roles.dispatch import Dispatcher
from test_dispatch import fap_settings, segw_settings

N = 20


def pair(segw_batch: bool, fap_batch: bool, segw_host: str, fap_host: str):
    segw_ep = UdpEndpoint(segw_host, (0, 0), batch=segw_batch)
    # IPv6 has one loopback address: the FAP takes its own ports (no NAT in between).
    fap_ep = UdpEndpoint(fap_host, (0, 0) if segw_host == fap_host else segw_ep.ports,
                         batch=fap_batch)
    port, natt = segw_ep.ports
    segw = Dispatcher(segw_settings(natt_port=natt), segw_host, port=port,
                      cookie_threshold_ip=None)  # exact datagram counts: no COOKIE round
    fap = Dispatcher(None, fap_host, port=fap_ep.ports[0], natt_ports={fap_ep.ports[1]})
    return segw_ep, fap_ep, segw, fap


def established(events, into: list) -> None:
    into.extend(e for _, e in events if isinstance(e, IkeSaEstablished))


@pytest.mark.parametrize(("segw_host", "fap_host"), [("127.0.0.1", "127.0.3.5"), ("::1", "::1")])
@pytest.mark.parametrize("fap_batch", [True, False])
def test_blocking_driver_handshakes(backend, segw_host, fap_host, fap_batch):
    segw_ep, fap_ep, segw, fap = pair(True, fap_batch, segw_host, fap_host)
    up: list = []
    sd = DispatchDriver(segw, segw_ep)
    fd = DispatchDriver(fap, fap_ep, on_events=lambda evs: established(evs, up))
    try:
        port, natt = segw_ep.ports
        fset = fap_settings(natt_port=natt)
        sas = [fap.connect(fset, (segw_host, port), fd.clock(), natt_local_port=fap_ep.ports[1])
               for _ in range(N)]
        deadline = fd.clock() + 20
        fd.flush()
        while len(up) < N and fd.clock() < deadline:
            fd.core.poll(0.01)
            sd.core.poll(0.01)
        assert len(up) == N and all(sa.established for sa in sas)
        assert len(segw) == N
        assert sd.stats.received == 2 * N and sd.stats.sent == 2 * N
        assert sd.stats.send_errors == 0
        # Batched: the SeGW answered whole batches with fewer sendmmsg calls than datagrams.
        assert sd.stats.send_calls < sd.stats.sent
    finally:
        sd.close()
        fd.close()


def test_asyncio_driver_handshakes(backend):
    async def main() -> None:
        segw_ep, fap_ep, segw, fap = pair(True, True, "127.0.0.1", "127.0.3.6")
        up: list = []
        done = asyncio.Event()

        def sink(evs) -> None:
            established(evs, up)
            if len(up) == N:
                done.set()

        # Both on one core: one reader and one timer handle on the loop for the two.
        core = IoCore()
        sd = DispatchDriver(segw, segw_ep, core=core)
        fd = DispatchDriver(fap, fap_ep, on_events=sink, core=core)
        sd.start()
        fd.start()
        try:
            fset = fap_settings(natt_port=segw_ep.ports[1])
            for _ in range(N):
                fap.connect(fset, ("127.0.0.1", segw_ep.ports[0]), fd.clock())
            fd.flush()
            await asyncio.wait_for(done.wait(), 20)
            assert len(segw) == N
            assert core.stats.sent == 4 * N and core.stats.received == 4 * N
        finally:
            sd.close()
            fd.close()
            core.close()

    asyncio.run(main())


def test_refused_datagrams_are_counted_and_the_rest_goes(backend):
    rx = UdpEndpoint("127.0.0.1", (0,), batch=True)
    tx = UdpEndpoint("127.0.0.1", (0,), batch=True)
    port, to = tx.ports[0], ("127.0.0.1", rx.ports[0])
    bad = ("127.0.0.1", 0)  # port 0: the kernel refuses it
    out = [Datagram(b"a", port, to, False), Datagram(b"x", port, bad, False),
           Datagram(b"x", port, bad, False), Datagram(b"b", port, to, False),
           Datagram(b"c", port + 1, to, False),  # no socket on that port
           Datagram(b"d", port, to, True), Datagram(b"x", port, bad, False)]
    got: list = []
    receiver = IoCore()
    for _, sock, _ in rx.sockets():
        receiver.add(sock, lambda _token, batch, _now: got.extend(batch))
    # A dispatcher whose only work is this one outbox.
    batches = iter([out])
    outbox = SimpleNamespace(datagrams_to_send=lambda: next(batches, []), events=list,
                             next_timer=lambda: None)
    sender = DispatchDriver(outbox, tx)  # type: ignore[arg-type]
    try:
        sender.flush()
        assert sender.stats.sent == 3 and sender.stats.send_errors == 4
        receiver.run_until(lambda: len(got) >= 3, receiver.clock() + 5)
        assert [d for d, _ in got] == [b"a", b"b", b"\0\0\0\0d"]
        assert {src for _, src in got} == {("127.0.0.1", port)}
        assert receiver.stats.received == 3
    finally:
        sender.close()
        receiver.close()


def test_falls_back_to_the_twin_without_a_native_batch_socket(monkeypatch):
    """Where the extension has no BatchSocket (not Linux) the endpoint uses the twin."""
    from ikecp import _backend, _reference

    monkeypatch.setattr(_backend, "backend", SimpleNamespace())
    ep = UdpEndpoint("127.0.0.1", (0,), batch=True)
    try:
        assert all(isinstance(s, _reference.BatchSocket) for _, s, _ in ep.sockets())
    finally:
        ep.close()
