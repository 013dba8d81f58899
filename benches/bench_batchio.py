"""Datagram I/O cost on loopback: asyncio, blocking sockets, and BatchSocket (both backends).

Run: ``pytest benches/bench_batchio.py --benchmark-group-by=group -s`` (release build of the
extension). One call echoes a burst of BURST 300-octet datagrams (IKE_AUTH-sized) from one
socket to another and back, so each datagram is sent twice and received twice; the
per-datagram figure is mean / (2 * BURST) (one send + one receive). The table printed at the
end (``-s``) gives µs per datagram and each driver's ratio to the native batch, all measured
side by side in this one run.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import pytest
from ikecp._backend import load

BURST = 32
PAYLOAD = bytes(range(256)) + bytes(44)
HOST = "127.0.0.1"
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    """Prints µs per datagram and the ratio to the native batch once every driver ran."""
    yield
    if "native batch" not in RESULTS:
        return
    base = RESULTS["native batch"]
    print(f"\n\nUDP echo on loopback, {BURST} x {len(PAYLOAD)}-octet datagrams per burst")
    for name, us in sorted(RESULTS.items(), key=lambda kv: kv[1]):
        print(f"  {name:<22} {us:7.2f} µs/datagram   x{us / base:5.2f} vs native batch")


def record(benchmark, name: str) -> None:
    us = benchmark.stats.stats.mean * 1e6 / (2 * BURST)
    benchmark.extra_info["us_per_datagram"] = round(us, 3)
    RESULTS[name] = us


def run(benchmark, name: str, echo: Callable[[], int]) -> None:
    benchmark.group = f"UDP echo, {BURST} datagrams each way"
    received = benchmark(echo)
    assert received == 2 * BURST
    record(benchmark, name)


def test_blocking_sendto_recvfrom(benchmark):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind((HOST, 0))
    b.bind((HOST, 0))
    a.settimeout(2.0)
    b.settimeout(2.0)
    to_b = b.getsockname()

    def echo() -> int:
        for _ in range(BURST):
            a.sendto(PAYLOAD, to_b)
        n = 0
        for _ in range(BURST):
            data, src = b.recvfrom(65535)
            b.sendto(data, src)
            n += 1
        for _ in range(BURST):
            a.recvfrom(65535)
            n += 1
        return n

    try:
        run(benchmark, "blocking socket", echo)
    finally:
        a.close()
        b.close()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data, addr):  # type: ignore[override]
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0
        self.done: asyncio.Future[None] | None = None

    def datagram_received(self, data, addr):  # type: ignore[override]
        self.count += 1
        if self.count == BURST and self.done is not None:
            self.done.set_result(None)


def test_asyncio_datagram_protocol(benchmark):
    loop = asyncio.new_event_loop()
    server, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(_Echo, local_addr=(HOST, 0)))
    client_t, client = loop.run_until_complete(
        loop.create_datagram_endpoint(_Client, local_addr=(HOST, 0)))
    to_server = server.get_extra_info("sockname")

    async def burst() -> int:
        client.count = 0
        client.done = loop.create_future()
        for _ in range(BURST):
            client_t.sendto(PAYLOAD, to_server)
        await asyncio.wait_for(client.done, 2.0)
        return 2 * client.count

    try:
        run(benchmark, "asyncio protocol", lambda: loop.run_until_complete(burst()))
    finally:
        client_t.close()
        server.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@pytest.mark.parametrize("backend", ["python", "native"])
def test_batch_socket(benchmark, backend):
    be = load(backend)
    a, b = be.BatchSocket(HOST, 0), be.BatchSocket(HOST, 0)
    out = [(PAYLOAD, b.getsockname())] * BURST

    def take(sock) -> list[tuple[bytes, tuple[str, int]]]:
        got: list[tuple[bytes, tuple[str, int]]] = []
        while len(got) < BURST:
            batch = sock.recv_batch(BURST - len(got), 2.0)
            assert batch, "burst lost"
            got.extend(batch)
        return got

    def echo() -> int:
        a.send_batch(out)
        got = take(b)
        b.send_batch(got)
        return len(got) + len(take(a))

    try:
        run(benchmark, f"{backend} batch", echo)
    finally:
        a.close()
        b.close()
