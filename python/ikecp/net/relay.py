"""A userspace NAPT on real UDP sockets, so tests and the demo see a real address translation.

Each inside source address:port gets its own outside socket (a fresh ephemeral port on the
outside host): the translation a femtocell's home router does, and what the SeGW must report in
EXTERNAL_SOURCE_IP4_NAT_INFO. Mapping is endpoint-independent (one outside port per inside
source whatever the target); filtering is address-and-port-dependent (only the relay's targets
may answer through a mapping). Impairments (drop, duplicate, reorder) come from a seeded RNG per
direction, so a run is repeatable. The relay is bounded: a maximum number of mappings, an idle
timeout per mapping and a lifetime after which it stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..addr import Address as Addr

_T = TypeVar("_T")

UP = "up"  # inside -> outside (toward the target)
DOWN = "down"  # target -> inside


@dataclass(frozen=True)
class Route:
    """Datagrams arriving on ``listen`` (inside) are forwarded to ``target`` (outside)."""

    listen: Addr
    target: Addr


@dataclass(frozen=True)
class Impairment:
    """Fractions of datagrams (per direction) to drop, duplicate or reorder, and the RNG seed.

    A reordered datagram is held back and sent right after the next datagram of the same mapping
    and direction (or after ``reorder_hold`` seconds if none follows).
    """

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    seed: int = 0
    reorder_hold: float = 0.05

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Impairment.{name} must be within [0, 1], got {value!r}")
        if self.reorder_hold <= 0:
            raise ValueError("Impairment.reorder_hold must be positive")


@dataclass
class Counters:
    """What the relay did; ``snapshot()`` gives a consistent copy."""

    received_up: int = 0  # datagrams read on inside sockets
    received_down: int = 0  # datagrams read on outside sockets from a target
    sent_up: int = 0  # datagrams written toward a target (duplicates included)
    sent_down: int = 0  # datagrams written back to an inside source
    dropped: int = 0  # dropped by impairment
    duplicated: int = 0  # extra copies sent
    reordered: int = 0  # held datagrams sent after a later one
    filtered: int = 0  # arrived on an outside port from an address that is not a target
    refused: int = 0  # new inside source while the mapping table was full
    mappings_created: int = 0
    mappings_expired: int = 0
    rebinds: int = 0
    socket_errors: int = 0

    def snapshot(self) -> Counters:
        return dataclasses.replace(self)


@dataclass(frozen=True)
class Mapping:
    """One row of the translation table."""

    inside: Addr
    outside: Addr
    created: float
    last_used: float


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _norm(addr: Any) -> Addr:
    """Reduce an IPv4 or IPv6 socket address to (host, port)."""
    return (str(addr[0]), int(addr[1]))


class _Proto(asyncio.DatagramProtocol):
    """One relay socket: asyncio transport for normal sends, the raw socket for empty ones."""

    def __init__(self, on_datagram: Callable[[bytes, Addr], None],
                 on_error: Callable[[Exception], None]) -> None:
        self._on_datagram = on_datagram
        self._on_error = on_error
        self.sock: socket.socket | None = None
        self.transport: asyncio.DatagramTransport | None = None

    async def open(self, loop: asyncio.AbstractEventLoop, local: Addr) -> Addr:
        """Bind a non-blocking socket on ``local`` and attach it to the loop; return sockname."""
        sock = socket.socket(_family(local[0]), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(local)
            self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        return _norm(sock.getsockname())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def sendto(self, data: bytes, addr: Addr) -> bool:
        """Send one datagram; False if the socket refused it.

        asyncio silently discards empty datagrams, but a NAPT forwards them, so those go
        straight to the non-blocking socket.
        """
        if self.transport is None or self.sock is None:
            return False
        if data:
            self.transport.sendto(data, addr)
            return True
        try:
            self.sock.sendto(data, addr)
        except OSError:
            return False
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_datagram(data, _norm(addr))

    def error_received(self, exc: Exception) -> None:
        self._on_error(exc)


class _Flow:
    """An inside source's outside socket plus its per-direction reorder slots."""

    def __init__(self, inside: Addr, now: float) -> None:
        self.inside = inside
        self.proto: _Proto | None = None
        self.outside: Addr = ("", 0)
        # Datagrams that arrive while the first outside socket is being bound wait here.
        self.pending: list[tuple[Addr, bytes]] | None = []
        self.created = now
        self.last_used = now
        self.held: dict[str, tuple[list[Callable[[], None]], asyncio.TimerHandle] | None] = {
            UP: None, DOWN: None,
        }


class NatRelay:
    """The NAPT itself; run it on an asyncio loop with ``start()`` / ``stop()``.

    ``routes`` pairs each inside listening address with the target its datagrams go to (one
    pair per IKE port, e.g. 500 and 4500). Listening ports may be 0; ``listen_addrs`` gives
    the bound ones. Targets must be distinct so replies find their way back to a listener.
    """

    def __init__(
        self,
        routes: Sequence[Route | tuple[Addr, Addr]],
        *,
        outside_host: str = "127.0.0.1",
        idle_timeout: float = 30.0,
        lifetime: float = 300.0,
        max_mappings: int = 1024,
        impairment: Impairment | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._routes = [r if isinstance(r, Route) else Route(_norm(r[0]), _norm(r[1]))
                        for r in routes]
        if not self._routes:
            raise ValueError("NatRelay needs at least one route")
        targets = [r.target for r in self._routes]
        if len(set(targets)) != len(targets):
            raise ValueError("NatRelay routes must have distinct targets")
        if idle_timeout <= 0 or lifetime <= 0 or max_mappings <= 0:
            raise ValueError("idle_timeout, lifetime and max_mappings must be positive")
        self._outside_host = outside_host
        self._idle_timeout = idle_timeout
        self._lifetime = lifetime
        self._max_mappings = max_mappings
        self._imp = impairment or Impairment()
        self._rng = {UP: random.Random(f"{self._imp.seed}/up"),
                     DOWN: random.Random(f"{self._imp.seed}/down")}
        self._clock = clock
        self.counters = Counters()
        self._listeners: list[_Proto] = []
        self._listen_addrs: list[Addr] = []
        self._target_to_listener: dict[Addr, _Proto] = {}
        self._flows: dict[Addr, _Flow] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._binding: set[asyncio.Task[None]] = set()  # outside sockets being opened
        self._stopped = asyncio.Event()
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the inside sockets; from here on the relay translates until ``stop()``."""
        if self._running:
            raise RuntimeError("relay already started")
        self._loop = asyncio.get_running_loop()
        try:
            for route in self._routes:
                listener = _Proto(functools.partial(self._from_inside, route),
                                  self._on_socket_error)
                self._listen_addrs.append(await listener.open(self._loop, route.listen))
                self._listeners.append(listener)
                self._target_to_listener[route.target] = listener
        except BaseException:
            self._close_all()
            raise
        self._running = True
        self._stopped.clear()
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        """Close every socket and drop held datagrams; safe to call twice."""
        self._running = False
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and sweeper is not asyncio.current_task():
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        for task in list(self._binding):
            task.cancel()
        self._close_all()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> NatRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def listen_addrs(self) -> list[Addr]:
        """Bound inside addresses, in route order."""
        return list(self._listen_addrs)

    # -- table -----------------------------------------------------------------------------

    def mappings(self) -> dict[Addr, Addr]:
        """The translation table: inside source -> outside address the target sees."""
        return {k: f.outside for k, f in self._flows.items() if f.proto is not None}

    def mapping_rows(self) -> list[Mapping]:
        """The table with creation and last-use times (the relay's clock)."""
        return [Mapping(f.inside, f.outside, f.created, f.last_used)
                for f in self._flows.values() if f.proto is not None]

    async def rebind(self, inside: Addr) -> Addr:
        """Move ``inside``'s mapping to a new outside port (NAT rebinding); return it."""
        flow = self._flows.get(_norm(inside))
        if flow is None or flow.proto is None:
            raise KeyError(f"no mapping for {inside!r}")
        old = flow.proto
        await self._open_outside(flow)  # old socket still bound, so the port differs
        old.close()
        self.counters.rebinds += 1
        return flow.outside

    # -- datapath --------------------------------------------------------------------------

    def _from_inside(self, route: Route, data: bytes, src: Addr) -> None:
        self.counters.received_up += 1
        flow = self._flows.get(src)
        if flow is None:
            if len(self._flows) >= self._max_mappings:
                self.counters.refused += 1
                return
            flow = _Flow(src, self._clock())
            self._flows[src] = flow
            self.counters.mappings_created += 1
            assert self._loop is not None
            task = self._loop.create_task(self._open_first(flow))
            self._binding.add(task)
            task.add_done_callback(self._binding.discard)
        if flow.pending is not None:
            flow.pending.append((route.target, data))
            return
        flow.last_used = self._clock()
        self._impair(flow, UP, lambda: self._send_up(flow, route.target, data))

    async def _open_first(self, flow: _Flow) -> None:
        try:
            await self._open_outside(flow)
        except OSError:
            self.counters.socket_errors += 1
            self._flows.pop(flow.inside, None)
            return
        pending, flow.pending = flow.pending or [], None
        for target, data in pending:
            self._impair(flow, UP, functools.partial(self._send_up, flow, target, data))

    async def _open_outside(self, flow: _Flow) -> None:
        assert self._loop is not None
        proto = _Proto(lambda d, a: self._from_outside(flow, proto, d, a), self._on_socket_error)
        outside = await proto.open(self._loop, (self._outside_host, 0))
        if not self._running or self._flows.get(flow.inside) is not flow:
            proto.close()  # stopped or expired while binding
            raise OSError("relay stopped while binding")
        flow.proto, flow.outside = proto, outside

    def _from_outside(self, flow: _Flow, proto: _Proto, data: bytes, src: Addr) -> None:
        listener = self._target_to_listener.get(src)
        if listener is None or proto is not flow.proto:
            self.counters.filtered += 1  # not a target, or a socket replaced by rebind
            return
        self.counters.received_down += 1
        flow.last_used = self._clock()
        self._impair(flow, DOWN, lambda: self._send_down(flow, listener, data))

    def _send_up(self, flow: _Flow, target: Addr, data: bytes) -> None:
        if flow.proto is None or flow.proto.closing:
            return
        if flow.proto.sendto(data, target):
            self.counters.sent_up += 1
        else:
            self.counters.socket_errors += 1

    def _send_down(self, flow: _Flow, listener: _Proto, data: bytes) -> None:
        if listener.closing:
            return
        if listener.sendto(data, flow.inside):
            self.counters.sent_down += 1
        else:
            self.counters.socket_errors += 1

    def _impair(self, flow: _Flow, direction: str, send: Callable[[], None]) -> None:
        """Apply drop / duplicate / reorder to one datagram, then release any held one."""
        rng = self._rng[direction]
        # Draw all three numbers every time so one decision never shifts the others.
        r_drop, r_dup, r_reorder = rng.random(), rng.random(), rng.random()
        if r_drop < self._imp.drop:
            self.counters.dropped += 1
            return
        sends = [send, send] if r_dup < self._imp.duplicate else [send]
        self.counters.duplicated += len(sends) - 1
        held = flow.held[direction]
        if held is None and r_reorder < self._imp.reorder:
            assert self._loop is not None
            timer = self._loop.call_later(self._imp.reorder_hold, self._release, flow, direction)
            flow.held[direction] = (sends, timer)
            return
        for s in sends:
            s()
        if held is not None:
            held_sends, timer = held
            timer.cancel()
            flow.held[direction] = None
            self.counters.reordered += 1
            for s in held_sends:
                s()

    def _release(self, flow: _Flow, direction: str) -> None:
        held = flow.held[direction]
        flow.held[direction] = None
        if held is not None:
            for s in held[0]:
                s()

    def _on_socket_error(self, exc: Exception) -> None:
        # ICMP errors (e.g. port unreachable) surface here; a NAPT just carries on.
        self.counters.socket_errors += 1

    # -- housekeeping ----------------------------------------------------------------------

    async def _sweep(self) -> None:
        started = self._clock()
        period = min(self._idle_timeout / 4, 1.0)
        try:
            while True:
                await asyncio.sleep(period)
                now = self._clock()
                for key, flow in list(self._flows.items()):
                    if flow.proto is not None and now - flow.last_used >= self._idle_timeout:
                        self._close_flow(flow)
                        del self._flows[key]
                        self.counters.mappings_expired += 1
                if now - started >= self._lifetime:
                    break
        finally:
            if self._running:  # lifetime reached (stop() clears the flag before cancelling)
                await self.stop()

    def _close_flow(self, flow: _Flow) -> None:
        for direction in (UP, DOWN):
            held = flow.held[direction]
            if held is not None:
                held[1].cancel()
                flow.held[direction] = None
        if flow.proto is not None:
            flow.proto.close()

    def _close_all(self) -> None:
        for flow in self._flows.values():
            self._close_flow(flow)
        self._flows.clear()
        for t in self._listeners:
            t.close()
        self._listeners.clear()
        self._listen_addrs.clear()
        self._target_to_listener.clear()


class ThreadedRelay:
    """A ``NatRelay`` on its own event loop in a daemon thread, for synchronous tests.

    Methods mirror the relay's and block (bounded by ``timeout``) until the loop has run them.
    ``thread_setup`` runs first on the relay's thread, e.g. to join a network namespace so
    that every socket the relay opens lives there.
    """

    def __init__(self, relay: NatRelay, *, timeout: float = 5.0,
                 thread_setup: Callable[[], None] | None = None) -> None:
        self.relay = relay
        self._timeout = timeout
        self._setup = thread_setup
        self._setup_error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ikecp-relay", daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        try:
            if self._setup is not None:
                self._setup()
        except BaseException as exc:
            self._setup_error = exc
            return
        finally:
            self._ready.set()
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def start(self) -> ThreadedRelay:
        self._thread.start()
        if not self._ready.wait(self._timeout) or self._setup_error is not None:
            self._thread.join(self._timeout)
            self._loop.close()
            raise RuntimeError("relay thread setup failed") from self._setup_error
        try:
            self._call(self.relay.start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self.relay.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> ThreadedRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def listen_addrs(self) -> list[Addr]:
        return self.relay.listen_addrs

    @property
    def running(self) -> bool:
        return self.relay.running

    def counters(self) -> Counters:
        async def snap() -> Counters:
            return self.relay.counters.snapshot()
        return self._call(snap())

    def mappings(self) -> dict[Addr, Addr]:
        async def table() -> dict[Addr, Addr]:
            return self.relay.mappings()
        return self._call(table())

    def mapping_rows(self) -> list[Mapping]:
        async def rows() -> list[Mapping]:
            return self.relay.mapping_rows()
        return self._call(rows())

    def rebind(self, inside: Addr) -> Addr:
        return self._call(self.relay.rebind(inside))


@contextlib.contextmanager
def relay_in_thread(routes: Sequence[Route | tuple[Addr, Addr]], *,
                    thread_setup: Callable[[], None] | None = None,
                    **kwargs: Any) -> Iterator[ThreadedRelay]:
    """``with relay_in_thread([(listen, target)], idle_timeout=…) as r:`` for sync code."""
    with ThreadedRelay(NatRelay(routes, **kwargs), thread_setup=thread_setup) as threaded:
        yield threaded
