"""Put a ``Dispatcher`` on real UDP sockets.

``UdpEndpoint`` owns every socket of one IKE endpoint (the IKE port and the NAT-T port, IPv4
or IPv6) and does all the socket work: batched non-blocking reads and writes. Two drivers
feed it to a dispatcher and fire the dispatcher's timers:

- ``AsyncioDriver`` for applications that already run an asyncio loop (the SeGW and FAP
  roles, the demo): the sockets are watched with ``loop.add_reader``, each wakeup drains the
  socket, and one ``call_at`` handle serves the whole timer heap.
- ``SelectorDriver`` for a dedicated thread or process (the load generator): a blocking
  ``selectors`` loop with the same batching and no event-loop overhead.

``BatchUdpEndpoint`` is ``UdpEndpoint`` on the backend's ``BatchSocket``: the native one
moves each batch with one ``recvmmsg``/``sendmmsg`` call with the GIL released. Both drivers
take either endpoint unchanged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import selectors
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from .. import _backend, _reference
from .._backend import BatchSocketLike
from ..addr import Address
from ..engine import Datagram, IkeSa
from ..events import Event
from ..roles.dispatch import Dispatcher

log = logging.getLogger("ikecp.net.udp")

EventSink = Callable[[list[tuple[IkeSa, Event]]], None]

#: Datagrams read from one socket per wakeup before the others get their turn.
BATCH = 64
_RECV_SIZE = 65535
#: Receive and send buffer asked for every socket: a burst of thousands of answers (the
#: DELETE round of a shutdown, a mass reconnect) must fit while the loop is busy. The
#: kernel caps it at net.core.rmem_max / wmem_max, except for root (SO_*BUFFORCE, Linux).
SOCKET_BUFFER = 4 << 20
_BUFFER_OPTS = ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)) if sys.platform == "linux" \
    else ((None, socket.SO_RCVBUF), (None, socket.SO_SNDBUF))


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _setopt(sock: socket.socket, option: int, value: int) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, value)
    except OSError:
        return False
    return True


def size_buffers(sock: socket.socket, size: int) -> None:
    """Ask for ``size``-octet receive and send buffers (best effort, never fails): past
    the sysctl cap where allowed (root), else up to it."""
    for force, plain in _BUFFER_OPTS:
        if force is None or not _setopt(sock, force, size):
            _setopt(sock, plain, size)


def bind_error(exc: OSError, host: str, port: int) -> OSError:
    """``exc`` naming the address:port it is about (EADDRINUSE alone names none)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return OSError(exc.errno, f"cannot bind {where}: {exc.strerror or exc}")


@dataclass(slots=True)
class IoStats:
    received: int = 0
    sent: int = 0
    send_errors: int = 0
    wakeups: int = 0


class UdpEndpoint:
    """Non-blocking UDP sockets on each of ``hosts`` (IPv4 and/or IPv6 literals) and each of
    ``ports`` (0: any free port, the same number then used for every host).

    ``ports`` gives the bound port numbers in the order asked, so a caller can bind first and
    build its ``Settings`` (``port``, ``natt_port``) from the result. A datagram goes out of
    the socket of its ``local_port`` in the family of its destination.
    """

    def __init__(self, hosts: str | Sequence[str], ports: Sequence[int] = (500, 4500), *,
                 buffer_size: int = SOCKET_BUFFER) -> None:
        self.hosts = [hosts] if isinstance(hosts, str) else list(hosts)
        self.buffer_size = buffer_size
        self.stats = IoStats()
        self._socks: dict[tuple[int, int], tuple[socket.socket, str]] = {}
        self.ports: list[int] = []
        try:
            for i, port in enumerate(ports):
                for host in self.hosts:
                    family = family_of(host)
                    sock = self._open(host, self.ports[i] if i < len(self.ports) else port)
                    bound = sock.getsockname()[1]
                    if i == len(self.ports):
                        self.ports.append(bound)
                    self._socks[(family, bound)] = (sock, host)
        except BaseException:
            self.close()
            raise

    def _open(self, host: str, port: int) -> socket.socket:
        """A bound non-blocking socket, IPv6-only for an IPv6 host."""
        family = family_of(host)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            size_buffers(sock, self.buffer_size)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise bind_error(exc, host, port) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def sockets(self) -> list[tuple[tuple[int, int], socket.socket]]:
        """((family, port), socket) for every socket."""
        return [(key, sock) for key, (sock, _) in self._socks.items()]

    def recv_batch(self, key: tuple[int, int], limit: int = BATCH
                   ) -> tuple[str, list[tuple[bytes, Address]]]:
        """(local host, up to ``limit`` datagrams) waiting on socket ``key``; never blocks."""
        sock, host = self._socks[key]
        out: list[tuple[bytes, Address]] = []
        recv = sock.recvfrom
        for _ in range(limit):
            try:
                data, addr = recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported on a later read
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue
                raise
            out.append((data, (addr[0], addr[1])))
        self.stats.received += len(out)
        return host, out

    def send_batch(self, datagrams: Iterable[Datagram]) -> int:
        """Send each datagram; returns how many went. A full buffer or an unreachable peer
        loses the datagram (UDP: retransmission is the engine's business) and is counted in
        ``stats.send_errors``."""
        sent = errors = 0
        socks = self._socks
        for dg in datagrams:
            entry = socks.get((family_of(dg.remote[0]), dg.local_port))
            if entry is None:
                log.warning("no socket on port %d for a datagram to %s", dg.local_port,
                            dg.remote)
                errors += 1
                continue
            try:
                entry[0].sendto(dg.wire(), dg.remote)
                sent += 1
            except OSError as exc:
                log.debug("send to %s failed: %s", dg.remote, exc)
                errors += 1
        self.stats.sent += sent
        self.stats.send_errors += errors
        return sent

    def close(self) -> None:
        for sock, _ in self._socks.values():
            sock.close()
        self._socks.clear()


class BatchUdpEndpoint(UdpEndpoint):
    """``UdpEndpoint`` whose sockets are the configured backend's ``BatchSocket`` (native:
    ``recvmmsg``/``sendmmsg``, Linux only; the pure-Python twin with ``IKECP_BACKEND=python``
    or where the native class is missing)."""

    def _open(self, host: str, port: int) -> BatchSocketLike:  # type: ignore[override]
        cls = getattr(_backend.backend, "BatchSocket", None)
        if cls is None:  # the native class exists on Linux only: use the twin elsewhere
            cls = _reference.BatchSocket
        try:
            batch = cls(host, port)
        except OSError as exc:
            raise bind_error(exc, host, port) from None
        with socket.socket(fileno=os.dup(batch.fileno())) as view:  # same socket, own fd
            size_buffers(view, self.buffer_size)
        return batch

    def recv_batch(self, key: tuple[int, int], limit: int = BATCH
                   ) -> tuple[str, list[tuple[bytes, Address]]]:
        entry, host = self._socks[key]
        sock = cast(BatchSocketLike, entry)  # what _open made
        try:
            out = sock.recv_batch(limit, 0)
        except OSError as exc:  # a reported ICMP error; the queued datagrams stay for later
            if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                return host, []
            raise
        self.stats.received += len(out)
        return host, out

    def send_batch(self, datagrams: Iterable[Datagram]) -> int:
        """As ``UdpEndpoint.send_batch``: a datagram the kernel refuses is counted in
        ``stats.send_errors`` and the rest of the batch still goes."""
        per_socket: dict[tuple[int, int], list[tuple[bytes, Address]]] = {}
        errors = 0
        for dg in datagrams:
            key: tuple[int, int] = (family_of(dg.remote[0]), dg.local_port)
            if key not in self._socks:
                log.warning("no socket on port %d for a datagram to %s", dg.local_port,
                            dg.remote)
                errors += 1
                continue
            per_socket.setdefault(key, []).append((dg.wire(), dg.remote))
        sent = 0
        for key, batch in per_socket.items():
            sock, i = cast(BatchSocketLike, self._socks[key][0]), 0
            while i < len(batch):
                try:
                    n = sock.send_batch(batch[i:] if i else batch)
                except (OSError, ValueError) as exc:
                    log.debug("send to %s failed: %s", batch[i][1], exc)
                    n = 0
                sent += n
                i += n
                if i < len(batch):  # batch[i] was refused: it is lost, the rest goes on
                    errors += 1
                    i += 1
        self.stats.sent += sent
        self.stats.send_errors += errors
        return sent


class _Driver:
    """What both drivers share: read, dispatch, send, fire timers, hand out events."""

    def __init__(self, dispatcher: Dispatcher, endpoint: UdpEndpoint,
                 on_events: EventSink | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dispatcher = dispatcher
        self.endpoint = endpoint
        self.on_events = on_events
        self.clock = clock

    def _readable(self, key: tuple[int, int]) -> None:
        now = self.clock()
        receive, port = self.dispatcher.receive, key[1]
        self.endpoint.stats.wakeups += 1
        host, batch = self.endpoint.recv_batch(key)
        for data, addr in batch:
            receive(data, port, addr, now, local_ip=host)
        self._timers_due(now)
        self.flush()

    def _timers_due(self, now: float) -> None:
        when = self.dispatcher.next_timer()
        if when is not None and when <= now:
            self.dispatcher.handle_timer(now)

    def flush(self) -> None:
        """Send what the dispatcher queued and deliver its events."""
        out = self.dispatcher.datagrams_to_send()
        if out:
            self.endpoint.send_batch(out)
        events = self.dispatcher.events()  # drained even without a sink: bounded memory
        if events and self.on_events is not None:
            self.on_events(events)
            # The sink may have acted on SAs (delete, liveness): send that too.
            more = self.dispatcher.datagrams_to_send()
            if more:
                self.endpoint.send_batch(more)


class AsyncioDriver(_Driver):
    """Runs a dispatcher on the running asyncio loop until ``close()``."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for key, sock in self.endpoint.sockets():
            self._loop.add_reader(sock.fileno(), self._on_readable, key)
        self.flush()

    def _on_readable(self, key: tuple[int, int]) -> None:
        try:
            self._readable(key)
        except Exception:  # keep serving the other SAs
            log.exception("error while handling datagrams on port %d", key[1])
        self._rearm()

    def flush(self) -> None:
        super().flush()
        if self._loop is not None:
            self._rearm()

    def _rearm(self) -> None:
        """One loop timer for the whole heap: at the dispatcher's earliest deadline."""
        when = self.dispatcher.next_timer()
        if when == self._timer_at or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = None
        if when is not None:
            delay = max(0.0, when - self.clock())
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        try:
            self.dispatcher.handle_timer(self.clock())
            self.flush()
        except Exception:
            log.exception("error while handling timers")
        self._rearm()

    def close(self) -> None:
        if self._loop is not None:
            for _, sock in self.endpoint.sockets():
                self._loop.remove_reader(sock.fileno())
            if self._timer is not None:
                self._timer.cancel()
            self._loop = None
        self.endpoint.close()


class SelectorDriver(_Driver):
    """A blocking loop over non-blocking sockets: call ``run`` from a dedicated thread."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._sel = selectors.DefaultSelector()
        for key, sock in self.endpoint.sockets():
            self._sel.register(sock, selectors.EVENT_READ, key)
        self._stop = False

    def run_once(self, max_wait: float = 0.1) -> None:
        """Wait for datagrams or the next timer (at most ``max_wait`` s) and handle them."""
        self.flush()
        when = self.dispatcher.next_timer()
        wait = max_wait if when is None else min(max_wait, max(0.0, when - self.clock()))
        for key, _ in self._sel.select(wait):
            self._readable(key.data)
        self._timers_due(self.clock())
        self.flush()

    def run(self, until: Callable[[], bool], deadline: float) -> bool:
        """Loop until ``until()`` is true (returns True) or ``deadline`` on ``clock`` passes
        or ``stop()`` is called (returns False)."""
        self._stop = False
        while not self._stop:
            if until():
                return True
            now = self.clock()
            if now >= deadline:
                return False
            self.run_once(min(0.1, deadline - now))
        return until()

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        self._sel.close()
        self.endpoint.close()
