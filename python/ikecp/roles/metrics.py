"""Prometheus metrics for ``ikecp segw`` and ``ikecp fap`` (``metrics = "127.0.0.1:9464"``).

Nothing here runs on the packet path. The counters the dispatcher, the sockets and the CP
providers keep anyway (``DispatchStats``, ``IoStats``, ``NatInfoProvider.answered``) are read
when Prometheus scrapes; the only per-event work is ``EventCounts.observe``, a dict increment
per engine event (a handful per handshake), fed from the role's ``on_event`` hook.

The HTTP server is ``prometheus_client``'s, on its own thread. A scrape must not walk the SA
table while the event loop changes it, so the collector asks the loop for a ``Snapshot``
(``loop.call_soon_threadsafe``) and turns the plain numbers it gets back into metric families.
Series that belong to one dispatcher carry a ``worker`` label ("0" for a single-process role)
so a multi-process role adds series instead of renaming them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..engine import IkeSa, State

#: The default endpoint when only a port is given: loopback, never all interfaces.
DEFAULT_HOST = "127.0.0.1"
#: How long a scrape waits for the event loop to answer.
SNAPSHOT_TIMEOUT = 5.0

#: Rekey events by the SA they rekey, for the engine versions that emit them.
_REKEY_EVENTS = {getattr(ev, name): kind for name, kind in (("IkeSaRekeyed", "ike"),
                                                             ("ChildSaRekeyed", "child"))
                 if hasattr(ev, name)}


def parse_address(text: str) -> tuple[str, int]:
    """``"9464"``, ``"127.0.0.1:9464"`` or ``"[::1]:9464"`` -> (host, port); a bare port
    binds loopback. Raises ``ValueError`` with the reason."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise ValueError(f"want ADDRESS:PORT or PORT, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


class EventCounts:
    """Engine events counted by kind; ``observe`` is the role's ``on_event`` hook."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        self.sa_failures: Counter[str] = Counter()
        self.child_failures: Counter[str] = Counter()
        self.rekeys: Counter[str] = Counter()
        self._up: set[int] = set()  # id() of the established SAs that have not ended

    def observe(self, sa: IkeSa, event: ev.Event) -> None:
        if isinstance(event, ev.IkeSaEstablished):
            if id(sa) not in self._up:  # not the successor of an IKE rekey
                self.counts["handshakes"] += 1
            self._up.add(id(sa))
        elif isinstance(event, ev.ChildSaEstablished):
            self.counts["child_sas"] += 1
        elif isinstance(event, ev.ChildSaFailed):
            self.child_failures[ev.failure_cause(event)] += 1
        elif isinstance(event, ev.LivenessConfirmed):
            self.counts["dpd_answered"] += 1
        elif isinstance(event, ev.SaDeleted):
            self._up.discard(id(sa))
            self.counts["deleted_by_peer" if event.by_peer else "deleted"] += 1
        elif isinstance(event, ev.SaFailed):
            cause = ev.failure_cause(event)
            if id(sa) in self._up:
                self._up.discard(id(sa))
                self.sa_failures[cause] += 1
            else:
                self.handshake_failures[cause] += 1
        elif isinstance(event, ev.PeerBinding):
            self.counts["peer_bindings"] += 1
        elif isinstance(event, ev.PublicAddressLearned):
            self.counts["nat_info_learned"] += 1
        elif type(event) in _REKEY_EVENTS:
            self.rekeys[_REKEY_EVENTS[type(event)]] += 1
            successor = getattr(event, "sa", None)  # an IKE rekey: the new SA carries on
            if successor is not None and id(sa) in self._up:
                self._up.add(id(successor))


@dataclass
class WorkerSnapshot:
    """What one dispatcher and its sockets counted, copied on the event loop."""

    sas: Counter[str] = field(default_factory=Counter)
    half_open: int = 0
    dispatch: dict[str, int] = field(default_factory=dict)
    io: dict[str, int] = field(default_factory=dict)
    retransmissions: int = 0


@dataclass
class Snapshot:
    """Everything one scrape reports; plain numbers, safe to read on another thread."""

    workers: dict[str, WorkerSnapshot] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    handshake_failures: dict[str, int] = field(default_factory=dict)
    sa_failures: dict[str, int] = field(default_factory=dict)
    child_failures: dict[str, int] = field(default_factory=dict)
    rekeys: dict[str, int] = field(default_factory=dict)
    bindings: int | None = None
    nat_info_answered: int | None = None
    data_plane: dict[str, int] = field(default_factory=dict)
    #: TUN data plane: CHILD SAs installed, and their counters summed (None: no data plane).
    child_sas: int | None = None
    installed: dict[str, int] = field(default_factory=dict)


def worker_snapshot(dispatcher: Any, io_stats: Any = None) -> WorkerSnapshot:
    """Copy the SA states and the counters of a ``Dispatcher`` (and its endpoint's
    ``IoStats``); call it on the thread that owns them."""
    w = WorkerSnapshot()
    for sa in dispatcher.sas():
        w.sas[sa.state.value] += 1
        w.retransmissions += sa.stats.retransmissions
    w.half_open = dispatcher.half_open
    w.dispatch = dataclasses.asdict(dispatcher.stats)
    if io_stats is not None:
        w.io = dataclasses.asdict(io_stats)
    return w


def events_snapshot(counts: EventCounts, snap: Snapshot) -> Snapshot:
    snap.counts = dict(counts.counts)
    snap.handshake_failures = dict(counts.handshake_failures)
    snap.sa_failures = dict(counts.sa_failures)
    snap.child_failures = dict(counts.child_failures)
    snap.rekeys = dict(counts.rekeys)
    return snap


# --- exposition ------------------------------------------------------------------------------

_DISPATCH_HELP = {
    "datagrams": "Datagrams read on the IKE and NAT-T sockets",
    "ike": "IKE messages handed to an SA",
    "keepalives": "NAT keepalives (RFC 3948) received",
    "esp": "UDP-encapsulated ESP datagrams that reached the dispatcher",
    "invalid": "Datagrams dropped as neither IKE nor ESP, or too short",
    "unknown_spi": "IKE messages for no known SA",
    "no_responder": "IKE_SA_INIT requests while not accepting new SAs",
    "half_open_refused": "IKE_SA_INIT requests dropped at max_half_open",
    "cookies_sent": "COOKIE challenges sent (RFC 7296 2.6)",
    "bad_cookies": "IKE_SA_INIT requests with a missing or wrong COOKIE while challenging",
    "misrouted": "IKE messages whose SPI names another worker (steering failed; stays 0)",
    "sas_created": "IKE SAs created",
    "sas_removed": "IKE SAs removed from the table",
}


class IkeCollector:
    """A ``prometheus_client`` collector that asks ``snapshot`` for numbers on each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot], role: str) -> None:
        self._snapshot = snapshot
        self.role = role

    def describe(self) -> list[Any]:
        return []  # no collect() at registration time: the loop may not run yet

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self._snapshot()
        role = self.role

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return CounterMetricFamily(f"ikecp_{name}", doc, labels=("role", *labels))

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(f"ikecp_{name}", doc, labels=("role", *labels))

        sas = gauge("ike_sas", "IKE SAs in the table by state", ("worker", "state"))
        half = gauge("half_open_sas", "Responder IKE SAs waiting for IKE_AUTH", ("worker",))
        retx = gauge("retransmissions_in_table",
                     "Retransmissions made by the SAs now in the table", ("worker",))
        fields = sorted({k for w in snap.workers.values() for k in w.dispatch})
        dispatch = {k: counter(f"dispatch_{k}", _DISPATCH_HELP.get(k, k.replace("_", " ")),
                               ("worker",)) for k in fields}
        io = {k: counter(f"udp_{k}", f"UDP endpoint: {k.replace('_', ' ')}", ("worker",))
              for k in ("received", "sent", "send_errors", "wakeups")}
        for worker, w in sorted(snap.workers.items()):
            for state in State:
                sas.add_metric([role, worker, state.value], w.sas.get(state.value, 0))
            half.add_metric([role, worker], w.half_open)
            retx.add_metric([role, worker], w.retransmissions)
            for k, fam in dispatch.items():
                fam.add_metric([role, worker], w.dispatch.get(k, 0))
            for k, fam in io.items():
                if k in w.io:
                    fam.add_metric([role, worker], w.io[k])
        yield sas
        yield half
        yield retx
        yield from dispatch.values()
        yield from (fam for fam in io.values() if fam.samples)

        c = snap.counts
        for name, key, doc in (
                ("handshakes", "handshakes", "IKE SAs established (IKE_SA_INIT + IKE_AUTH)"),
                ("child_sas_established", "child_sas", "CHILD_SAs established"),
                ("dpd_answered", "dpd_answered", "Liveness checks (DPD) answered by the peer"),
                ("sas_deleted", "deleted", "IKE SAs deleted by us"),
                ("sas_deleted_by_peer", "deleted_by_peer", "IKE SAs deleted by the peer"),
                ("peer_bindings", "peer_bindings",
                 "Binding reports (establishment and NAT rebinding)"),
                ("nat_info_learned", "nat_info_learned",
                 "EXTERNAL_SOURCE_IP4_NAT_INFO answers received (FAP)")):
            fam = counter(name, doc)
            fam.add_metric([role], c.get(key, 0))
            yield fam
        for name, values, doc in (
                ("handshake_failures", snap.handshake_failures,
                 "IKE SAs that failed before establishment, by cause"),
                ("sa_failures", snap.sa_failures,
                 "Established IKE SAs that failed (a dead peer: timeout), by cause"),
                ("child_sa_failures", snap.child_failures, "CHILD_SAs refused, by cause")):
            fam = counter(name, doc, ("cause",))
            for cause, n in sorted(values.items()):
                fam.add_metric([role, cause], n)
            yield fam
        fam = counter("rekeys", "Rekeys completed, by the SA rekeyed (ike, child)", ("sa",))
        for kind in ("ike", "child"):
            fam.add_metric([role, kind], snap.rekeys.get(kind, 0))
        yield fam
        if snap.bindings is not None:
            fam = gauge("bindings", "Rows in the binding registry (this instance)")
            fam.add_metric([role], snap.bindings)
            yield fam
        if snap.nat_info_answered is not None:
            fam = counter("nat_info_answered",
                          "EXTERNAL_SOURCE_IP4_NAT_INFO attributes sent in CFG_REPLY")
            fam.add_metric([role], snap.nat_info_answered)
            yield fam
        if snap.data_plane:
            fam = counter("dataplane", "Data-plane counters, by name", ("counter",))
            for name, n in sorted(snap.data_plane.items()):
                fam.add_metric([role, name], n)
            yield fam
        if snap.child_sas is not None:
            fam = gauge("dataplane_child_sas", "CHILD SAs installed in the data plane")
            fam.add_metric([role], snap.child_sas)
            yield fam
            fam = gauge("dataplane_installed",
                        "Counters of the CHILD SAs now installed, summed (drop when SAs go)",
                        ("counter",))
            for name, n in sorted(snap.installed.items()):
                fam.add_metric([role, name], n)
            yield fam


class MetricsServer:
    """The HTTP endpoint: ``start()`` binds ``address`` (``"host:port"``); ``snapshot`` runs
    on ``loop`` for each scrape. ``data_plane`` sources (name -> counters) are the hook for a
    data plane's own counters; they are read on the loop too."""

    def __init__(self, address: str, role: str, snapshot: Callable[[], Snapshot],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.host, self.port = parse_address(address)
        self._snapshot = snapshot
        self._loop = loop
        self.data_plane: dict[str, Callable[[], Mapping[str, int]]] = {}
        self.collector = IkeCollector(self._on_loop, role)
        self._server: Any = None
        self._thread: Any = None

    def _take(self) -> Snapshot:
        snap = self._snapshot()
        for source in self.data_plane.values():
            snap.data_plane.update(source())
        return snap

    def _on_loop(self) -> Snapshot:
        done: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def take() -> None:
            try:
                done.set_result(self._take())
            except BaseException as exc:  # handed to the scraping thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(take)
        return done.result(SNAPSHOT_TIMEOUT)

    def start(self) -> MetricsServer:
        from prometheus_client import (
            CollectorRegistry,
            PlatformCollector,
            ProcessCollector,
            start_http_server,
        )

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
        PlatformCollector(registry=registry)
        self._server, self._thread = start_http_server(self.port, self.host, registry)
        self.port = self._server.server_port
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


# --- the two roles ---------------------------------------------------------------------------


def _worker(role: Any) -> dict[str, WorkerSnapshot]:
    d = role.dispatcher
    if d is None:
        return {}
    driver = getattr(role, "_driver", None)  # the role's DispatchDriver, while it runs
    return {"0": worker_snapshot(d, driver.stats if driver is not None else None)}


def _data_plane(role: Any, snap: Snapshot) -> Snapshot:
    """The TUN data plane's own counters and its CHILD SAs' counters, when it runs."""
    plane = getattr(role, "dataplane", None)
    if plane is None or plane.name == "none" or role.dispatcher is None:
        return snap
    stats = dict(plane.stats())
    snap.child_sas = int(stats.pop("sas", 0))
    snap.data_plane.update(stats)
    total: Counter[str] = Counter()
    for sa in role.dispatcher.sas():
        for name, n in role.children.counters(sa).items():
            total[name] += int(n)
    snap.installed = dict(total)
    return snap


def gateway_snapshot(gw: Any, counts: EventCounts) -> Snapshot:
    """The ``Snapshot`` of a running ``Gateway`` (on its loop)."""
    snap = _data_plane(gw, events_snapshot(counts, Snapshot(workers=_worker(gw))))
    snap.bindings = len(gw.store)
    from ..cp import NatInfoProvider

    if gw.dispatcher is not None and gw.dispatcher.responder is not None:
        snap.nat_info_answered = 0
        for p in gw.dispatcher.responder.cp.providers.values():
            if isinstance(p, NatInfoProvider):
                snap.nat_info_answered += p.answered
    return snap


def femto_snapshot(fap: Any, counts: EventCounts) -> Snapshot:
    """The ``Snapshot`` of a running ``Femto`` (on its loop)."""
    return _data_plane(fap, events_snapshot(counts, Snapshot(workers=_worker(fap))))
