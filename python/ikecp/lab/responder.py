"""An ikecp responder on real UDP sockets for tests and benchmarks: ``ikecp.roles.dispatch``'s
``Dispatcher`` of responder SAs behind an IKE and a NAT-T socket, in one blocking loop.

Not the SeGW (that is ``ikecp.roles.gateway``): no bindings registry, no configuration file, just
enough to answer a load generator. Runs in a thread (``serve_in_thread``) or in a forked
process (``serve_in_process``) whose CPU time the benchmark reads from /proc/<pid>/stat.
Always bounded by ``lifetime`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..engine import Settings
from ..events import ChildSaEstablished, IkeSaEstablished, PeerBinding, SaFailed
from ..roles.dispatch import Dispatcher


@dataclass(frozen=True)
class ResponderCounters:
    established: int = 0
    children: int = 0
    bindings: int = 0
    failed: int = 0


#: Event types the loop counts (one dict lookup per event instead of an isinstance chain).
_COUNTED = (IkeSaEstablished, ChildSaEstablished, PeerBinding, SaFailed)


class SocketResponder:
    """Binds ``host`` on ``port`` and ``natt_port`` (0: any free port; the SA settings are
    rewritten to the bound ports, which the engine floats to)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 natt_port: int = 0, *, lifetime: float = 300.0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socks: dict[int, socket.socket] = {}
        for want in (port, natt_port):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((host, want))
            sock.setblocking(False)
            self.socks[sock.getsockname()[1]] = sock
        self.port, self.natt_port = list(self.socks)
        self.settings = dataclasses.replace(settings, natt_port=self.natt_port)
        # A measuring harness: the DoS limits are lifted (load comes from one address).
        self.dispatcher = Dispatcher(self.settings, host, port=self.port,
                                     natt_ports={self.natt_port}, max_half_open_ip=10_000,
                                     cookie_threshold=None, cookie_threshold_ip=None)
        self.lifetime = lifetime
        self._counts: dict[type, int] = dict.fromkeys(_COUNTED, 0)
        self._stop = threading.Event()

    @property
    def counters(self) -> ResponderCounters:
        return ResponderCounters(*(self._counts[kind] for kind in _COUNTED))

    def stop(self) -> None:
        self._stop.set()

    def serve(self) -> None:
        """Answer until ``stop()`` or the lifetime runs out."""
        d = self.dispatcher
        sel = selectors.DefaultSelector()
        for port, sock in self.socks.items():
            sel.register(sock, selectors.EVENT_READ, port)
        end = time.monotonic() + self.lifetime
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= end:
                    break
                timer = d.next_timer()
                wait = 0.05 if timer is None else min(0.05, max(0.0, timer - now))
                for key, _ in sel.select(wait):
                    port = key.data
                    sock = self.socks[port]
                    for _ in range(64):
                        try:
                            data, addr = sock.recvfrom(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            continue
                        d.receive(data, port, (addr[0], addr[1]), now)
                        self._flush()
                now = time.monotonic()
                timer = d.next_timer()
                if timer is not None and timer <= now:
                    d.handle_timer(now)
                    self._flush()
        finally:
            sel.close()
            for sock in self.socks.values():
                sock.close()

    def _flush(self) -> None:
        d, counts = self.dispatcher, self._counts
        for dg in d.datagrams_to_send():
            with contextlib.suppress(OSError):
                self.socks[dg.local_port].sendto(dg.wire(), dg.remote)
        for _, ev in d.events():
            kind = type(ev)
            if kind in counts:
                counts[kind] += 1


@contextlib.contextmanager
def serve_in_thread(settings: Settings, host: str = "127.0.0.1", *,
                    lifetime: float = 120.0) -> Iterator[SocketResponder]:
    r = SocketResponder(settings, host, lifetime=lifetime)
    t = threading.Thread(target=r.serve, name="ikecp-responder", daemon=True)
    t.start()
    try:
        yield r
    finally:
        r.stop()
        t.join(5)


@dataclass(frozen=True)
class ResponderProcess:
    pid: int
    host: str
    port: int
    natt_port: int

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


def _child(settings: Settings, host: str, ports: tuple[int, int], lifetime: float,
           conn: object) -> None:
    r = SocketResponder(settings, host, *ports, lifetime=lifetime)
    conn.send((r.port, r.natt_port))  # type: ignore[attr-defined]
    r.serve()


@contextlib.contextmanager
def serve_in_process(settings: Settings, host: str = "127.0.0.1", *, port: int = 0,
                     natt_port: int = 0, netns: str | None = None,
                     lifetime: float = 300.0) -> Iterator[ResponderProcess]:
    """A forked responder process (its CPU is its own), killed on exit. With ``netns`` it is
    forked from a thread inside that network namespace, so it lives there."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child, args=(settings, host, (port, natt_port), lifetime, child),
                    daemon=True)
    if netns is None:
        p.start()
    else:
        from .netns import call_in_netns
        call_in_netns(netns, p.start)
    try:
        if not parent.poll(10):
            raise RuntimeError("responder process did not start")
        port, natt_port = parent.recv()
        yield ResponderProcess(p.pid or 0, host, port, natt_port)  # type: ignore[arg-type]
    finally:
        p.terminate()
        p.join(5)
