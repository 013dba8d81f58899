"""The reuseport steering program over real UDP sockets on loopback: N sockets share a port,
the kernel runs the program on every datagram, and each must land on the socket of the worker
its SPIs name (initiator SPI for IKE_SA_INIT, responder SPI afterwards, ESP SPI on 4500)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ikecp.net.reuseport import attach as attach_program
from ikecp.net.reuseport import open_groups, steering_program, tag_spi, worker_for

WORKERS = 4


def ike(spi_i: bytes, spi_r: bytes, body: bytes = b"\0" * 8, flags: int = 0x08) -> bytes:
    """An IKE header (exchange and lengths do not matter to the program) plus a body;
    ``flags`` 0x08: sent by the SA's original initiator."""
    return spi_i + spi_r + struct.pack("!BBBBII", 33, 0x20, 34, flags, 0, 28 + len(body)) + body


@contextlib.contextmanager
def group(n: int, *, natt: bool) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", socks[0].getsockname()[1] if i else 0))
            s.setblocking(False)
            socks.append(s)
        attach_program(socks[0], steering_program(n, natt=natt))
        yield socks
    finally:
        for s in socks:
            s.close()


def deliver(socks: list[socket.socket], sender: socket.socket, data: bytes) -> int:
    """Send ``data`` to the group; the index of the one socket that received it."""
    sender.sendto(data, socks[0].getsockname())
    ready, _, _ = select.select(socks, [], [], 5.0)
    assert len(ready) == 1, f"{len(ready)} sockets ready"
    got, _ = ready[0].recvfrom(65535)
    assert got == data
    return socks.index(ready[0])


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s


@pytest.mark.parametrize("natt", [False, True])
def test_ike_goes_by_responder_spi_else_initiator_spi(natt: bool,
                                                      sender: socket.socket) -> None:
    marker = b"\0\0\0\0" if natt else b""
    with group(WORKERS, natt=natt) as socks:
        for owner in range(WORKERS):
            spi_i = tag_spi(os.urandom(8), (owner + 1) % WORKERS)  # never the owner's index
            spi_r = tag_spi(os.urandom(8), owner)
            assert deliver(socks, sender, marker + ike(spi_i, spi_r)) == owner
            init = tag_spi(os.urandom(8), owner)
            # IKE_SA_INIT request: SPIr zero, so the initiator SPI's byte decides
            assert deliver(socks, sender, marker + ike(init, bytes(8))) == owner
            # only the low half of SPIr nonzero: still the responder SPI's first byte (zero)
            low = bytes(4) + b"\1\2\3\4"
            assert deliver(socks, sender, marker + ike(init, low)) == 0


def test_esp_on_natt_port_goes_by_spi(sender: socket.socket) -> None:
    with group(WORKERS, natt=True) as socks:
        for owner in range(WORKERS):
            spi = tag_spi(os.urandom(4), owner)
            if spi == bytes(4):  # a zero SPI would read as the non-ESP marker
                spi = bytes([owner, 0, 0, 1])
            assert deliver(socks, sender, spi + struct.pack("!I", 7) + os.urandom(40)) == owner


def test_worker_index_wraps_modulo_the_group(sender: socket.socket) -> None:
    with group(3, natt=False) as socks:
        assert deliver(socks, sender, ike(os.urandom(8), tag_spi(os.urandom(8), 7))) == 7 % 3


@pytest.mark.parametrize("natt", [False, True])
def test_short_datagrams_fall_back_to_the_hash(natt: bool, sender: socket.socket) -> None:
    """Keepalives and truncated headers still reach exactly one socket (the kernel's hash)."""
    with group(WORKERS, natt=natt) as socks:
        short = (b"\xff", b"\0\0\0\0" + b"\5" * 27, b"\5" * 7) if natt \
            else (b"\xff", b"\5" * 27)
        for data in short:
            deliver(socks, sender, data)
            assert worker_for(data, WORKERS, natt=natt) is None


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=64), natt=st.booleans())
def test_kernel_agrees_with_python_twin(data: bytes, natt: bool) -> None:
    """For any datagram the program steers, the kernel picks what ``worker_for`` says."""
    want = worker_for(data, WORKERS, natt=natt)
    if want is None or not data:
        return
    with group(WORKERS, natt=natt) as socks, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        assert deliver(socks, s, data) == want


def test_bad_worker_counts_are_refused() -> None:
    for n in (0, 257):
        with pytest.raises(ValueError):
            steering_program(n, natt=False)
    with pytest.raises(ValueError):
        tag_spi(bytes(8), 256)


@pytest.mark.parametrize("natt", [False, True])
def test_from_the_original_responder_goes_by_initiator_spi(natt: bool,
                                                           sender: socket.socket) -> None:
    """An IKE SA the SeGW started by rekeying carries the SeGW's SPI as SPIi: the peer's
    requests and responses (I flag clear) must go by it, whatever the peer's SPIr says."""
    marker = b"\0\0\0\0" if natt else b""
    with group(WORKERS, natt=natt) as socks:
        for owner in range(WORKERS):
            ours = tag_spi(os.urandom(8), owner)
            theirs = tag_spi(os.urandom(8), (owner + 1) % WORKERS)
            for flags in (0x00, 0x20):  # request, response
                data = marker + ike(ours, theirs, flags=flags)
                assert worker_for(data, WORKERS, natt=natt) == owner
                assert deliver(socks, sender, data) == owner


def test_open_groups_steers_and_refuses_a_port_in_use(sender: socket.socket) -> None:
    groups, ports = open_groups(["127.0.0.1"], (0, 0), 3)
    try:
        assert len(ports) == 2 and ports[0] != ports[1]
        for natt, port in ((False, ports[0]), (True, ports[1])):
            socks = groups[("127.0.0.1", port)]
            assert len(socks) == 3
            for s in socks:
                s.setblocking(False)
            marker = b"\0\0\0\0" if natt else b""
            for owner in range(3):
                data = marker + ike(os.urandom(8), tag_spi(os.urandom(8), owner))
                assert deliver(socks, sender, data) == owner
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{ports[0]}"):
            open_groups(["127.0.0.1"], (ports[0], 0), 2)
    finally:
        for socks in groups.values():
            for s in socks:
                s.close()
