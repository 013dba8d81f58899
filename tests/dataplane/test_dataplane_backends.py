"""The ``Dataplane`` (native, and its pure-Python twin) on a real TUN device and UDP socket
in a namespace: ESP out for packets routed into the TUN device, ESP in delivered to a local
socket, replay and forgery refused, make-before-break replace, remove, the control-datagram
split and the rebinding event. The peer's side is the pure-Python ``EspTransform``, so every
byte on the wire is checked by the other implementation."""

from __future__ import annotations

import select
import socket
import struct
import time

import pytest
from ikecp import _reference
from ikecp._backend import load
from ikecp.lab import netns
from ikecp.testing.facility import require

pytestmark = pytest.mark.netns

SEGW = netns.SEGW_ADDR
FAP_INNER = "100.100.0.2"
KEY_IN, KEY_OUT = bytes(range(36)), bytes(range(100, 136))  # AES-256-GCM keys with salt
LOCAL_TS = [(0, 0, 65535, "198.51.100.0", "198.51.100.255")]
REMOTE_TS = [(0, 0, 65535, FAP_INNER, FAP_INNER)]


def inner_udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    """An IPv4/UDP packet (UDP checksum 0: allowed over IPv4)."""
    total = 28 + len(data)
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 17, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack(">10H", head))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    head = head[:10] + struct.pack(">H", ~s & 0xFFFF) + head[12:]
    return head + struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data


def recv(sock: socket.socket, timeout: float = 3.0) -> bytes | None:
    ready, _, _ = select.select([sock], [], [], timeout)
    return sock.recv(65535) if ready else None


@pytest.mark.parametrize("backend", ["native", "python"])
def test_dataplane_in_out_replay_replace_remove_and_control(topo, backend) -> None:
    """The same script for the Rust data plane and its pure-Python twin."""
    impl = load(backend)
    require(None if hasattr(impl, "Dataplane") else "the data plane is Linux-only")
    dp = topo.call("segw", impl.Dataplane, SEGW, 4500, "dpt0")
    try:
        topo.run_cmd("segw", ["ip", "link", "set", "dpt0", "up"])
        topo.run_cmd("segw", ["ip", "route", "add", f"{FAP_INNER}/32", "dev", "dpt0"])
        peer = topo.socket("segw")
        peer.bind((SEGW, 5000))
        app = topo.socket("segw")
        app.bind((SEGW, 6000))
        seal = _reference.EspTransform(20, KEY_IN, 0, b"")   # what the peer sends with
        opener = _reference.EspTransform(20, KEY_OUT, 0, b"")  # what the peer receives with

        def install(spi_in: int, spi_out: int, replaces: int | None = None) -> None:
            dp.install(spi_in, spi_out, 20, 0, (KEY_IN, b""), (KEY_OUT, b""), False,
                       LOCAL_TS, REMOTE_TS, (SEGW, 5000), replaces=replaces)

        def outbound() -> tuple[int, int, bytes]:
            """Send a packet into the TUN device; return (SPI, seq, inner) the peer got."""
            src = topo.socket("segw")
            src.sendto(b"down", (FAP_INNER, 7000))
            src.close()
            wire = recv(peer)
            assert wire is not None, dp.stats()
            spi, seq = struct.unpack(">II", wire[:8])
            nh, inner = opener.open(wire)
            assert nh == 4 and inner[16:20] == socket.inet_aton(FAP_INNER)
            return spi, seq, inner

        def inbound(spi: int, seq: int, data: bytes, port: int = 5000) -> bytes | None:
            packet = inner_udp(FAP_INNER, SEGW, 7000, 6000, data)
            s = peer if port == 5000 else topo.socket("segw")
            if port != 5000:
                s.bind((SEGW, port))
            s.sendto(seal.seal(spi, seq, 4, packet), (SEGW, 4500))
            return recv(app, 1.5)

        install(0x1000, 0x2000)
        assert outbound()[:2] == (0x2000, 1)
        assert inbound(0x1000, 1, b"up-1") == b"up-1"
        assert inbound(0x1000, 1, b"replayed") is None
        c = dp.counters(0x1000)
        assert c["replay_drops"] == 1 and c["packets_in"] == 1 and c["packets_out"] == 1
        # A forged packet (wrong key) is an ICV failure and reaches nobody.
        forged = _reference.EspTransform(20, bytes(36), 0, b"").seal(
            0x1000, 2, 4, inner_udp(FAP_INNER, SEGW, 7000, 6000, b"forged"))
        peer.sendto(forged, (SEGW, 4500))
        assert recv(app, 1.0) is None
        assert dp.counters(0x1000)["icv_failures"] == 1

        # Make-before-break: the new SA sends at once, the old one still receives.
        install(0x1001, 0x2001, replaces=0x1000)
        assert outbound()[:2] == (0x2001, 1)
        assert inbound(0x1000, 2, b"old-sa") == b"old-sa"
        assert inbound(0x1001, 1, b"new-sa") == b"new-sa"
        assert dp.remove(0x1000) is True
        assert inbound(0x1000, 3, b"gone") is None
        assert dp.stats()["no_sa_in"] >= 1

        # Not ESP: handed to the control plane untouched (IKE behind the marker, keepalive).
        peer.sendto(b"\x00\x00\x00\x00ike message", (SEGW, 4500))
        peer.sendto(b"\xff", (SEGW, 4500))
        got: list = []
        deadline = time.monotonic() + 3
        while len(got) < 2 and time.monotonic() < deadline:
            got += dp.recv_batch(64, 0.5)
        assert got == [(b"\x00\x00\x00\x00ike message", (SEGW, 5000)), (b"\xff", (SEGW, 5000))]

        # An authentic packet from a new port moves the SA and says so.
        assert inbound(0x1001, 2, b"moved", port=5001) == b"moved"
        events = dp.events()
        assert ("peer_moved", 0x1001, (SEGW, 5000), (SEGW, 5001)) in events
        assert dp.counters(0x1001)["peer"] == (SEGW, 5001)
    finally:
        dp.close()
    with pytest.raises(OSError):
        dp.stats()

