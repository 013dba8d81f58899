"""ikecp on real UDP sockets for tests, interop runs and benchmarks: a ``Dispatcher`` on a
``DispatchDriver``, run blocking on its ``IoCore`` in a thread or a forked process.

Not the SeGW (that is ``ikecp.roles.gateway``): no bindings registry, no configuration file.
``SocketResponder`` answers a load generator and only counts what happened (cheap enough to
measure the bare dispatcher's CPU: ``serve_in_process``, whose CPU time a benchmark reads
from /proc/<pid>/stat). ``UdpIkeLoop`` puts ikecp on sockets someone else bound (inside a
network namespace) as initiator and/or responder, records every event and datagram, and lets
a test act on its SAs from another thread (``call``). Always bounded by ``lifetime`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engine import IkeSa, Settings
from ..events import ChildSaEstablished, Event, IkeSaEstablished, PeerBinding, SaFailed
from ..net.udp import DispatchDriver, Sock, UdpEndpoint
from ..roles.dispatch import Dispatcher

_T = TypeVar("_T")


@dataclass(frozen=True)
class ResponderCounters:
    established: int = 0
    children: int = 0
    bindings: int = 0
    failed: int = 0


#: Event types the loop counts (one dict lookup per event instead of an isinstance chain).
_COUNTED = (IkeSaEstablished, ChildSaEstablished, PeerBinding, SaFailed)


class LabEndpoint:
    """A ``Dispatcher`` (``responder`` settings: it accepts IKE_SA_INIT; None: it does not)
    on ``endpoint``'s sockets, the first of which is its IKE port. A measuring harness: the
    DoS limits are lifted (load comes from one address)."""

    def __init__(self, responder: Settings | None, endpoint: UdpEndpoint, *,
                 natt_port: int, lifetime: float) -> None:
        local_ip = endpoint.hosts[0]
        self.dispatcher = Dispatcher(responder, local_ip, port=endpoint.ports[0],
                                     natt_ports={natt_port}, max_half_open_ip=10_000,
                                     cookie_threshold=None, cookie_threshold_ip=None)
        self.driver = DispatchDriver(self.dispatcher, endpoint, self._on_events)
        self.local_ip = local_ip
        self.lifetime = lifetime
        self._counts: dict[type, int] = dict.fromkeys(_COUNTED, 0)
        self._stop = threading.Event()

    @property
    def counters(self) -> ResponderCounters:
        return ResponderCounters(*(self._counts[kind] for kind in _COUNTED))

    def _on_events(self, events: list[tuple[IkeSa, Event]]) -> None:
        counts = self._counts
        for _, ev in events:
            kind = type(ev)
            if kind in counts:
                counts[kind] += 1

    def _until(self) -> bool:
        return self._stop.is_set()

    def serve(self) -> None:
        """Serve until ``stop()`` or the lifetime runs out; then close the sockets."""
        core = self.driver.core
        try:
            core.run_until(self._until, core.clock() + self.lifetime)
        finally:
            self.driver.close()

    def stop(self) -> None:
        self._stop.set()


class SocketResponder(LabEndpoint):
    """Binds ``host`` on ``port`` and ``natt_port`` (0: any free port; the SA settings are
    rewritten to the bound ports, which the engine floats to), batched like the SeGW."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 natt_port: int = 0, *, lifetime: float = 300.0) -> None:
        endpoint = UdpEndpoint(host, (port, natt_port), batch=True)
        self.port, self.natt_port = endpoint.ports
        self.settings = dataclasses.replace(settings, natt_port=self.natt_port)
        super().__init__(self.settings, endpoint, natt_port=self.natt_port, lifetime=lifetime)


class UdpIkeLoop(LabEndpoint):
    """ikecp on ``sockets`` (local port -> socket bound to ``local_ip``), in a thread of its
    own: ``start``/``stop`` or ``with``. With ``responder`` settings it accepts IKE_SA_INIT
    requests; ``initiate`` starts initiator SAs. ``events`` holds every (SA, event),
    ``trace`` every datagram (direction, local port, peer, bytes as on the wire)."""

    def __init__(self, sockets: dict[int, socket.socket], local_ip: str, *,
                 natt_port: int = 4500, responder: Settings | None = None,
                 lifetime: float = 600.0) -> None:
        ike = [s for port, s in sockets.items() if port != natt_port]
        natt = [s for port, s in sockets.items() if port == natt_port]
        socks: Sequence[Sock] = ike + natt  # the IKE port first
        super().__init__(responder, UdpEndpoint.adopt(local_ip, socks), natt_port=natt_port,
                         lifetime=lifetime)
        self.sockets = sockets
        self.events: list[tuple[IkeSa, Event]] = []
        self.trace: list[tuple[str, int, tuple[str, int], bytes]] = []
        self.driver.tap = self._tap
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    # -- control from the test thread ------------------------------------------------------

    def start(self) -> UdpIkeLoop:
        self._thread = threading.Thread(target=self._run, name="udp-ike-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        super().stop()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.driver.close()  # never started: close the sockets all the same
        if self._error is not None:
            raise RuntimeError("UDP IKE loop failed") from self._error

    def __enter__(self) -> UdpIkeLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], _T], timeout: float = 5.0) -> _T:
        """Run ``fn`` on the loop thread (the only thread that may touch an SA); what it did
        to the SAs is sent right after."""
        fut: Future[_T] = Future()
        self._calls.put((fn, fut))
        return fut.result(timeout)

    def initiate(self, settings: Settings, remote: tuple[str, int],
                 local_port: int = 500) -> IkeSa:
        """Start an initiator SA from our ``local_port`` towards ``remote``."""
        d = self.dispatcher
        return self.call(lambda: d.connect(settings, remote, self.driver.clock(),
                                           local=(self.local_ip, local_port)))

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

    # -- on the loop thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.serve()
        except BaseException as exc:  # surfaced by stop()/wait_for in the test thread
            self._error = exc

    def _until(self) -> bool:
        """Before each turn: run the test thread's calls, then send what they made."""
        ran = False
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                break
            ran = True
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)
        if ran:
            now = self.driver.clock()
            for sa in list(self.dispatcher.sas()):
                self.dispatcher.update(sa, now)
            self.driver.flush()
        return super()._until()

    def _on_events(self, events: list[tuple[IkeSa, Event]]) -> None:
        super()._on_events(events)
        with self._lock:
            self.events.extend(events)

    def _tap(self, direction: str, port: int, peer: tuple[str, int], wire: bytes) -> None:
        self.trace.append((direction, port, peer, wire))


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
