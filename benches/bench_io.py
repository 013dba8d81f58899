"""I/O cost per handshake side of the dispatcher driver on the I/O core, blocking
(``IoCore.run_until``) and inside asyncio (``IoCore.attach``), measured side by side in one
run.

A handshake side receives two datagrams and sends two (IKE_SA_INIT and IKE_AUTH). Here an
echo "dispatcher" stands in for the engine, so only the driver and the socket calls are
timed: a client endpoint sends windows of 2-datagram "handshakes" (~300 octets each) to a
server endpoint that echoes them, both in this process on loopback. CPU time divided by
(handshakes x 2 sides) is the I/O cost per handshake side; the project's budget is 20 us.
``asyncio-endpoints`` is the baseline the drivers replace: plain asyncio datagram endpoints.
The ``-batch`` variants run the same driver on batched endpoints (the backend's
``BatchSocket``: recvmmsg/sendmmsg natively).

``test_full_handshake_io_share`` runs real handshakes (engine + crypto + NAT-T + CP) once in
memory and once over the blocking driver; the difference per side is what I/O adds.

Run: ``pytest benches/bench_io.py -s --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from ikecp.engine import Datagram
from ikecp.events import IkeSaEstablished
from ikecp.net.core import IoCore
from ikecp.net.udp import DispatchDriver, UdpEndpoint

HANDSHAKES = 2000
WINDOW = 32  # handshakes in flight (2 datagrams each), well below socket buffer sizes
PAYLOAD = bytes(300)
RESULTS: dict[str, float] = {}


class Echo:
    """Dispatcher stand-in: answers every datagram with the same bytes."""

    def __init__(self) -> None:
        self.out: list[Datagram] = []

    def receive(self, data: bytes, local_port: int, remote, now: float, *,
                local_ip: str | None = None) -> None:
        self.out.append(Datagram(data, local_port, remote, False))

    def datagrams_to_send(self) -> list[Datagram]:
        out, self.out = self.out, []
        return out

    def events(self) -> list:
        return []

    def next_timer(self) -> None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


class Client(Echo):
    """Sends the next window once the previous one has come back."""

    def __init__(self, port: int, server: tuple[str, int], total: int) -> None:
        super().__init__()
        self.port, self.server, self.left, self.pending = port, server, total, 0
        self.finished = False
        self.on_finish: asyncio.Event | None = None
        self._window()

    def _window(self) -> None:
        n = min(WINDOW, self.left)
        self.left -= n
        self.pending = 2 * n
        self.out = [Datagram(PAYLOAD, self.port, self.server, False)] * (2 * n)
        if n == 0:
            self.finished = True
            if self.on_finish is not None:
                self.on_finish.set()

    def receive(self, data: bytes, local_port: int, remote, now: float, *,
                local_ip: str | None = None) -> None:
        self.pending -= 1
        if self.pending == 0:
            self._window()


def _pair(batch: bool = False) -> tuple[UdpEndpoint, UdpEndpoint]:
    return (UdpEndpoint("127.0.0.1", (0,), batch=batch),
            UdpEndpoint("127.0.0.1", (0,), batch=batch))


def run_selector(n: int, batch: bool = False) -> float:
    srv_ep, cli_ep = _pair(batch)
    client = Client(cli_ep.ports[0], ("127.0.0.1", srv_ep.ports[0]), n)
    core = IoCore()
    srv = DispatchDriver(Echo(), srv_ep, core=core)  # type: ignore[arg-type]
    cli = DispatchDriver(client, cli_ep, core=core)  # type: ignore[arg-type]
    start = time.process_time()
    cli.flush()
    core.run_until(lambda: client.finished, core.clock() + 30)
    spent = time.process_time() - start
    srv.close()
    cli.close()
    core.close()
    assert client.finished
    return spent


def run_asyncio(n: int, batch: bool = False) -> float:
    async def main() -> float:
        srv_ep, cli_ep = _pair(batch)
        client = Client(cli_ep.ports[0], ("127.0.0.1", srv_ep.ports[0]), n)
        client.on_finish = asyncio.Event()
        core = IoCore()
        srv = DispatchDriver(Echo(), srv_ep, core=core)  # type: ignore[arg-type]
        cli = DispatchDriver(client, cli_ep, core=core)  # type: ignore[arg-type]
        start = time.process_time()
        srv.start()
        cli.start()
        await asyncio.wait_for(client.on_finish.wait(), 30)
        spent = time.process_time() - start
        srv.close()
        cli.close()
        core.close()
        assert client.finished
        return spent

    return asyncio.run(main())


def run_asyncio_endpoints(n: int) -> float:
    """Baseline: plain asyncio datagram endpoints (one protocol callback per datagram)."""

    class Server(asyncio.DatagramProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            self.t = transport

        def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
            self.t.sendto(data, addr)

    class ClientProto(asyncio.DatagramProtocol):
        def __init__(self, done: asyncio.Event) -> None:
            self.left, self.pending, self.done = n, 0, done

        def connection_made(self, transport) -> None:  # type: ignore[override]
            self.t = transport
            self.window()

        def window(self) -> None:
            k = min(WINDOW, self.left)
            self.left -= k
            self.pending = 2 * k
            if k == 0:
                self.done.set()
            for _ in range(2 * k):
                self.t.sendto(PAYLOAD)

        def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
            self.pending -= 1
            if self.pending == 0:
                self.window()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        start = time.process_time()
        st, _ = await loop.create_datagram_endpoint(Server, local_addr=("127.0.0.1", 0))
        port = st.get_extra_info("sockname")[1]
        ct, _ = await loop.create_datagram_endpoint(lambda: ClientProto(done),
                                                    remote_addr=("127.0.0.1", port))
        await asyncio.wait_for(done.wait(), 30)
        spent = time.process_time() - start
        st.close()
        ct.close()
        return spent

    return asyncio.run(main())


DRIVERS = {"selector": run_selector, "asyncio": run_asyncio,
           "asyncio-endpoints": run_asyncio_endpoints,
           "selector-batch": lambda n: run_selector(n, True),
           "asyncio-batch": lambda n: run_asyncio(n, True)}


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_io_per_handshake_side(benchmark, driver: str) -> None:
    benchmark.group = "udp driver: 1 handshake side = 2 recv + 2 send"
    fn = DRIVERS[driver]
    cpu: list[float] = []
    benchmark.pedantic(lambda: cpu.append(fn(HANDSHAKES)), rounds=3, iterations=1)
    per_side = min(cpu) / (2 * HANDSHAKES) * 1e6
    RESULTS[driver] = per_side
    print(f"\n{driver}: {per_side:.1f} us CPU per handshake side")
    if len(RESULTS) == len(DRIVERS):
        for name in ("asyncio", "asyncio-endpoints", "selector-batch", "asyncio-batch"):
            print(f"{name}/selector ratio: {RESULTS[name] / RESULTS['selector']:.2f}")


# --- full handshakes: the same engine work with and without sockets -------------------------

FULL = 300
_full: dict[str, float] = {}


def _settings():
    from ikecp.cp import CpRegistry, NatInfoHandler, NatInfoProvider
    from ikecp.engine import Identity, IkeProposal, PskAuthenticator, Settings

    prop = (IkeProposal.parse("aes256gcm16-prfsha256-x25519"),)
    fap = Settings(local_id=Identity.fqdn("fap.bench"), auth=PskAuthenticator(b"k" * 32),
                   ike_proposals=prop, cp=CpRegistry().add_handler(NatInfoHandler()),
                   force_encap=True)
    segw = Settings(local_id=Identity.fqdn("segw.bench"), auth=PskAuthenticator(b"k" * 32),
                    ike_proposals=prop, cp=CpRegistry().add_provider(NatInfoProvider()))
    return fap, segw


def full_in_memory(n: int) -> float:
    from ikecp.roles.dispatch import Dispatcher

    fset, sset = _settings()
    segw, fap = Dispatcher(sset, "127.0.0.1"), Dispatcher(None, "127.0.4.1")
    start = time.process_time()
    for _ in range(n):
        fap.connect(fset, ("127.0.0.1", 500), 0.0, local=("127.0.4.1", 500))
    moved = True
    while moved:
        moved = False
        for dg in fap.datagrams_to_send():
            moved = True
            segw.receive(dg.wire(), dg.remote[1], ("127.0.4.1", dg.local_port), 0.0)
        for dg in segw.datagrams_to_send():
            moved = True
            fap.receive(dg.wire(), dg.remote[1], ("127.0.0.1", dg.local_port), 0.0)
    spent = time.process_time() - start
    assert sum(sa.established for sa in fap.sas()) == n
    return spent


def full_on_sockets(n: int, batch: bool = False) -> float:
    from ikecp.roles.dispatch import Dispatcher

    fset, sset = _settings()
    segw_ep = UdpEndpoint("127.0.0.1", (0, 0), batch=batch)
    fap_ep = UdpEndpoint("127.0.4.1", segw_ep.ports, batch=batch)
    port, natt = segw_ep.ports
    fset, sset = replace(fset, natt_port=natt), replace(sset, natt_port=natt)
    segw = Dispatcher(sset, "127.0.0.1", port=port)
    fap = Dispatcher(None, "127.0.4.1", port=port, natt_ports={natt})
    core = IoCore()
    sd, fd = DispatchDriver(segw, segw_ep, core=core), DispatchDriver(fap, fap_ep, core=core)
    up = [0]

    def count(events: list) -> None:
        up[0] += sum(isinstance(ev, IkeSaEstablished) for _, ev in events)

    fd.on_events = count
    start = time.process_time()
    for i in range(0, n, WINDOW):  # windows keep the socket buffers from overflowing
        for _ in range(min(WINDOW, n - i)):
            fap.connect(fset, ("127.0.0.1", port), core.clock())
        fd.flush()
        target = min(n, i + WINDOW)
        core.run_until(lambda: up[0] >= target, core.clock() + 30)  # noqa: B023
    spent = time.process_time() - start
    done = sum(sa.established for sa in fap.sas())
    sd.close()
    fd.close()
    core.close()
    assert done == n
    return spent


FULL_RUNS = {"memory": full_in_memory, "sockets": full_on_sockets,
             "sockets-batch": lambda n: full_on_sockets(n, True)}


@pytest.mark.parametrize("where", list(FULL_RUNS))
def test_full_handshake_io_share(benchmark, where: str) -> None:
    """Engine + crypto + NAT-T + CP handshakes, in memory vs over the blocking driver:
    the difference per handshake side is what the sockets and the driver add."""
    benchmark.group = "full handshakes (X25519 + PSK + AES-GCM + NAT-T + CP)"
    fn = FULL_RUNS[where]
    cpu: list[float] = []
    benchmark.pedantic(lambda: cpu.append(fn(FULL)), rounds=3, iterations=1)
    _full[where] = min(cpu) / (2 * FULL) * 1e6
    print(f"\n{where}: {_full[where]:.1f} us CPU per handshake side")
    if len(_full) == len(FULL_RUNS):
        for name in ("sockets", "sockets-batch"):
            print(f"{name} - memory: {_full[name] - _full['memory']:.1f} us per side; "
                  f"{name}/memory ratio {_full[name] / _full['memory']:.2f}; "
                  f"{1e6 / (2 * _full[name]):.0f} handshakes/s per core")
