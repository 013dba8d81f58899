"""``IoCore``: the one I/O loop every ikecp role runs on.

The protocol side is sans-IO (the engine, the ``Dispatcher``, the load generator's FAPs): it
takes datagrams with a ``now`` and says what to send and when it next needs the clock. The
core does the rest, once, for all of them:

- it owns the sockets: a plain non-blocking ``socket.socket`` (read with ``recvfrom`` up to
  a batch) or a ``BatchSocketLike`` (the backend's ``BatchSocket``: one ``recvmmsg`` /
  ``sendmmsg`` per batch). Batch sockets pay where a socket carries many flows (a SeGW's
  500/4500); the load generator's one-flow-per-socket FAPs see one datagram per wakeup, so
  they keep plain sockets;
- each readable socket's datagrams go to its handler as one batch, with one ``now`` per
  turn;
- sends are queued with ``send`` and leave when the handler or timer that queued them
  returns: one ``send_batch`` per batch socket for a whole batch of answers, and no answer
  waits while the core works through other sockets (the peer would sit idle meanwhile);
- one timer heap (``call_at``, lazily cancelled) for every timer of every endpoint: a SeGW
  puts one entry there for its dispatcher's earliest deadline, the load generator one per
  FAP; never an event-loop timer per SA.

The work on a readable socket (``_serve``: read a batch, hand it over, send the answers) and
on due timers (``_fire``) is the same code however the core is driven:

- ``run_until`` turns (``poll``) in the core's own selector, for a dedicated thread or
  process (the load generator, the lab responders): no event-loop overhead;
- ``attach`` hands every socket to the embedder's asyncio loop with ``loop.add_reader`` (its
  callback is ``_serve`` on that socket, then the due timers) and keeps one
  ``loop.call_later`` handle at the heap's earliest deadline; ``detach``/``close`` remove the
  readers and the handle. (Watching the core's own epoll descriptor instead would cost a
  second ``epoll_wait`` per wakeup: measured +4 µs per datagram in ping-pong.)

Why this shape and not another: asyncio's own datagram endpoints call back once per
datagram and arm a timer per ``call_later``, which at thousands of SAs costs more than the
engine work it carries; a selector loop of its own per tool (as the load generator and the
lab responders each had) cannot live inside an application's event loop. One turn function
with two ways to wait gives the embedder its loop and the load generator its blocking speed,
and every fix or speed-up lands once. Nothing here knows IKE: ``ikecp.net.udp`` puts a
``Dispatcher`` on a core, the load generator its FAPs.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._backend import BatchSocketLike
from ..addr import Address

log = logging.getLogger("ikecp.net.core")

Batch = list[tuple[bytes, Address]]
#: ``handler(token, batch, now)``: the datagrams one socket had ready in this turn (maybe
#: none: see ``IoCore._serve``).
Handler = Callable[[Any, Batch, float], None]
#: ``on_error(token, exc)``: a datagram queued on this socket was refused by the kernel.
ErrorHandler = Callable[[Any, OSError], None]
Sock = socket.socket | BatchSocketLike

#: Datagrams read from one socket per turn before the others get theirs.
BATCH = 64
_RECV_SIZE = 65535
#: A reported ICMP error on a read: the peer is gone, the queued datagrams stay readable.
_ICMP = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH))


@dataclass(slots=True)
class IoStats:
    received: int = 0
    sent: int = 0
    send_errors: int = 0
    wakeups: int = 0      # turns in which at least one socket was readable
    send_calls: int = 0   # sendto/sendmmsg system calls: sent / send_calls is the batching


class Timer:
    """A ``call_at`` entry; ``IoCore.cancel`` makes it never fire (``cancelled`` is also set
    once it fired)."""

    __slots__ = ("arg", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[Any, float], None], arg: Any) -> None:
        self.when, self.fn, self.arg, self.cancelled = when, fn, arg, False


class _Reg:
    """One registered socket: how to read it, whom to hand the datagrams, what waits to go."""

    __slots__ = ("batch", "fd", "handler", "on_error", "out", "read", "sock", "token")

    def __init__(self, sock: Sock, handler: Handler, token: Any,
                 on_error: ErrorHandler | None) -> None:
        self.sock, self.handler, self.token, self.on_error = sock, handler, token, on_error
        self.fd = sock.fileno()
        self.batch = not isinstance(sock, socket.socket)
        self.read: Callable[[Any, int], Batch] = _read_batch if self.batch else \
            _read_plain6 if sock.family == socket.AF_INET6 else _read_plain  # type: ignore[union-attr]
        self.out: list[tuple[bytes, Address]] = []


def _read_plain(sock: socket.socket, limit: int) -> Batch:
    out: Batch = []
    recv = sock.recvfrom
    for _ in range(limit):
        try:
            out.append(recv(_RECV_SIZE))  # IPv4: (data, (host, port)) already
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            if exc.errno in _ICMP:
                continue
            raise
    return out


def _read_plain6(sock: socket.socket, limit: int) -> Batch:
    """``_read_plain`` with IPv6's (host, port, flowinfo, scope) cut to (host, port)."""
    return [(data, (addr[0], addr[1])) for data, addr in _read_plain(sock, limit)]


def _read_batch(sock: BatchSocketLike, limit: int) -> Batch:
    try:
        return sock.recv_batch(limit, 0)
    except OSError as exc:
        if exc.errno in _ICMP:
            return []
        raise


class IoCore:
    """Sockets, a send queue and a timer heap, driven by ``run_until`` or an asyncio loop.

    ``clock`` is the time every handler and timer sees (``time.monotonic`` by default).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 batch: int = BATCH) -> None:
        self.clock = clock
        self.batch = batch
        self.stats = IoStats()
        self._sel = selectors.DefaultSelector()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._regs: dict[Sock, _Reg] = {}
        self._pending: list[_Reg] = []  # registrations with datagrams queued
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_timer: asyncio.TimerHandle | None = None
        self._loop_timer_at: float | None = None
        self._in_turn = False  # inside _guarded: it re-arms the loop timer at the end

    # --- sockets ----------------------------------------------------------------------------

    def add(self, sock: Sock, handler: Handler, token: Any = None, *,
            on_error: ErrorHandler | None = None) -> None:
        """Read ``sock`` from now on: its datagrams go to ``handler(token, batch, now)``; a
        queued datagram the kernel refuses goes to ``on_error(token, exc)`` (else it is only
        counted). The core owns ``sock`` from here: ``close`` closes it."""
        reg = _Reg(sock, handler, token, on_error)
        self._sel.register(sock, selectors.EVENT_READ, reg)
        self._regs[sock] = reg
        if self._loop is not None:
            self._loop.add_reader(reg.fd, self._on_readable, reg)

    def retarget(self, sock: Sock, token: Any) -> None:
        """Hand ``sock``'s next datagrams to the handler with another ``token``."""
        self._regs[sock].token = token

    def remove(self, sock: Sock) -> None:
        """Stop reading ``sock`` (the caller has it back, open); what was queued for it
        still goes out first. A socket the core does not hold is ignored."""
        reg = self._regs.pop(sock, None)
        if reg is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(reg.fd)
        self._sel.unregister(sock)
        if reg.out:
            queue, reg.out = reg.out, []
            self._transmit(reg, queue)

    def sockets(self) -> list[Sock]:
        return list(self._regs)

    def send(self, sock: Sock, data: bytes, addr: Address) -> None:
        """Queue ``data`` to ``addr`` from ``sock`` (registered); it leaves when the running
        handler or timer returns, or at ``flush`` (or the next turn) when queued outside
        one."""
        reg = self._regs[sock]
        if not reg.out:
            self._pending.append(reg)
        reg.out.append((data, addr))

    # --- timers -----------------------------------------------------------------------------

    def call_at(self, when: float, fn: Callable[[Any, float], None], arg: Any = None) -> Timer:
        """Call ``fn(arg, now)`` in the first turn at or after ``when`` (on ``clock``)."""
        timer = Timer(when, fn, arg)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if self._loop is not None and not self._in_turn \
                and (self._loop_timer_at is None or when < self._loop_timer_at):
            self._rearm()  # armed outside a turn: the loop timer must come earlier
        return timer

    def cancel(self, timer: Timer | None) -> None:
        """``timer`` (None, or one that fired: nothing) never fires; the heap is compacted in
        place once most of it is cancelled."""
        if timer is None or timer.cancelled:
            return
        timer.cancelled = True
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 64 and self._cancelled * 2 > len(heap):
            heap[:] = [e for e in heap if not e[2].cancelled]
            heapq.heapify(heap)
            self._cancelled = 0

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled = max(0, self._cancelled - 1)
        return heap[0][0] if heap else None

    def _fire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                self._cancelled = max(0, self._cancelled - 1)
                continue
            timer.cancelled = True  # fired: a later cancel() is a no-op
            timer.fn(timer.arg, now)
            if self._pending:
                self._send()

    # --- the turn ---------------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        """Wait at most ``timeout`` s for datagrams, hand each ready socket's batch to its
        handler, fire the due timers; what each of them queued is sent when it returns."""
        if self._pending:
            self._send()
        ready = self._sel.select(timeout)
        now = self.clock()
        if ready:
            self.stats.wakeups += 1
            for key, _ in ready:
                self._serve(key.data, now)
        heap = self._heap
        if heap and heap[0][0] <= now:
            self._fire(now)

    def _serve(self, reg: _Reg, now: float) -> None:
        """One readable socket: its batch to its handler, then what the handler queued. An
        empty batch is handed over too: a socket-like that keeps some of what it reads (the
        TUN data plane's NAT-T socket keeps ESP) may have raised events meanwhile."""
        batch = reg.read(reg.sock, self.batch)
        self.stats.received += len(batch)
        reg.handler(reg.token, batch, now)
        if self._pending:
            self._send()

    def flush(self) -> None:
        """Send what is queued now, and re-arm the loop timer: for work done outside a turn
        (an application deleting an SA, starting a handshake)."""
        if self._pending:
            self._send()
        if self._loop is not None:
            self._rearm()

    def _send(self) -> None:
        pending, self._pending = self._pending, []
        for reg in pending:
            queue, reg.out = reg.out, []
            if queue:  # empty: ``remove`` sent it already
                self._transmit(reg, queue)

    def _transmit(self, reg: _Reg, queue: list[tuple[bytes, Address]]) -> None:
        """Send ``queue`` on ``reg``'s socket; a refused datagram is lost (UDP: the engine
        retransmits) and reported, the rest of the queue still goes."""
        stats = self.stats
        if reg.batch:
            sock: Any = reg.sock
            i, total = 0, len(queue)
            while i < total:
                stats.send_calls += 1
                exc: BaseException | None = None
                try:
                    n = sock.send_batch(queue[i:] if i else queue)
                except (OSError, ValueError) as e:
                    n, exc = 0, e
                stats.sent += n
                i += n
                if i < total:  # queue[i] was refused: it is lost, the rest goes on
                    stats.send_errors += 1
                    self._refused(reg, queue[i][1], exc)
                    i += 1
            return
        sendto, errors = reg.sock.sendto, 0  # type: ignore[union-attr]
        for data, addr in queue:
            try:
                sendto(data, addr)
            except OSError as exc:
                errors += 1
                self._refused(reg, addr, exc)
        stats.send_calls += len(queue)
        stats.sent += len(queue) - errors
        stats.send_errors += errors

    def _refused(self, reg: _Reg, addr: Address, exc: BaseException | None) -> None:
        log.debug("send to %s failed: %s", addr, exc)
        if reg.on_error is not None:
            reg.on_error(reg.token, exc if isinstance(exc, OSError)
                         else OSError(errno.EIO, f"send to {addr} refused: {exc or 'kernel'}"))

    # --- driving it -------------------------------------------------------------------------

    def run_until(self, until: Callable[[], bool], deadline: float,
                  max_wait: float = 0.05) -> bool:
        """Turn until ``until()`` is true (returns True) or ``deadline`` on ``clock`` passes
        (returns False); each wait lasts at most ``max_wait`` s, so ``until`` is asked at
        least that often. The blocking way to drive the core: one thread per core."""
        clock = self.clock
        while not until():
            now = clock()
            if now >= deadline:
                return False
            wait = min(max_wait, deadline - now)
            when = self.next_deadline()
            if when is not None and when - now < wait:
                wait = max(0.0, when - now)
            self.poll(wait)
        return True

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run on ``loop`` (default: the running one) until ``detach``."""
        if self._loop is not None:
            return
        loop = loop if loop is not None else asyncio.get_running_loop()
        self._loop = loop
        for reg in self._regs.values():
            loop.add_reader(reg.fd, self._on_readable, reg)
        self.flush()

    @property
    def attached(self) -> bool:
        return self._loop is not None

    def _on_readable(self, reg: _Reg) -> None:
        self.stats.wakeups += 1
        self._guarded(reg)

    def _on_loop_timer(self) -> None:
        self._loop_timer = self._loop_timer_at = None
        self._guarded(None)

    def _guarded(self, reg: _Reg | None) -> None:
        """Serve ``reg`` (if any) and the due timers from the asyncio loop."""
        self._in_turn = True
        try:
            now = self.clock()
            if reg is not None:
                self._serve(reg, now)
            heap = self._heap
            if heap and heap[0][0] <= now:
                self._fire(now)
            if self._pending:
                self._send()
        except Exception:  # one bad datagram or callback must not stop the embedder's loop
            log.exception("error in an I/O turn")
        finally:
            self._in_turn = False
        if self._loop is not None:
            self._rearm()

    def _rearm(self) -> None:
        """One loop timer for the whole heap, at its earliest deadline."""
        when = self.next_deadline()
        if when == self._loop_timer_at:
            return
        if self._loop_timer is not None:
            self._loop_timer.cancel()
        self._loop_timer, self._loop_timer_at = None, when
        if when is not None and self._loop is not None:
            self._loop_timer = self._loop.call_later(max(0.0, when - self.clock()),
                                                     self._on_loop_timer)

    def detach(self) -> None:
        """Leave the asyncio loop: no reader, no timer handle left on it."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for reg in self._regs.values():
            loop.remove_reader(reg.fd)
        if self._loop_timer is not None:
            self._loop_timer.cancel()
        self._loop_timer = self._loop_timer_at = None

    def close(self) -> None:
        """Detach, send what is queued, drop every timer and close every socket."""
        self.detach()
        if self._pending:
            self._send()
        for sock in list(self._regs):
            self.remove(sock)
            sock.close()
        self._sel.close()
        self._heap.clear()
