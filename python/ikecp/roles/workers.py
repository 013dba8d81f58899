"""A SeGW on every core: one supervisor, N worker processes sharing the IKE and NAT-T ports.

The supervisor opens, for each listen address, N sockets on the IKE port and N on the NAT-T
port with ``SO_REUSEPORT`` and attaches the steering program of ``ikecp.net.reuseport``: the
kernel hands each datagram to the socket of the worker whose index the SA's SPI carries
(responder SPI; the initiator SPI for IKE_SA_INIT), so every message of an SA reaches the
process that holds it, also after the float to the NAT-T port and after a NAT rebinding.
Worker *i* gets the *i*-th socket of each group, allocates SPIs carrying *i*, hands out inner
addresses from the *i*-th slice of the pool, and derives its COOKIE secrets from one key all
workers share.

The supervisor keeps a copy of every socket, so a group never changes while the SeGW runs:
a crashed worker's socket stays in place (datagrams for it wait in its buffer) and its
replacement takes the same sockets. It is also the binding store's only writer: workers send
their binding changes (``ikecp.roles.binding_writer``) once per loop turn, and the supervisor
writes what arrived in one transaction. When a worker dies, its rows are closed at once
("down", reason "worker N exited ...": its SAs died with it; their peers get INVALID_IKE_SPI
and start over) and the worker is started again. SIGTERM or SIGINT stops every worker
cleanly (each DELETEs its SAs, as a single-process SeGW does), then the supervisor releases
the store.

A worker is ``python -m ikecp.roles.workers FD``: FD is its end of the control socket, on
which it reads its ``WorkerSpec`` and then serves, sends binding changes and answers
snapshot requests. It dies with the supervisor (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import DEFAULT_BINDINGS, SegwConfig
from ..engine import Settings
from ..net import reuseport
from ..net.udp import UdpEndpoint
from .binding_writer import BindingFront, Op, apply
from .bindings import SqlBindingStore, open_store
from .dispatch import Dispatcher
from .gateway import COOKIE_SECRET_LIFETIME, Gateway
from .instance_lock import InstanceLock
from .metrics import EventCounts, MetricsServer, Snapshot, WorkerSnapshot, gateway_snapshot

log = logging.getLogger("ikecp.segw")

_LEN = struct.Struct("!I")
#: Largest control message accepted (a batch of binding changes from one loop turn).
MAX_MESSAGE = 64 << 20
#: Seconds a new worker may take to import, bind and say it is ready.
READY_TIMEOUT = 60.0
#: A crashed worker is started again after this delay, doubled per crash in the last
#: minute, at most ``RESTART_MAX``.
RESTART_DELAY, RESTART_MAX = 0.5, 30.0
#: How long a metrics scrape waits for the workers' numbers.
SNAPSHOT_WAIT = 2.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class WorkerSpec:
    """What worker ``index`` of ``count`` needs: the config, the shared COOKIE key and the
    descriptors of its sockets, by (address, port)."""

    index: int
    count: int
    config: SegwConfig
    cookie_key: bytes
    sockets: dict[tuple[str, int], int]
    log_level: int = logging.WARNING


def _frame(msg: object) -> bytes:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


async def _receive(reader: asyncio.StreamReader) -> Any:
    """One control message; the peer is our own process (parent or child), never the net."""
    (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if size > MAX_MESSAGE:
        raise ValueError(f"control message of {size} octets")
    return pickle.loads(await reader.readexactly(size))


# --- the supervisor --------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    waiting: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    crashes: list[float] = field(default_factory=list)
    started: int = 0


class Supervisor:
    """``await sup.start()`` ... ``await sup.stop()``: N workers serving one SeGW config."""

    def __init__(self, config: SegwConfig, workers: int, *,
                 log_level: int = logging.WARNING) -> None:
        if not 1 <= workers <= reuseport.MAX_WORKERS:
            raise ValueError(f"workers must be 1-{reuseport.MAX_WORKERS}")
        self.config = config
        self.count = workers
        self.log_level = log_level
        self._stream = open(config.events, "a", encoding="utf-8") if config.events \
            else None  # noqa: SIM115
        # Shared by processes: a file (the CLI's default) unless the config names a store.
        self.store: SqlBindingStore = open_store(config.bindings or DEFAULT_BINDINGS,
                                                 instance=config.instance, stream=self._stream)
        self.cookie_key = os.urandom(32)
        self.workers = [_Worker(i) for i in range(workers)]
        self._groups: dict[tuple[str, int], list[socket.socket]] = {}
        self._owner: dict[str, int] = {}  # SPIr (hex) of each row -> the worker that wrote it
        self._pending: list[tuple[int, list[Op]]] = []
        self._write_soon = False
        self._lock: InstanceLock | None = None
        self._heart: asyncio.Task[None] | None = None
        self._stopping = False
        self._seq = 0
        self.ports = (0, 0)

    async def start(self) -> None:
        """Bind the socket groups, take the store's lock, close rows a crash left, start the
        workers and wait until each serves."""
        cfg = self.config
        path = self.store.lock_file()
        lock = InstanceLock(path) if path is not None else None
        self._groups, ports = reuseport.open_groups(cfg.listen, (cfg.port, cfg.natt_port),
                                                    self.count)
        try:
            if lock is not None:
                lock.acquire()
        except BaseException:
            self._close_groups()
            raise
        self._lock = lock
        self.ports = (ports[0], ports[-1])
        with self.store.batch():
            for b in self.store.all():
                self.store.remove(b.spi_r, "stale at startup")
        self.store.claim(os.getpid())
        try:
            await asyncio.gather(*(self._spawn(w) for w in self.workers))
        except BaseException:
            await self.stop(delete=False)
            raise
        period = min(5.0, cfg.binding_expiry / 4)
        self._heart = asyncio.get_running_loop().create_task(self._heartbeat(period))
        log.info("SeGW %s: %d workers on %s ports %d/%d, pool %s", cfg.identity, self.count,
                 ", ".join(cfg.listen), *self.ports, cfg.pool)

    async def _spawn(self, w: _Worker) -> None:
        ours, theirs = socket.socketpair()
        fds = {key: socks[w.index].fileno() for key, socks in self._groups.items()}
        argv = [sys.executable, "-m", "ikecp.roles.workers", "--index", str(w.index),
                str(theirs.fileno()), str(os.getpid())]
        try:
            w.proc = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(theirs.fileno(), *fds.values()), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        reader, w.writer = await asyncio.open_unix_connection(sock=ours)
        w.writer.write(_frame(WorkerSpec(w.index, self.count, self.config, self.cookie_key,
                                         fds, self.log_level)))
        try:
            first = await asyncio.wait_for(_receive(reader), READY_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as exc:
            w.proc.kill()
            await w.proc.wait()
            raise RuntimeError(f"worker {w.index} did not start "
                               f"(exit {w.proc.returncode})") from exc
        if first[0] != "ready":
            await w.proc.wait()
            raise RuntimeError(f"worker {w.index} did not start: {first[1]}")
        w.started += 1
        w.task = asyncio.get_running_loop().create_task(self._serve(w, reader))

    async def _serve(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        """Read worker ``w``'s messages until it goes; then see why."""
        try:
            while True:
                msg = await _receive(reader)
                if msg[0] == "ops":
                    self._pending.append((w.index, msg[1]))
                    if not self._write_soon:
                        self._write_soon = True
                        asyncio.get_running_loop().call_soon(self._write)
                elif msg[0] == "initial_contact":  # the peer's SAs on other workers go too
                    self._write()
                    for other in self.workers:
                        if other is not w and other.writer is not None \
                                and not other.writer.is_closing():
                            other.writer.write(_frame(msg))
                elif msg[0] == "snapshot":
                    future = w.waiting.pop(msg[1], None)
                    if future is not None and not future.done():
                        future.set_result(msg[2:])
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, pickle.PickleError):
            pass
        assert w.proc is not None and w.writer is not None
        w.writer.close()
        code = await w.proc.wait()
        self._write()  # what it sent before it went
        for future in w.waiting.values():
            future.cancel()
        w.waiting.clear()
        if not self._stopping:
            self._crashed(w, code)

    def _write(self) -> None:
        """Everything the workers sent since the last turn, in one transaction."""
        self._write_soon = False
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            with self.store.batch():
                for index, ops in pending:
                    apply(self.store, ops)
                    self._track(index, ops)
        except Exception:
            log.exception("binding registry: changes from the workers not written")

    def _track(self, index: int, ops: list[Op]) -> None:
        owner = self._owner
        for op in ops:
            if op[0] == "update":
                owner[op[1].spi_r.hex()] = index
            elif op[0] == "rekey":
                owner.pop(op[1].hex(), None)
                owner[op[2].spi_r.hex()] = index
            elif op[0] == "remove":
                owner.pop(op[1], None)

    def _crashed(self, w: _Worker, code: int) -> None:
        """Worker ``w`` exited on its own: its SAs are gone, so are its rows; start it again."""
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        reason = f"worker {w.index} exited ({how}): its SAs are gone"
        rows = [spi for spi, i in self._owner.items() if i == w.index]
        try:
            with self.store.batch():
                for spi in rows:
                    self.store.remove(spi, reason)
                    del self._owner[spi]
        except Exception:
            log.exception("binding registry: rows of worker %d not closed", w.index)
        now = time.monotonic()
        w.crashes = [t for t in w.crashes if now - t < 60.0] + [now]
        delay = min(RESTART_MAX, RESTART_DELAY * 2 ** (len(w.crashes) - 1))
        log.error("%s; %d bindings closed; starting it again in %.1f s", reason, len(rows),
                  delay)
        asyncio.get_running_loop().create_task(self._restart(w, delay))

    async def _restart(self, w: _Worker, delay: float) -> None:
        while not self._stopping:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(w)
                log.warning("worker %d started again (pid %d)", w.index,
                            w.proc.pid if w.proc else -1)
                return
            except Exception as exc:
                delay = min(RESTART_MAX, delay * 2)
                log.error("worker %d: %s; trying again in %.1f s", w.index, exc, delay)

    async def _heartbeat(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                self.store.heartbeat()
            except Exception:
                log.exception("binding registry: heartbeat not written")

    def alive(self) -> list[int]:
        """Indices of the workers running now."""
        return [w.index for w in self.workers
                if w.proc is not None and w.proc.returncode is None and w.task is not None
                and not w.task.done()]

    async def snapshot(self) -> Snapshot:
        """Every live worker's counters (as a single-process SeGW reports them, one
        ``worker`` label each) and the events they counted, summed."""
        loop = asyncio.get_running_loop()
        asked: list[tuple[_Worker, asyncio.Future[Any]]] = []
        for w in self.workers:
            if w.index in self.alive() and w.writer is not None:
                self._seq += 1
                future = loop.create_future()
                w.waiting[self._seq] = future
                w.writer.write(_frame(("snapshot", self._seq)))
                asked.append((w, future))
        if asked:
            await asyncio.wait([f for _, f in asked], timeout=SNAPSHOT_WAIT)
        snap = Snapshot()
        totals: dict[str, dict[str, int]] = {}
        answered = 0
        for w, future in asked:
            if not future.done() or future.cancelled():
                continue
            worker, counts, nat_info = future.result()
            snap.workers[str(w.index)] = worker
            for name, values in counts.items():
                total = totals.setdefault(name, {})
                for k, v in values.items():
                    total[k] = total.get(k, 0) + v
            answered += nat_info or 0
        for name, values in totals.items():
            setattr(snap, name, values)
        snap.nat_info_answered = answered
        self._write()
        snap.bindings = len(self.store)
        return snap

    async def stop(self, timeout: float = 3.0, *, delete: bool = True) -> None:
        """Stop every worker (each DELETEs its SAs within ``timeout`` s), write what they
        sent, close what is left, release the store."""
        self._stopping = True
        if self._heart is not None:
            self._heart.cancel()
        running = [w for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for w in running:
            if w.writer is not None and not w.writer.is_closing():
                w.writer.write(_frame(("stop", timeout if delete else 0.0)))
        tasks = [w.task for w in running if w.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 15.0)
        for w in running:
            assert w.proc is not None
            if w.proc.returncode is None:
                log.error("worker %d did not stop: killed", w.index)
                w.proc.kill()
                await w.proc.wait()
        self._write()
        if delete:
            with self.store.batch():
                for b in self.store.all():
                    self.store.remove(b.spi_r, "shutdown (peer did not answer DELETE)")
            self.store.release()
        self._close_groups()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.store.close()
        if self._stream is not None:
            self._stream.close()
        log.info("SeGW stopped (%d workers)", self.count)

    def _close_groups(self) -> None:
        for socks in self._groups.values():
            for s in socks:
                s.close()
        self._groups = {}


class SupervisorMetrics(MetricsServer):
    """The metrics endpoint of a supervisor: each scrape asks the workers."""

    def __init__(self, address: str, supervisor: Supervisor,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(address, "segw", Snapshot, loop)
        self._supervisor = supervisor

    def _on_loop(self) -> Snapshot:
        future = asyncio.run_coroutine_threadsafe(self._supervisor.snapshot(), self._loop)
        return future.result(SNAPSHOT_WAIT + 3.0)


# --- a worker --------------------------------------------------------------------------------


class WorkerGateway(Gateway):
    """The gateway of worker ``spec.index``: adopted sockets, tagged SPIs, its share of the
    pool and of the DoS limits, COOKIE secrets from the shared key (the version follows the
    monotonic clock, which every process of the host shares)."""

    def __init__(self, spec: WorkerSpec, registry: BindingFront,
                 tell: Callable[[tuple[Any, ...]], None], **kwargs: Any) -> None:
        self.spec = spec
        self.tell = tell
        self._cookie_version = -1
        super().__init__(spec.config, store=registry, **kwargs)

    async def start(self) -> None:
        await super().start()
        assert self.dispatcher is not None
        self._rotate_cookie(self.dispatcher, self.clock())

    def _endpoint(self) -> UdpEndpoint:
        socks = {key: socket.socket(fileno=fd) for key, fd in self.spec.sockets.items()}
        ports: list[int] = []
        for _, port in socks:
            if port not in ports:
                ports.append(port)
        return _Adopted(socks, list(self.config.listen), ports)

    def _settings(self, natt: int) -> Settings:
        return self.config.settings(natt, worker=(self.spec.index, self.spec.count))

    def _dispatcher_options(self) -> dict[str, Any]:
        count = self.spec.count
        limits = self.config.limits()
        for name in ("max_half_open", "max_half_open_ip"):
            limits[name] = max(1, -(-limits[name] // count))
        for name in ("cookie_threshold", "cookie_threshold_ip"):
            limits[name] = -(-limits[name] // count)
        return {**limits, "worker": (self.spec.index, count),
                "cookie_key": self.spec.cookie_key}

    def _initial_contact_elsewhere(self, peer_id: object, reason: str) -> None:
        self.tell(("initial_contact", peer_id, reason))

    def peer_restarted(self, peer_id: object, reason: str) -> None:
        """Another worker got INITIAL_CONTACT from ``peer_id``: drop its SAs here too."""
        if self.drop_identity(peer_id, reason) and self._driver is not None:
            self._driver.flush()

    def _rotate_cookie(self, d: Dispatcher, now: float) -> None:
        version = int(now // COOKIE_SECRET_LIFETIME) & 0xFFFF
        if version != self._cookie_version:
            d.rotate_cookie_secret(version)
            self._cookie_version = version


class _Adopted(UdpEndpoint):
    """``UdpEndpoint`` on sockets the supervisor opened."""

    def __init__(self, socks: dict[tuple[str, int], socket.socket], hosts: list[str],
                 ports: list[int]) -> None:
        self._given = socks
        super().__init__(hosts, ports)

    def _open(self, host: str, port: int) -> socket.socket:
        sock = self._given.pop((host, port))
        sock.setblocking(False)
        return sock


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the supervisor dies (Linux), as one crashed SeGW."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


async def _serve_worker(ctrl: socket.socket) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=ctrl)
    spec: WorkerSpec = await _receive(reader)
    logging.basicConfig(level=spec.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s[worker {spec.index}]: "
                               "%(message)s")
    gone = False

    def send(ops: list[Op]) -> None:
        if not gone:
            writer.write(_frame(("ops", ops)))

    counts = EventCounts() if spec.config.metrics else None
    def tell(msg: tuple[Any, ...]) -> None:
        if not gone:
            writer.write(_frame(msg))

    gw = WorkerGateway(spec, BindingFront(sink=send, instance=spec.config.instance or ""),
                       tell, on_event=counts.observe if counts is not None else None)
    try:
        await gw.start()
    except Exception as exc:
        writer.write(_frame(("error", f"{type(exc).__name__}: {exc}")))
        await writer.drain()
        return 1
    writer.write(_frame(("ready", os.getpid())))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    timeout = 3.0
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def control() -> None:
        nonlocal timeout
        while True:
            msg = await _receive(reader)
            if msg[0] == "stop":
                timeout = msg[1]
                stop.set()
            elif msg[0] == "initial_contact":
                gw.peer_restarted(msg[1], msg[2])
            elif msg[0] == "snapshot":
                writer.write(_frame(("snapshot", msg[1], *_snapshot(gw, counts))))

    ctl = loop.create_task(control())
    stopper = loop.create_task(stop.wait())
    await asyncio.wait([ctl, stopper], return_when=asyncio.FIRST_COMPLETED)
    if ctl.done():  # the supervisor went away: so does this worker, at once
        gone = True
        await gw.stop(delete=False)
        return 1
    ctl.cancel()
    await gw.stop(timeout, delete=timeout > 0)
    writer.write(_frame(("bye",)))
    await writer.drain()
    writer.close()
    return 0


def _snapshot(gw: Gateway, counts: EventCounts | None
              ) -> tuple[WorkerSnapshot, dict[str, dict[str, int]], int]:
    snap = gateway_snapshot(gw, counts or EventCounts())
    worker = next(iter(snap.workers.values()), WorkerSnapshot())
    return worker, {"counts": snap.counts, "handshake_failures": snap.handshake_failures,
                    "sa_failures": snap.sa_failures, "child_failures": snap.child_failures,
                    "rekeys": snap.rekeys}, snap.nat_info_answered or 0


def main(argv: list[str]) -> int:
    """``--index N FD PARENT``: serve as a worker (the index only names the process)."""
    ctrl_fd, parent = int(argv[-2]), int(argv[-1])
    _die_with_parent(parent)
    return asyncio.run(_serve_worker(socket.socket(fileno=ctrl_fd)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
