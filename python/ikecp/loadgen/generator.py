"""The load generator: many simulated femtocells (FAPs) handshaking with one IKEv2 responder.

Each simulated FAP is an initiator ``IkeSa`` with its own identity (``fap-{n}@lab.example``)
and its own UDP sockets (one for the IKE port, one opened when the SA floats to the NAT-T
port), so the responder sees every FAP as a distinct peer, and a NAPT in between gives each
its own mapping. The engine is sans-IO, so one worker process drives thousands of SAs on one
``IoCore`` (``ikecp.net.core``: one selector and one timer heap, run blocking); ``run`` forks
worker processes, each owning every W-th FAP, and merges what they measured.

With ``rekey_after`` each FAP, once established, rekeys its CHILD SA and then its IKE SA
(CREATE_CHILD_SA, RFC 7296 §1.3), each that many seconds after the previous step; with
``reauth_after`` it then reauthenticates (a new IKE SA, make-before-break, §2.8.3). The report
gives the latency of each kind and failures by cause.

Bounded by construction: a total handshake count, a duration after which nothing new starts,
a per-handshake time limit and a hard stop. Targets outside loopback and the lab's test
networks are refused unless the caller says it owns them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import multiprocessing
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import framing
from ..addr import Address
from ..const import NAT_KEEPALIVE, AuthMethod, ConfigAttr
from ..cp import CpRegistry, NatInfoHandler, RequestHandler
from ..engine import (
    ChildLifetime,
    ChildProposal,
    Identity,
    IkeLifetime,
    IkeProposal,
    IkeSa,
    PskAuthenticator,
    RetransmitPolicy,
    Settings,
)
from ..events import (
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    ConfigReceived,
    IkeSaEstablished,
    IkeSaRekeyed,
    NatInfoNotSupported,
    ProtocolErrorReceived,
    PublicAddressLearned,
    ReauthStarted,
    SaDeleted,
    SaFailed,
    failure_cause,
    failure_cause_of,
)
from ..net.core import Batch, IoCore, Timer

#: Where a load tool may be aimed without ``i_own_this_target``: loopback, and the ranges the
#: project's tests give to hosts in their own network namespaces (docs/net-testing.md).
TEST_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "100.64.0.0/10", "198.51.100.0/24"))

DEFAULT_PSK = b"ikecp loadgen pre-shared key"
#: Short: a load run wants a lost datagram noticed quickly, and bounded runs.
DEFAULT_RETRANSMIT = RetransmitPolicy(timeout=1.0, backoff=2.0, tries=3)


class TargetRefusedError(ValueError):
    """The target is not a test address and the caller did not claim to own it."""


def check_target(host: str, *, i_own_this_target: bool = False) -> None:
    """Refuse to aim load at anything but loopback or the lab's namespace test networks."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise TargetRefusedError(f"target must be an IP address, not {host!r}") from exc
    if i_own_this_target or any(addr in net for net in TEST_NETWORKS):
        return
    raise TargetRefusedError(
        f"{host} is neither loopback nor a namespace test address "
        "(100.64.0.0/10, 198.51.100.0/24); pass --i-own-this-target if it is your lab's")


@dataclass(frozen=True)
class LoadConfig:
    """One load run. ``rate`` set: open loop (handshakes/s, reached linearly over ``ramp``
    seconds); ``rate`` None: closed loop with ``window`` handshakes outstanding."""

    target: str = "127.0.0.1"
    port: int = 500
    natt_port: int = 4500
    count: int = 100
    duration: float = 60.0
    rate: float | None = None
    ramp: float = 0.0
    window: int = 32
    #: Distinct simulated FAPs; handshake k is made by FAP ``k % faps`` (default: ``count``).
    faps: int | None = None
    id_template: str = "fap-{n}@lab.example"
    remote_id: str | None = None
    auth: str = "psk"  # or "cert": a per-FAP ECDSA certificate from ``ca``
    psk: bytes = DEFAULT_PSK
    ike_proposal: str = "aes256gcm16-prfsha256-x25519"
    esp_proposal: str = "aes256gcm16"
    #: Source address, or a network whose hosts the FAPs use in turn (e.g. 127.1.0.0/16).
    source: str = "127.0.0.1"
    #: Put every FAP behind the userspace NAPT (``ikecp.net.relay``, on 127.0.0.1).
    nat: bool = False
    #: Send a fake NAT-D so both sides float to the NAT-T port and encapsulate.
    force_encap: bool = False
    #: Put the non-ESP marker on every IKE message, IKE_SA_INIT included: what strongSwan
    #: expects when neither of its ports is 500 (docs/interop.md).
    always_marker: bool = False
    request_inner_ip: bool = True
    #: Seconds after establishment to rekey the CHILD SA, and as long again to rekey the IKE
    #: SA; then, after ``reauth_after`` seconds, reauthenticate (None: skip).
    rekey_after: float | None = None
    reauth_after: float | None = None
    hold: float = 0.0
    teardown: bool = True
    timeout: float = 10.0
    retransmit: RetransmitPolicy = DEFAULT_RETRANSMIT
    workers: int = 1
    i_own_this_target: bool = False
    #: cert mode: a ``ikecp.lab.ca.CertAuthority`` issuing the FAP certificates and the
    #: trust anchor for the responder's certificate. Inherited by forked workers.
    ca: Any = field(default=None, compare=False, repr=False)
    #: cert mode: the AUTH method the responder signs with (14, RFC 7427, by default; a
    #: strongSwan SeGW with an ECDSA key uses 9 while we send no SIGNATURE_HASH_ALGORITHMS).
    peer_auth_method: int = AuthMethod.DIGITAL_SIGNATURE
    #: The table of a NAT this tool does not run (e.g. ``NatTopology.nat_mappings``, kernel
    #: NAPT in namespaces): inside -> outside address, read once at the end to check NAT-info.
    nat_table: Callable[[], dict[Address, Address]] | None = field(
        default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Checks every field; a bad one raises ``ConfigError`` naming it (a ValueError)."""
        from ..config import ConfigError

        def bad(name: str, problem: str) -> ConfigError:
            return ConfigError(name, problem)

        check_target(self.target, i_own_this_target=self.i_own_this_target)
        for name in ("port", "natt_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise bad(name, "must be a UDP port (1-65535)")
        for name, high in (("count", 10**8), ("window", 10**6), ("workers", 256),
                           ("faps", 10**8)):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= high:
                raise bad(name, f"must be 1-{high}")
        for name, low, top in (("duration", 0.001, 7 * 86400.0), ("timeout", 0.01, 3600.0),
                               ("rate", 0.001, 1e6), ("ramp", 0.0, 86400.0),
                               ("hold", 0.0, 7 * 86400.0)):
            number = getattr(self, name)
            if number is not None and not (math.isfinite(number) and low <= number <= top):
                raise bad(name, f"must be {low:g}-{top:g}, not {number!r}")
        for name in ("rekey_after", "reauth_after"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0 <= value <= 86400.0):
                raise bad(name, f"must be 0-86400, not {value!r}")
        if self.auth not in ("psk", "cert"):
            raise bad("auth", "must be 'psk' or 'cert'")
        if self.auth == "psk" and not self.psk:
            raise bad("psk", "must not be empty")
        if self.nat and not ipaddress.ip_address(self.target).is_loopback:
            raise bad("nat", "the userspace NAPT runs on loopback, so the target must too")
        if self.auth == "cert" and self.ca is None:
            raise bad("ca", "cert auth needs a CertAuthority in LoadConfig.ca")
        for name in ("id_template", "remote_id"):
            value = getattr(self, name)
            if value is not None and (len(value) > 253 or not value.isascii()):
                raise bad(name, "must be ASCII, at most 253 characters")
        for name, parse in (("ike_proposal", IkeProposal.parse),
                            ("esp_proposal", ChildProposal.parse)):
            try:
                parse(getattr(self, name))
            except (ValueError, KeyError) as exc:
                raise bad(name, f"bad proposal {getattr(self, name)!r}: {exc}") from None
        try:
            ipaddress.ip_network(self.source, strict=False)
        except ValueError:
            raise bad("source", f"not an IP address or network: {self.source!r}") from None

    @property
    def renewal_steps(self) -> tuple[tuple[str, float], ...]:
        """(step, seconds to wait before it) for each established FAP, in order."""
        steps: list[tuple[str, float]] = []
        if self.rekey_after is not None:
            steps += [("child rekey", self.rekey_after), ("ike rekey", self.rekey_after)]
        if self.reauth_after is not None:
            steps.append(("reauth", self.reauth_after))
        return tuple(steps)

    @property
    def hard_stop(self) -> float:
        """Seconds after the start at which a run ends whatever is still in flight."""
        renewing = sum(wait + self.timeout for _, wait in self.renewal_steps)
        return self.duration + self.timeout + renewing + self.hold + self.timeout


def identity(text: str) -> Identity:
    """An RFC822 identity for ``user@domain``, an IPv4 one for an address, else an FQDN."""
    if "@" in text:
        return Identity.rfc822(text)
    try:
        return Identity.ipv4(text)
    except ValueError:
        return Identity.fqdn(text)


def base_settings(cfg: LoadConfig) -> Settings:
    """Initiator settings shared by every simulated FAP of ``cfg`` (PSK; the identity is
    FAP 0's until ``Worker.settings_for`` replaces it)."""
    reg = CpRegistry().add_handler(NatInfoHandler())
    if cfg.request_inner_ip:
        reg.add_handler(RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS))
    return Settings(
        local_id=identity(cfg.id_template.format(n=0)),
        auth=PskAuthenticator(cfg.psk),
        remote_id=identity(cfg.remote_id) if cfg.remote_id else None,
        ike_proposals=(IkeProposal.parse(cfg.ike_proposal),),
        child_proposals=(ChildProposal.parse(cfg.esp_proposal),),
        cp=reg, force_encap=cfg.force_encap, natt_port=cfg.natt_port,
        retransmit=cfg.retransmit,
        # Renewals happen when the run says so (rekey_after, reauth_after), not by timer.
        ike_lifetime=IkeLifetime(rekey_time=None), child_lifetime=ChildLifetime(None))


# --- results ---------------------------------------------------------------------------------


@dataclass
class WorkerResult:
    """What one worker measured; ``merge`` adds them up. Times are ``time.monotonic()``."""

    started: int = 0
    established: int = 0
    child_established: int = 0
    deleted: int = 0
    done_at: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    retransmissions: int = 0
    nat_info_returned: int = 0
    nat_info_matched: int = 0
    nat_info_mismatched: list[str] = field(default_factory=list)
    nat_info_missing: int = 0
    inner_ip_assigned: int = 0
    #: Renewal step ("child rekey", "ike rekey", "reauth") -> latencies of those that worked.
    renewals: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    t_start: float = 0.0
    t_end: float = 0.0
    stopped_by: str = ""

    def merge(self, other: WorkerResult) -> None:
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "t_start":
                self.t_start = min(mine, theirs) if mine else theirs
            elif f.name == "t_end":
                self.t_end = max(mine, theirs)
            elif f.name == "stopped_by":
                self.stopped_by = ", ".join(sorted({s for s in (mine, theirs) if s}))
            elif isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, dict):
                for step, values in theirs.items():
                    mine.setdefault(step, []).extend(values)
            else:
                setattr(self, f.name, mine + theirs)


@dataclass(frozen=True)
class Progress:
    """A live snapshot from a worker."""

    worker: int
    started: int
    established: int
    in_flight: int
    failures: dict[str, int]
    retransmissions: int


# --- one worker ------------------------------------------------------------------------------

#: Free sockets kept per source address for the next FAPs.
_POOL_MAX = 4096
#: The events ``Worker._on_event`` acts on.
_WATCHED = frozenset((IkeSaEstablished, ChildSaEstablished, ChildSaFailed, PublicAddressLearned,
                      NatInfoNotSupported, ConfigReceived, SaDeleted, SaFailed, ChildSaRekeyed,
                      IkeSaRekeyed, ReauthStarted, ProtocolErrorReceived))


class _Fap:
    """One handshake in progress (or held): the SA, its sockets and where it stands.
    ``others`` are the SAs a renewal left beside ``sa`` (replaced ones until deleted, a
    reauthentication's new one until it is up)."""

    __slots__ = ("deadline", "hold_until", "n", "others", "sa", "socks", "started", "state",
                 "step", "step_started", "steps", "timer")

    def __init__(self, n: int, sa: IkeSa, started: float) -> None:
        self.n, self.sa, self.started = n, sa, started
        self.socks: dict[int, socket.socket] = {}
        self.state = "handshake"  # -> ("waiting" -> "renewing")* -> "held" -> "deleting"
        self.deadline = started
        self.hold_until = 0.0
        self.timer: Timer | None = None  # its entry in the core's timer heap
        self.others: list[IkeSa] = []
        self.steps: list[tuple[str, float]] = []
        self.step = ""
        self.step_started = 0.0


class Worker:
    """Drives this worker's share of the handshakes on real UDP sockets until done or the
    hard stop. ``index``/``of``: this worker owns handshakes k with ``k % of == index``."""

    def __init__(self, cfg: LoadConfig, index: int = 0, of: int = 1,
                 progress: Callable[[Progress], None] | None = None,
                 progress_interval: float = 0.5) -> None:
        self.cfg, self.index, self.of = cfg, index, of
        self.progress, self.progress_interval = progress, progress_interval
        self.result = WorkerResult()
        self.core = IoCore()
        self._active: dict[int, _Fap] = {}
        self._handshaking = 0
        self._base = base_settings(cfg)
        self._settings_cache: dict[int, Settings] = {}
        self._trust: Any = None
        hosts = ipaddress.ip_network(cfg.source, strict=False)
        self._sources = [str(hosts.network_address)] if hosts.num_addresses == 1 else None
        self._source_net = hosts
        self._dest: dict[int, Address] = {cfg.port: (cfg.target, cfg.port),
                                          cfg.natt_port: (cfg.target, cfg.natt_port)}
        self._relay: Any = None
        self._pool: dict[str, list[socket.socket]] = {}
        self._nat_reports: list[tuple[int, Address, tuple[str, int | None]]] = []

    # -- settings --------------------------------------------------------------------------

    def settings_for(self, n: int) -> Settings:
        """The initiator settings of FAP ``n``: its identity and, in cert mode, its own
        certificate (issued on first use)."""
        s = self._settings_cache.get(n)
        if s is None:
            name = self.cfg.id_template.format(n=n)
            changes: dict[str, Any] = {"local_id": identity(name)}
            if self.cfg.auth == "cert":
                changes.update(self._cert_auth(name))
            s = dataclasses.replace(self._base, **changes)
            if len(self._settings_cache) < 65536:
                self._settings_cache[n] = s
        return s

    def _cert_auth(self, name: str) -> dict[str, Any]:
        from .. import pki
        from ..engine.cert_auth import CertAuthenticator
        issued = self.cfg.ca.issue([name])
        if self._trust is None:
            self._trust = pki.TrustStore([issued.root])
        return {"auth": CertAuthenticator(issued.credential, self._trust),
                "peer_auth": CertAuthenticator(None, self._trust,
                                               method=self.cfg.peer_auth_method)}

    def _source(self, n: int) -> str:
        if self._sources is not None:
            return self._sources[0]
        net = self._source_net
        hosts = net.num_addresses - 2 if net.num_addresses > 2 else net.num_addresses
        offset = 1 if net.num_addresses > 2 else 0
        return str(net.network_address + offset + n % hosts)

    # -- run -------------------------------------------------------------------------------

    def run(self) -> WorkerResult:
        cfg = self.cfg
        if cfg.nat:
            from ..net.relay import NatRelay, ThreadedRelay
            routes = [(("127.0.0.1", 0), (cfg.target, cfg.port)),
                      (("127.0.0.1", 0), (cfg.target, cfg.natt_port))]
            self._relay = ThreadedRelay(NatRelay(
                routes, outside_host="127.0.0.1", idle_timeout=cfg.hard_stop + 5,
                lifetime=cfg.hard_stop + 10, max_mappings=2 * cfg.count + 16)).start()
            listen = self._relay.listen_addrs
            self._dest = {cfg.port: listen[0], cfg.natt_port: listen[1]}
        try:
            result = self._loop()
            self._verify_nat_info()
            return result
        finally:
            for fap in list(self._active.values()):
                self._close(fap)
            self._pool.clear()
            self.core.close()  # closes every socket, the pooled ones too
            if self._relay is not None:
                self._relay.stop()

    def _share(self) -> int:
        cfg = self.cfg
        return cfg.count // self.of + (1 if self.index < cfg.count % self.of else 0)

    def _due(self, elapsed: float) -> int:
        """Open loop: handshakes this worker should have started after ``elapsed`` s."""
        cfg = self.cfg
        rate = (cfg.rate or 0.0) / self.of
        ramp = cfg.ramp
        if ramp > 0 and elapsed < ramp:
            return int(rate * elapsed * elapsed / (2 * ramp)) + 1
        return int(rate * (elapsed - ramp / 2)) + 1

    def _loop(self) -> WorkerResult:
        cfg, res = self.cfg, self.result
        share = self._share()
        if cfg.auth == "cert":  # issue this worker's certificates before the clock starts
            faps = cfg.faps or cfg.count
            for k in range(self.index, min(cfg.count, faps, 65536), self.of):
                self.settings_for(k)
        # This thread only: a relay thread in the same process is not the initiator's work.
        ru0 = resource.getrusage(resource.RUSAGE_THREAD)
        t0 = res.t_start = time.monotonic()
        stop_new, hard = t0 + cfg.duration, t0 + cfg.hard_stop
        next_progress = t0 + self.progress_interval
        k = self.index  # global handshake number
        started = 0

        def tick() -> bool:
            """Before each turn of the core: start what is due, report progress; True once
            nothing is left to start or to wait for."""
            nonlocal k, started, next_progress
            now = time.monotonic()
            may_start = started < share and now < stop_new
            if not may_start and not self._active:
                res.stopped_by = "count" if started >= share else "duration"
                return True
            if may_start:
                if cfg.rate:
                    want = self._due(now - t0)
                else:
                    want = started + max(1, cfg.window // self.of) - self._handshaking
                want = min(want, share)
                while started < want and now < stop_new:
                    self._start(k, now)
                    k += self.of
                    started += 1
            if self.progress is not None and now >= next_progress:
                next_progress = now + self.progress_interval
                self.progress(self._snapshot())
            return False

        # Open loop: wake at least once per start interval.
        max_wait = min(0.05, self.of / cfg.rate) if cfg.rate else 0.05
        if not self.core.run_until(tick, hard, max_wait):
            res.stopped_by = "hard stop"
        res.started = started
        ru1 = resource.getrusage(resource.RUSAGE_THREAD)
        res.cpu_seconds = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        res.t_end = time.monotonic()
        for fap in list(self._active.values()):
            if fap.state == "handshake":
                res.failures["unfinished at hard stop"] += 1
            self._close(fap)
        if self.progress is not None:
            self.progress(self._snapshot())
        return res

    def _snapshot(self) -> Progress:
        res = self.result
        return Progress(self.index, len(res.latencies) + sum(res.failures.values())
                        + self._handshaking, res.established, self._handshaking,
                        dict(res.failures), res.retransmissions)

    # -- one handshake ---------------------------------------------------------------------

    def _start(self, k: int, now: float) -> None:
        cfg = self.cfg
        n = k % (cfg.faps or cfg.count)
        src = self._source(n)
        sa = IkeSa.initiator(self.settings_for(n), (src, cfg.port), (cfg.target, cfg.port))
        fap = _Fap(n, sa, now)
        fap.deadline = now + cfg.timeout
        self._active[id(fap)] = fap
        self._handshaking += 1
        self._flush(fap, now)

    def _sock(self, fap: _Fap, logical_port: int) -> socket.socket:
        """The FAP's socket for ``logical_port``: a free one from the pool of its source
        address (a port another FAP has finished with, as the OS would hand it out again),
        else a new one on an ephemeral port. Saves a socket/bind/epoll round per datagram
        flow on the hot path."""
        sock = fap.socks.get(logical_port)
        if sock is None:
            host = fap.sa.local[0]
            free = self._pool.get(host)
            if free:
                sock = free.pop()
                self.core.retarget(sock, (fap, logical_port))
            else:
                sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                     socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.bind((host, 0))
                self.core.add(sock, self._received, (fap, logical_port),
                              on_error=self._send_failed)
            fap.socks[logical_port] = sock
        return sock

    def _flush(self, fap: _Fap, now: float) -> None:
        """Send what the SAs queued, drain their events, and re-arm the FAP's timer."""
        send, dest = self.core.send, self._dest
        for sa in (fap.sa, *fap.others) if fap.others else (fap.sa,):
            for d in sa.datagrams_to_send(now):
                wire = d.wire()
                if self.cfg.always_marker and not d.encapsulated and d.data != NAT_KEEPALIVE:
                    wire = framing.add_marker(wire)
                send(self._sock(fap, d.local_port), wire, dest.get(d.remote[1], d.remote))
            while (ev := sa.next_event()) is not None:
                self._on_event(fap, sa, ev, now)
            if id(fap) not in self._active:
                return
        if fap.others:
            fap.others = [o for o in fap.others if not o.closed]
        when = fap.hold_until if fap.state in ("held", "waiting") else fap.deadline
        for sa in (fap.sa, *fap.others):
            t = sa.next_timer()
            if t is not None:
                when = min(when, t)
        timer = fap.timer
        if timer is None or timer.when != when:
            self.core.cancel(timer)
            fap.timer = self.core.call_at(when, self._on_timer, fap)

    def _send_failed(self, owner: tuple[_Fap | None, int], exc: OSError) -> None:
        fap = owner[0]
        if fap is not None and id(fap) in self._active:
            self._finish(fap, time.monotonic(), f"socket error: {exc.strerror or exc}")

    def _received(self, owner: tuple[_Fap | None, int], batch: Batch, now: float) -> None:
        fap, logical_port = owner
        for wire, addr in batch:
            if fap is None or id(fap) not in self._active:
                return  # late datagrams for a FAP that has finished: dropped
            if logical_port == self.cfg.natt_port or self.cfg.always_marker:
                kind, wire = framing.classify(wire)
                if kind is not framing.Kind.IKE:
                    continue
            sa = fap.sa
            if fap.others and sa.spi_i != wire[:8]:  # a renewal's other SA
                sa = next((o for o in fap.others if o.spi_i == wire[:8]), sa)
            sa.receive_datagram(wire, addr, now, logical_port)
            self._flush(fap, now)

    def _on_timer(self, fap: _Fap, now: float) -> None:
        fap.timer = None
        for sa in (fap.sa, *fap.others):
            t = sa.next_timer()
            if t is not None and t <= now:
                sa.handle_timer(now)
        if fap.state == "handshake" and now >= fap.deadline:
            self._finish(fap, now, "timeout (handshake time limit)")
        elif fap.state == "waiting" and now >= fap.hold_until:
            self._renew(fap, now)
        elif fap.state == "renewing" and now >= fap.deadline:
            self._renewed(fap, now, f"timeout ({fap.step})")
        elif fap.state == "held" and now >= fap.hold_until:
            self._release(fap, now)
        elif fap.state == "deleting" and now >= fap.deadline:
            self.result.failures["timeout (DELETE unanswered)"] += 1
            self._close(fap)
        else:
            self._flush(fap, now)

    def _on_event(self, fap: _Fap, sa: IkeSa, ev: object, now: float) -> None:
        if type(ev) not in _WATCHED:
            return  # NatDetected, DatagramDropped, ...: nothing to count
        if sa is not fap.sa or fap.state == "renewing":
            self._on_renewal_event(fap, sa, ev, now)
            return
        res = self.result
        if isinstance(ev, IkeSaEstablished):
            if fap.state == "handshake":  # not the SA an IKE rekey made
                res.established += 1
        elif isinstance(ev, ChildSaEstablished):
            res.child_established += 1
            self._handshake_done(fap, now)
        elif isinstance(ev, ChildSaFailed):
            res.failures[failure_cause(ev)] += 1
            self._handshake_done(fap, now, ok=False)
        elif isinstance(ev, PublicAddressLearned):
            self._note_nat_info(fap, ev)
        elif isinstance(ev, NatInfoNotSupported):
            res.nat_info_missing += 1
        elif isinstance(ev, ConfigReceived):
            if any(a.type == ConfigAttr.INTERNAL_IP4_ADDRESS and a.value for a in ev.attributes):
                res.inner_ip_assigned += 1
        elif isinstance(ev, SaDeleted):
            if fap.state == "deleting":
                res.deleted += 1
            self._close(fap)
        elif isinstance(ev, SaFailed):
            if fap.state == "handshake":
                self._finish(fap, now, failure_cause(ev))
            else:
                res.failures[f"after establishment: {failure_cause(ev)}"] += 1
                self._close(fap)

    def _note_nat_info(self, fap: _Fap, ev: PublicAddressLearned) -> None:
        """Keep what the SeGW reported with the socket it describes; ``_verify_nat_info``
        compares them with the NAT's table once, at the end (one table read per run)."""
        self.result.nat_info_returned += 1
        sock = fap.socks.get(self.cfg.natt_port) or fap.socks.get(self.cfg.port)
        if sock is not None:
            host, port = sock.getsockname()[:2]
            self._nat_reports.append((fap.n, (host, port), (ev.address, ev.port)))

    def _verify_nat_info(self) -> None:
        res = self.result
        if self._relay is not None:
            table = self._relay.mappings()
        elif self.cfg.nat_table is not None:
            table = self.cfg.nat_table()
        else:
            table = None  # no NAT: the SeGW must have seen our own socket
        for n, inside, reported in self._nat_reports:
            seen = inside if table is None else table.get(inside)
            if reported == seen:
                res.nat_info_matched += 1
            elif len(res.nat_info_mismatched) < 20:
                res.nat_info_mismatched.append(
                    f"fap {n}: reported {reported[0]}:{reported[1]}, NAT used {seen}")
        self._nat_reports.clear()

    def _handshake_done(self, fap: _Fap, now: float, ok: bool = True) -> None:
        if fap.state != "handshake":
            return
        self._handshaking -= 1
        res = self.result
        res.retransmissions += fap.sa.stats.retransmissions
        if ok:
            res.done_at.append(now)
            res.latencies.append(now - fap.started)
            fap.steps = list(self.cfg.renewal_steps)
        self._next_step(fap, now)

    # -- renewals: CHILD rekey, IKE rekey, reauthentication --------------------------------

    def _next_step(self, fap: _Fap, now: float) -> None:
        if fap.steps:
            fap.step, wait = fap.steps.pop(0)
            fap.state, fap.hold_until = "waiting", now + wait
            if wait <= 0:
                self._renew(fap, now)
        elif self.cfg.hold > 0:
            fap.state, fap.hold_until = "held", now + self.cfg.hold
        else:
            self._release(fap, now)

    def _renew(self, fap: _Fap, now: float) -> None:
        """Start the FAP's next renewal step; its completion shows in the events."""
        sa = fap.sa
        if not sa.established:
            self._renewed(fap, now, f"{fap.step}: SA not established")
            return
        fap.state, fap.step_started, fap.deadline = "renewing", now, now + self.cfg.timeout
        if fap.step == "child rekey":
            sa.rekey_child()
        elif fap.step == "ike rekey":
            sa.rekey()
        else:
            fap.others.append(sa.reauthenticate())
        self._flush(fap, now)

    def _renewed(self, fap: _Fap, now: float, failure: str | None = None) -> None:
        """A renewal step ended: note its latency or its failure, go on with the next."""
        if fap.state != "renewing":
            return
        if failure is None:
            self.result.renewals.setdefault(fap.step, []).append(now - fap.step_started)
        else:
            self.result.failures[failure] += 1
            fap.steps.clear()
        self._next_step(fap, now)

    def _on_renewal_event(self, fap: _Fap, sa: IkeSa, ev: object, now: float) -> None:
        """Events while a renewal runs, or from an SA beside the FAP's current one."""
        step, current = fap.step, sa is fap.sa
        if isinstance(ev, ChildSaRekeyed) and current and step == "child rekey":
            self._renewed(fap, now)
        elif isinstance(ev, ChildSaFailed) and current and step == "child rekey":
            self._renewed(fap, now, f"child rekey: {failure_cause(ev)}")
        elif isinstance(ev, IkeSaRekeyed) and current and isinstance(ev.sa, IkeSa):
            fap.others.append(sa)  # the old SA sends its DELETE
            fap.sa = ev.sa
            self._renewed(fap, now)
        elif isinstance(ev, ProtocolErrorReceived) and current and step == "ike rekey":
            self._renewed(fap, now, f"ike rekey: {failure_cause_of(ev.notify_type)}")
        elif isinstance(ev, ChildSaEstablished) and not current and step == "reauth" \
                and sa.established:
            fap.others.remove(sa)
            fap.others.append(fap.sa)  # deletes itself now that its successor is up
            fap.sa = sa
            self._renewed(fap, now)
        elif isinstance(ev, SaFailed):
            if current:
                self._finish(fap, now, f"{step or 'renewal'}: {failure_cause(ev)}")
            elif step == "reauth" and fap.state == "renewing":
                self._renewed(fap, now, f"reauth: {failure_cause(ev)}")
        elif isinstance(ev, SaDeleted) and current and not ev.replaced:
            self._finish(fap, now, f"{step}: deleted by the peer")
        elif isinstance(ev, PublicAddressLearned):
            self._note_nat_info(fap, ev)

    def _release(self, fap: _Fap, now: float) -> None:
        """End of the hold: DELETE the SA (teardown) or just forget it."""
        if self.cfg.teardown and fap.sa.established:
            fap.state, fap.deadline = "deleting", now + self.cfg.timeout
            fap.sa.delete()
            self._flush(fap, now)
        else:
            self._close(fap)

    def _finish(self, fap: _Fap, now: float, cause: str) -> None:
        """A handshake failed: count the cause and drop everything of it."""
        if fap.state == "handshake":
            self._handshaking -= 1
            self.result.retransmissions += fap.sa.stats.retransmissions
        self.result.failures[cause] += 1
        self._close(fap)

    def _close(self, fap: _Fap) -> None:
        if self._active.pop(id(fap), None) is None:
            return
        self.core.cancel(fap.timer)
        fap.timer = None
        host = fap.sa.local[0]  # the address every socket of this FAP is bound to
        for sock in fap.socks.values():
            free = self._pool.setdefault(host, [])
            if len(free) < _POOL_MAX:
                self.core.retarget(sock, (None, 0))
                free.append(sock)
            else:
                self.core.remove(sock)
                sock.close()
        fap.socks.clear()


# --- several workers -------------------------------------------------------------------------


def _worker_main(cfg: LoadConfig, index: int, of: int, queue: Any) -> None:
    def progress(p: Progress) -> None:
        queue.put(("progress", p))
    try:
        queue.put(("result", index, Worker(cfg, index, of, progress).run()))
    except BaseException as exc:  # reported to the parent, which fails the run
        queue.put(("error", index, f"{type(exc).__name__}: {exc}"))


def run(cfg: LoadConfig, progress: Callable[[Progress], None] | None = None) -> WorkerResult:
    """Run the load: in this process when ``cfg.workers == 1``, else in forked workers."""
    if cfg.workers == 1:
        return Worker(cfg, progress=progress).run()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(cfg, i, cfg.workers, queue), daemon=True)
             for i in range(cfg.workers)]
    for p in procs:
        p.start()
    total = WorkerResult()
    errors: list[str] = []
    pending = cfg.workers
    deadline = time.monotonic() + cfg.hard_stop + 30
    try:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append("workers did not report before the hard stop")
                break
            try:
                item = queue.get(timeout=min(left, 1.0))
            except Exception:  # queue.Empty: check the workers are alive
                if not any(p.is_alive() for p in procs):
                    errors.append("a worker died without reporting")
                    break
                continue
            if item[0] == "progress":
                if progress is not None:
                    progress(item[1])
            elif item[0] == "result":
                total.merge(item[2])
                pending -= 1
            else:
                errors.append(f"worker {item[1]}: {item[2]}")
                pending -= 1
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    if errors:
        raise RuntimeError("; ".join(errors))
    return total

