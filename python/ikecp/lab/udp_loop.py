"""A minimal blocking UDP loop that drives sans-IO ``IkeSa`` objects, for interop tests.

Not the library's transport (that is ``ikecp.net``): just enough to put the engine on real
sockets inside a network namespace so a third-party peer can talk to it. One thread owns the
sockets and every SA; the test talks to it through ``call`` (run a function on the loop
thread) and reads what happened from ``events``. Port 500 carries bare IKE messages, the
NAT-T port carries the non-ESP marker (stripped here, as ``Datagram`` expects); keepalives and
ESP are counted and otherwise ignored. Everything is bounded by timeouts.
"""

from __future__ import annotations

import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .. import framing
from ..engine import IkeSa, Settings
from ..events import Event

_T = TypeVar("_T")
#: IKE header: SPIi(8) SPIr(8) next(1) version(1) exchange(1) flags(1) msg id(4) length(4).
_HEADER = struct.Struct("!8s8sBBBBII")
_IKE_SA_INIT = 34
_FLAG_RESPONSE = 0x20


class UdpIkeLoop:
    """Owns ``sockets`` (local port -> bound UDP socket) and the SAs that use them.

    As a responder (``responder`` settings given) a new IKE_SA_INIT request creates a
    responder SA; later datagrams find their SA by initiator SPI.
    """

    def __init__(self, sockets: dict[int, socket.socket], local_ip: str, *,
                 natt_port: int = 4500, responder: Settings | None = None) -> None:
        self.sockets = sockets
        self.local_ip = local_ip
        self.natt_port = natt_port
        self.responder = responder
        self.sas: dict[bytes, IkeSa] = {}
        self.events: list[tuple[IkeSa, Event]] = []
        #: Every datagram (direction, local port, peer address, bytes as on the wire).
        self.trace: list[tuple[str, int, tuple[str, int], bytes]] = []
        self.ignored = {"keepalive": 0, "esp": 0, "invalid": 0}
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = \
            queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    # -- control from the test thread ------------------------------------------------------

    def start(self) -> UdpIkeLoop:
        self._thread = threading.Thread(target=self._run, name="udp-ike-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for s in self.sockets.values():
            s.close()
        if self._error is not None:
            raise RuntimeError("UDP IKE loop failed") from self._error

    def __enter__(self) -> UdpIkeLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], _T], timeout: float = 5.0) -> _T:
        """Run ``fn`` on the loop thread (the only thread that may touch an SA)."""
        fut: Future[_T] = Future()
        self._calls.put((fn, fut))
        return fut.result(timeout)

    def initiate(self, settings: Settings, remote: tuple[str, int],
                 local_port: int = 500) -> IkeSa:
        """Start an initiator SA from our ``local_port`` towards ``remote``."""
        def start() -> IkeSa:
            sa = IkeSa.initiator(settings, (self.local_ip, local_port), remote)
            self.sas[sa.spi_i] = sa
            return sa
        return self.call(start)

    def snapshot(self) -> list[tuple[IkeSa, Event]]:
        with self._lock:
            return list(self.events)

    def wait_for(self, predicate: Callable[[list[tuple[IkeSa, Event]]], _T | None],
                 timeout: float = 10.0) -> _T:
        """Poll ``predicate(events)`` until it returns something other than None/False."""
        deadline = time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise RuntimeError("UDP IKE loop failed") from self._error
            got = predicate(self.snapshot())
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met in {timeout} s; events: "
                                   f"{[type(e).__name__ for _, e in self.snapshot()]}")
            time.sleep(0.02)

    def events_of(self, cls: type[_T]) -> list[_T]:
        return [e for _, e in self.snapshot() if isinstance(e, cls)]

    # -- the loop --------------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except BaseException as exc:  # surfaced by stop()/wait_for in the test thread
            self._error = exc

    def _step(self) -> None:
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                break
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)
        self._flush()
        now = self._now()
        timers = [t for sa in self.sas.values() if (t := sa.next_timer()) is not None]
        wait = 0.05 if not timers else max(0.0, min(0.05, min(timers) - now))
        readable, _, _ = select.select(list(self.sockets.values()), [], [], wait)
        for sock in readable:
            port = sock.getsockname()[1]
            data, addr = sock.recvfrom(65535)
            self.trace.append(("in", port, addr[:2], data))
            self._receive(port, data, (addr[0], addr[1]))
        now = self._now()
        for sa in list(self.sas.values()):
            t = sa.next_timer()
            if t is not None and t <= now:
                sa.handle_timer(now)
        self._flush()

    def _receive(self, port: int, data: bytes, addr: tuple[str, int]) -> None:
        if port == self.natt_port:
            kind, data = framing.classify(data)
            if kind is not framing.Kind.IKE:
                self.ignored[kind.value] += 1
                return
        try:
            spi_i, _, _, _, exchange, flags, _, _ = _HEADER.unpack_from(data)
        except struct.error:
            self.ignored["invalid"] += 1
            return
        sa = self.sas.get(spi_i)
        if sa is None:
            if (self.responder is None or exchange != _IKE_SA_INIT
                    or flags & _FLAG_RESPONSE):
                self.ignored["invalid"] += 1
                return
            sa = IkeSa.responder(self.responder, (self.local_ip, port))
            self.sas[spi_i] = sa
        sa.receive_datagram(data, addr, self._now(), local_port=port)

    def _flush(self) -> None:
        now = self._now()
        for sa in list(self.sas.values()):
            for d in sa.datagrams_to_send(now):
                wire = d.wire()
                self.trace.append(("out", d.local_port, d.remote, wire))
                self.sockets[d.local_port].sendto(wire, d.remote)
            while (ev := sa.next_event()) is not None:
                with self._lock:
                    self.events.append((sa, ev))


def bind_sockets(ip: str, ports: tuple[int, ...] = (500, 4500),
                 factory: Callable[[], socket.socket] | None = None) -> dict[int, socket.socket]:
    """UDP sockets bound to ``ip`` on each port; ``factory`` makes them (e.g. in a netns)."""
    out = {}
    for port in ports:
        s = factory() if factory is not None else socket.socket(socket.AF_INET,
                                                               socket.SOCK_DGRAM)
        s.bind((ip, port))
        out[port] = s
    return out


__all__ = ["UdpIkeLoop", "bind_sockets"]
