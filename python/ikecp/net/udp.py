"""Put a ``Dispatcher`` on real UDP sockets, on an ``IoCore``.

``UdpEndpoint`` opens the sockets of one IKE endpoint (the IKE port and the NAT-T port, on
each listen address, IPv4 or IPv6); ``open_socket`` is the one function that opens and binds
each of them, plain or on the backend's ``BatchSocket`` (``recvmmsg``/``sendmmsg``).
``DispatchDriver`` is the glue between a ``Dispatcher`` and the core (``ikecp.net.core``):
each socket's batch of datagrams goes to the dispatcher, what it wants sent is queued on the
socket of its local port and family, its events go to a sink, and its earliest deadline is
one entry in the core's timer heap. The same driver runs inside an asyncio loop (``start``)
or in a thread of its own (``driver.core.run_until``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence

from .. import _backend, _reference
from ..addr import Address
from ..engine import Datagram, IkeSa
from ..events import Event
from ..roles.dispatch import Dispatcher
from .core import Batch, IoCore, IoStats, Sock, Timer

log = logging.getLogger("ikecp.net.udp")

EventSink = Callable[[list[tuple[IkeSa, Event]]], None]
#: ``tap(direction, local_port, remote, wire)``: every datagram in ("in") and out ("out").
Tap = Callable[[str, int, Address, bytes], None]

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


def open_socket(host: str, port: int, *, batch: bool = False,
                buffer_size: int = SOCKET_BUFFER) -> Sock:
    """A non-blocking UDP socket bound to ``host``:``port`` (IPv6-only for an IPv6 host) with
    ``buffer_size`` buffers: the backend's ``BatchSocket`` with ``batch`` (the pure-Python
    twin where the native class is missing), else a plain ``socket.socket``."""
    if batch:
        cls = getattr(_backend.backend, "BatchSocket", None) or _reference.BatchSocket
        try:
            sock: Sock = cls(host, port)
        except OSError as exc:
            raise bind_error(exc, host, port) from None
        with socket.socket(fileno=os.dup(sock.fileno())) as view:  # same socket, own fd
            size_buffers(view, buffer_size)
        return sock
    family = family_of(host)
    plain = socket.socket(family, socket.SOCK_DGRAM)
    try:
        plain.setblocking(False)
        if family == socket.AF_INET6:
            plain.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        size_buffers(plain, buffer_size)
        plain.bind((host, port))
    except OSError as exc:
        plain.close()
        raise bind_error(exc, host, port) from None
    except BaseException:
        plain.close()
        raise
    return plain


class UdpEndpoint:
    """The sockets of one IKE endpoint: one on each of ``hosts`` (IPv4 and/or IPv6
    literals) for each of ``ports`` (0: any free port, the same number then used for every
    host); ``batch``: on the backend's ``BatchSocket``.

    ``ports`` gives the bound port numbers in the order asked, so a caller can bind first and
    build its ``Settings`` (``port``, ``natt_port``) from the result. A datagram goes out of
    the socket of its ``local_port`` in the family of its destination.
    """

    def __init__(self, hosts: str | Sequence[str], ports: Sequence[int] = (500, 4500), *,
                 batch: bool = False, buffer_size: int = SOCKET_BUFFER) -> None:
        self.hosts = [hosts] if isinstance(hosts, str) else list(hosts)
        self.batch = batch
        self.buffer_size = buffer_size
        self._socks: dict[tuple[int, int], tuple[Sock, str]] = {}
        self.ports: list[int] = []
        try:
            for i, port in enumerate(ports):
                for host in self.hosts:
                    sock = self._open(host, self.ports[i] if i < len(self.ports) else port)
                    bound = sock.getsockname()[1]
                    if i == len(self.ports):
                        self.ports.append(bound)
                    self._socks[(family_of(host), bound)] = (sock, host)
        except BaseException:
            self.close()
            raise

    @classmethod
    def adopt(cls, host: str, sockets: Sequence[Sock]) -> UdpEndpoint:
        """An endpoint of sockets bound elsewhere (e.g. inside a network namespace)."""
        self = cls(host, ())
        for sock in sockets:
            if isinstance(sock, socket.socket):
                sock.setblocking(False)
            port = sock.getsockname()[1]
            self.ports.append(port)
            self._socks[(family_of(host), port)] = (sock, host)
        return self

    def _open(self, host: str, port: int) -> Sock:
        return open_socket(host, port, batch=self.batch, buffer_size=self.buffer_size)

    def sockets(self) -> list[tuple[tuple[int, int], Sock, str]]:
        """((family, port), socket, local host) for every socket."""
        return [(key, sock, host) for key, (sock, host) in self._socks.items()]

    def close(self) -> None:
        for sock, _ in self._socks.values():
            sock.close()
        self._socks.clear()


class DispatchDriver:
    """Runs ``dispatcher`` on ``endpoint``'s sockets on ``core`` (default: a core of its
    own, on ``clock``) until ``close()``: ``start()`` inside a running asyncio loop, or
    ``core.run_until(...)`` in a thread. ``on_events`` gets the dispatcher's events after
    each batch; ``tap`` sees every datagram as on the wire. After acting on SAs outside a
    turn (``sa.delete()`` then ``dispatcher.update``), call ``flush()``."""

    def __init__(self, dispatcher: Dispatcher, endpoint: UdpEndpoint,
                 on_events: EventSink | None = None, *, core: IoCore | None = None,
                 clock: Callable[[], float] = time.monotonic, tap: Tap | None = None) -> None:
        self.dispatcher = dispatcher
        self.endpoint = endpoint
        self.on_events = on_events
        self.tap = tap
        self._own_core = core is None
        self.core = IoCore(clock=clock) if core is None else core
        self.clock = self.core.clock
        self._timer: Timer | None = None
        self._out: dict[tuple[int, int], Sock] = {}
        for key, sock, host in endpoint.sockets():
            self._out[key] = sock
            self.core.add(sock, self._received, (key[1], host))

    @property
    def stats(self) -> IoStats:
        return self.core.stats

    def start(self) -> None:
        """Serve on the running asyncio loop."""
        self.core.attach()
        self.flush()

    def _received(self, token: tuple[int, str], batch: Batch, now: float) -> None:
        port, host = token
        if self.tap is not None:
            for data, addr in batch:
                self.tap("in", port, addr, data)
        receive = self.dispatcher.receive
        for data, addr in batch:
            receive(data, port, addr, now, local_ip=host)
        self._drain()

    def _on_timer(self, _: object, now: float) -> None:
        self._timer = None
        self.dispatcher.handle_timer(now)
        self._drain()

    def _drain(self) -> None:
        """Queue what the dispatcher wants sent, deliver its events, re-arm its deadline."""
        d = self.dispatcher
        out = d.datagrams_to_send()
        if out:
            self._queue(out)
        events = d.events()  # drained even without a sink: bounded memory
        if events and self.on_events is not None:
            self.on_events(events)
            # The sink may have acted on SAs (delete, liveness): send that too.
            more = d.datagrams_to_send()
            if more:
                self._queue(more)
        when, timer = d.next_timer(), self._timer
        if timer is None or timer.when != when:
            self.core.cancel(timer)
            self._timer = None if when is None else self.core.call_at(when, self._on_timer)

    def _queue(self, datagrams: list[Datagram]) -> None:
        send, socks, tap = self.core.send, self._out, self.tap
        for dg in datagrams:
            sock = socks.get((family_of(dg.remote[0]), dg.local_port))
            if sock is None:
                log.warning("no socket on port %d for a datagram to %s", dg.local_port,
                            dg.remote)
                self.core.stats.send_errors += 1
                continue
            wire = dg.wire()
            if tap is not None:
                tap("out", dg.local_port, dg.remote, wire)
            send(sock, wire, dg.remote)

    def flush(self) -> None:
        """Send what the dispatcher queued (outside a turn) and deliver its events."""
        self._drain()
        self.core.flush()

    def close(self) -> None:
        """Stop serving; queued datagrams still go out, then the sockets close."""
        self.core.cancel(self._timer)
        self._timer = None
        for sock in self._out.values():
            self.core.remove(sock)
        if self._own_core:
            self.core.close()
        self.endpoint.close()

