"""Pure-Python twin of the native ``Dataplane``: ESP in UDP between a TUN device and one UDP
socket, in two threads, with the same methods, counters, events and rules as the Rust
``crate::dataplane`` + ``crate::esp`` (RFC 4303, RFC 3948). Slow (the GIL, one packet at a
time); it exists so the native one has an oracle and ``IKECP_BACKEND=python`` still runs.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..addr import Address
from ..errors import IntegrityError, ParseError
from .esp import EspTransform, ReplayWindow

_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_BATCH = 64
_QUEUE = 4096
_IDLE = 0.1
_SEQ_SOFT_MARGIN = 1 << 20
_COUNTERS = ("packets_in", "bytes_in", "packets_out", "bytes_out", "replay_drops",
             "icv_failures", "invalid", "dummies", "selector_drops", "expired_drops")
Selector = tuple[int, int, int, str, str]
_Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def _flow(packet: bytes) -> tuple[_Ip, _Ip, int, int | None, int | None] | None:
    """(src, dst, protocol, source port, destination port) of an IPv4/IPv6 packet."""
    if not packet:
        return None
    version = packet[0] >> 4
    src: _Ip
    dst: _Ip
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            return None
        proto = packet[9]
        src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
        frag = struct.unpack(">H", packet[6:8])[0] & 0x1FFF
        l4 = packet[ihl:] if frag == 0 else b""
    elif version == 6:
        if len(packet) < 40:
            return None
        proto = packet[6]
        src, dst = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
        l4 = packet[40:]
    else:
        return None
    sport = dport = None
    if proto in (6, 17, 132, 136) and len(l4) >= 4:
        sport, dport = struct.unpack(">HH", l4[:4])
    elif proto in (1, 58) and len(l4) >= 2:
        sport = dport = struct.unpack(">H", l4[:2])[0]
    return src, dst, proto, sport, dport


def _match(sel: Selector, addr: _Ip, proto: int, port: int | None) -> bool:
    p, start_port, end_port, start, end = sel
    if p and p != proto:
        return False
    lo, hi = ipaddress.ip_address(start), ipaddress.ip_address(end)
    if lo.version != addr.version or not lo <= addr <= hi:  # type: ignore[operator]
        return False
    return (start_port, end_port) == (0, 65535) or (
        port is not None and start_port <= port <= end_port)


@dataclass
class _Child:
    spi_in: int
    spi_out: int
    inbound: EspTransform
    outbound: EspTransform
    esn: bool
    window: ReplayWindow
    local: list[Selector]
    remote: list[Selector]
    peer: Address
    limits: tuple[int, int, int, int]  # soft bytes, hard bytes, soft packets, hard packets
    seq: int = 0
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    rekey_asked: bool = False
    expired: bool = False

    def outbound_ok(self, f: tuple) -> bool:
        return any(_match(s, f[0], f[2], f[3]) for s in self.local) and \
            any(_match(s, f[1], f[2], f[4]) for s in self.remote)

    def inbound_ok(self, f: tuple) -> bool:
        return any(_match(s, f[0], f[2], f[3]) for s in self.remote) and \
            any(_match(s, f[1], f[2], f[4]) for s in self.local)


class Dataplane:
    """Same API as ``ikecp._native.Dataplane`` (see its stub)."""

    MAX_BATCH = _BATCH

    def __init__(self, host: str, port: int, tun_name: str = "") -> None:
        import fcntl  # Linux (and POSIX) only, like the native class

        self._tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            req = struct.pack("16sH22x", tun_name.encode(), _IFF_TUN | _IFF_NO_PI)
            out = fcntl.ioctl(self._tun, _TUNSETIFF, req)
            self.tun_name = out[:16].rstrip(b"\0").decode()
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._sock.bind((host, port))
            self._sock.setblocking(False)
        except BaseException:
            os.close(self._tun)
            raise
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._control: deque[tuple[bytes, Address]] = deque()
        self._events: deque[tuple[object, ...]] = deque()
        self._by_spi: dict[int, _Child] = {}
        self._outbound: list[_Child] = []
        self._stats = dict.fromkeys(("no_sa_in", "no_sa_out", "control_in", "control_dropped",
                                     "tun_write_errors", "send_errors", "events_dropped"), 0)
        self._stop = False
        self._threads = [threading.Thread(target=f, daemon=True, name=n)
                         for f, n in ((self._net_to_tun, "esp-rx"), (self._tun_to_net, "esp-tx"))]
        for t in self._threads:
            t.start()

    # --- mailbox ----------------------------------------------------------------------------

    def _signal(self, was_empty: bool) -> None:
        if was_empty:
            os.eventfd_write(self._wake, 1)

    def _unsignal(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)

    def _push(self, queue: deque, item: object, dropped: str) -> None:
        with self._lock:
            if len(queue) >= _QUEUE:
                self._stats[dropped] += 1
                return
            was_empty = not self._control and not self._events
            queue.append(item)
            if queue is self._control:
                self._stats["control_in"] += 1
            self._signal(was_empty)

    # --- packet threads ---------------------------------------------------------------------

    def _net_to_tun(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self._sock], [], [], _IDLE)
            if not ready:
                continue
            for _ in range(_BATCH):
                try:
                    data, src = self._sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                src = (src[0], src[1])
                if len(data) < 8 or data[:4] == bytes(4):
                    self._push(self._control, (data, src), "control_dropped")
                    continue
                self._receive_esp(data, src)

    def _receive_esp(self, data: bytes, src: Address) -> None:
        spi, seq_lo = struct.unpack(">II", data[:8])
        with self._lock:
            sa = self._by_spi.get(spi)
            if sa is None:
                self._stats["no_sa_in"] += 1
                return
        c = sa.counters
        seq = sa.window.check(seq_lo)
        if seq is None:
            c["replay_drops"] += 1
            return
        try:
            nh, inner = sa.inbound.open(data, seq_hi=(seq >> 32) if sa.esn else None)
        except IntegrityError:
            c["icv_failures"] += 1
            return
        except ParseError:
            c["invalid"] += 1
            return
        newest = seq > sa.window.top
        if not sa.window.accept(seq):
            c["replay_drops"] += 1
            return
        if nh == 59:
            c["dummies"] += 1
            return
        f = _flow(inner) if nh in (4, 41) else None
        if f is None:
            c["invalid"] += 1
            return
        if not sa.inbound_ok(f):
            c["selector_drops"] += 1
            return
        c["packets_in"] += 1
        c["bytes_in"] += len(inner)
        if newest and src != sa.peer:
            old, sa.peer = sa.peer, src
            self._push(self._events, ("peer_moved", sa.spi_in, old, src), "events_dropped")
        try:
            os.write(self._tun, inner)
        except OSError:
            self._stats["tun_write_errors"] += 1

    def _tun_to_net(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self._tun], [], [], _IDLE)
            if not ready:
                continue
            for _ in range(_BATCH):
                try:
                    packet = os.read(self._tun, 65535)
                except (BlockingIOError, InterruptedError):
                    break
                out = self._seal(packet)
                if out is None:
                    continue
                try:
                    self._sock.sendto(*out)
                except OSError:
                    self._stats["send_errors"] += 1

    def _route(self, f: tuple) -> _Child | None:
        with self._lock:
            for sa in reversed(self._outbound):
                if sa.outbound_ok(f):
                    return sa
        return None

    def _seal(self, packet: bytes) -> tuple[bytes, Address] | None:
        f = _flow(packet)
        sa = self._route(f) if f is not None else None
        if sa is None:
            self._stats["no_sa_out"] += 1
            return None
        c = sa.counters
        if sa.expired:
            c["expired_drops"] += 1
            return None
        top = (1 << 64) - 1 if sa.esn else (1 << 32) - 1
        if sa.seq >= top:
            sa.expired = True
            c["expired_drops"] += 1
            return None
        sa.seq += 1
        nh = 4 if f[0].version == 4 else 41  # type: ignore[index]
        wire = sa.outbound.seal(sa.spi_out, sa.seq, nh, packet, esn=sa.esn)
        c["packets_out"] += 1
        c["bytes_out"] += len(packet)
        self._limit_event(sa, sa.seq, c["bytes_out"], top)
        return wire, sa.peer

    def _limit_event(self, sa: _Child, seq: int, nbytes: int, top: int) -> None:
        soft_b, hard_b, soft_p, hard_p = sa.limits
        hard = "packets" if hard_p and seq >= hard_p else \
            "bytes" if hard_b and nbytes >= hard_b else None
        if hard is not None:
            if not sa.expired:
                sa.expired = True
                self._push(self._events, ("expired", sa.spi_in, hard), "events_dropped")
            return
        soft = "sequence" if seq >= top - _SEQ_SOFT_MARGIN else \
            "packets" if soft_p and seq >= soft_p else \
            "bytes" if soft_b and nbytes >= soft_b else None
        if soft is not None and not sa.rekey_asked:
            sa.rekey_asked = True
            self._push(self._events, ("rekey", sa.spi_in, soft), "events_dropped")

    # --- the control plane's side -----------------------------------------------------------

    def _open(self) -> None:
        if self._stop:
            raise OSError(errno.EBADF, "Dataplane is closed")

    def fileno(self) -> int:
        return -1 if self._stop else self._wake

    def getsockname(self) -> tuple[str, int]:
        self._open()
        host, port = self._sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        if self._stop:
            return
        self._stop = True
        for t in self._threads:
            t.join()
        self._sock.close()
        os.close(self._tun)
        os.close(self._wake)

    def recv_batch(self, max_datagrams: int, timeout: float | None = None
                   ) -> list[tuple[bytes, tuple[str, int]]]:
        if not 1 <= max_datagrams <= _BATCH:
            raise ValueError(f"max_datagrams must be in 1..={_BATCH}")
        self._open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                got = [self._control.popleft()
                       for _ in range(min(max_datagrams, len(self._control)))]
                if not self._control and not self._events:
                    self._unsignal()
            if got:
                return got
            left = _IDLE if deadline is None else min(_IDLE, deadline - time.monotonic())
            if left <= 0:
                return []
            select.select([self._wake], [], [], left)

    def send_batch(self, datagrams: Iterable[tuple[bytes, tuple[str, int]]]) -> int:
        self._open()
        sent = 0
        for data, addr in datagrams:
            try:
                self._sock.sendto(data, addr)
            except OSError:
                if sent == 0:
                    raise
                break
            sent += 1
        return sent

    def install(self, spi_in: int, spi_out: int, encr_id: int, integ_id: int,
                key_in: tuple[bytes, bytes], key_out: tuple[bytes, bytes], esn: bool,
                local_ts: Iterable[Selector], remote_ts: Iterable[Selector],
                peer: tuple[str, int], *, replay_window: int = 1024, soft_bytes: int = 0,
                hard_bytes: int = 0, soft_packets: int = 0, hard_packets: int = 0,
                replaces: int | None = None) -> None:
        self._open()
        sa = _Child(spi_in, spi_out, EspTransform(encr_id, key_in[0], integ_id, key_in[1]),
                    EspTransform(encr_id, key_out[0], integ_id, key_out[1]), bool(esn),
                    ReplayWindow(min(max(replay_window, 64), 1 << 16), bool(esn)),
                    [tuple(s) for s in local_ts], [tuple(s) for s in remote_ts],  # type: ignore[misc]
                    (peer[0], peer[1]), (soft_bytes, hard_bytes, soft_packets, hard_packets))
        with self._lock:
            if replaces is not None and replaces not in self._by_spi:
                raise KeyError(replaces)
            if spi_in in self._by_spi:
                raise ValueError(f"inbound SPI {spi_in:#010x} is already installed")
            self._by_spi[spi_in] = sa
            self._outbound.append(sa)
            if replaces is not None:
                self._outbound = [s for s in self._outbound if s.spi_in != replaces]

    def remove(self, spi_in: int) -> bool:
        self._open()
        with self._lock:
            sa = self._by_spi.pop(spi_in, None)
            self._outbound = [s for s in self._outbound if s.spi_in != spi_in]
        return sa is not None

    def set_peer(self, spi_in: int, peer: tuple[str, int]) -> bool:
        self._open()
        with self._lock:
            sa = self._by_spi.get(spi_in)
            if sa is not None:
                sa.peer = (peer[0], peer[1])
        return sa is not None

    def counters(self, spi_in: int) -> dict[str, object] | None:
        self._open()
        with self._lock:
            sa = self._by_spi.get(spi_in)
            if sa is None:
                return None
            return {**sa.counters, "peer": sa.peer}

    def stats(self) -> dict[str, int]:
        self._open()
        with self._lock:
            return {**self._stats, "sas": len(self._by_spi)}

    def events(self) -> list[tuple[object, ...]]:
        self._open()
        with self._lock:
            out = list(self._events)
            self._events.clear()
            if not self._control:
                self._unsignal()
        return out
