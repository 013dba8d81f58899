"""The security gateway (SeGW): many FAPs at once on real sockets.

Glue between a ``Dispatcher`` on a ``DispatchDriver`` and a binding store: PSK,
certificate or application-supplied authentication, inner IPv4 addresses from a pool,
EXTERNAL_SOURCE_IP4_NAT_INFO answers (both come from the CP providers that
``SegwConfig.settings`` registers, next to the application's own; after a NAT rebinding the
new public address is pushed to the FAP in CFG_SET), a binding per established SA kept
current through NAT rebinding, removed on DELETE, failure, expiry, or when the same
authenticated identity starts over with INITIAL_CONTACT (RFC 7296 §2.4). Each change also
goes to ``on_binding``; a deferred CP value is answered as soon as it is settled.
``stop()`` deletes every SA with an INFORMATIONAL DELETE and waits (bounded) for the answers,
so each binding leaves the store through the history and the event stream, not silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TextIO

from ..config import ConfigError, SegwConfig, plugins
from ..const import NotifyType
from ..cp import AttributeProvider
from ..dataplane import DataPlane, DataPlaneEvent, NoDataPlane
from ..dataplane.children import ChildTracker
from ..engine import IkeSa, Settings
from ..events import (
    AuthenticationFailed,
    BindingChanged,
    ChildSaFailed,
    ConfigSetAnswered,
    CpValueDeferred,
    Event,
    IkeSaEstablished,
    IkeSaRekeyed,
    InitialContact,
    LivenessConfirmed,
    NatDetected,
    PeerBinding,
    SaDeleted,
    SaFailed,
    SaFailure,
)
from ..keylog import KeyLog
from ..net.udp import DispatchDriver, UdpEndpoint
from .authlog import AuthFailureLog
from .binding_writer import BindingFront
from .bindings import default_instance, open_store
from .callback import call
from .dispatch import Dispatcher
from .instance_lock import InstanceLock
from .store import Binding, BindingStore, MemoryBindingStore

log = logging.getLogger("ikecp.segw")


#: Seconds between COOKIE secret changes (a cookie stays valid for one more period).
COOKIE_SECRET_LIFETIME = 300.0
#: DELETE requests unanswered at once while shutting down.
SHUTDOWN_WINDOW = 256
#: Dispatcher counters of refused unauthenticated requests, as the periodic report names them.
_REFUSALS = {"half_open_refused": "IKE_SA_INIT over a half-open cap",
             "bad_cookies": "wrong COOKIEs", "oversized": "oversized IKE_SA_INIT",
             "too_many_payloads": "IKE_SA_INIT with too many payloads or a bad chain"}


class Gateway:
    """A SeGW: ``await gw.start()`` ... ``await gw.stop()`` (or ``async with``).

    ``config`` is a validated ``SegwConfig`` (built in code or read by
    ``ikecp.config.load_segw``); its ``auth`` may carry an ``Authenticator`` of the
    application's own. ``providers``: the application's CP providers (``ikecp.cp``), asked
    after the configured ones (one for a configured type replaces it). ``store``: where the
    bindings go (default: what ``config.bindings`` names, else ``MemoryBindingStore``: no
    file); changes reach it grouped, one transaction per loop turn (``BindingFront``).
    Callbacks run on the event loop: ``on_binding(BindingChanged)`` for every change
    of the binding table, ``on_sa_failed(SaFailure)`` for failed authentications, refused
    CHILD SAs and dead IKE SAs, ``on_event(sa, event)`` for every engine event. Bad input
    raises ``ConfigError`` here, not at ``start``.
    """

    def __init__(self, config: SegwConfig, *, providers: Iterable[AttributeProvider] = (),
                 store: BindingStore | BindingFront | None = None,
                 on_binding: Callable[[BindingChanged], None] | None = None,
                 on_sa_failed: Callable[[SaFailure], None] | None = None,
                 on_event: Callable[[IkeSa, Event], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(config, SegwConfig):
            raise ConfigError("config", f"must be a SegwConfig, not {type(config).__name__}")
        self.config = config
        self.providers = plugins("providers", providers)
        # Built now so that bad input is a ConfigError here; a restart builds afresh.
        self._prebuilt: Settings | None = config.settings(providers=self.providers)
        if store is not None and not isinstance(store, (BindingFront, BindingStore)):
            raise ConfigError("store", f"{type(store).__name__} is not a BindingStore")
        self._own_store = store is None
        self._stream: TextIO | None = None
        if store is None:
            if config.events:
                self._stream = open(config.events, "a", encoding="utf-8")  # noqa: SIM115
            instance = config.instance or default_instance()
            store = MemoryBindingStore(instance=instance, stream=self._stream) \
                if config.bindings is None else \
                open_store(config.bindings, instance=instance, stream=self._stream)
        # Changes reach the store grouped, one transaction per loop turn (binding_writer).
        self.store = store if isinstance(store, BindingFront) else BindingFront(store)
        self.keylog = KeyLog(config.keylog) if config.keylog else None
        self.on_binding = on_binding
        self.on_sa_failed = on_sa_failed
        self.on_event = on_event
        self.clock = clock
        self.dispatcher: Dispatcher | None = None
        self._driver: DispatchDriver | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._seen: dict[bytes, int] = {}
        self._counted: dict[bytes, dict[str, object]] = {}  # ESP counters last written
        self._cookie_rotated = 0.0
        self._stopping = False
        self._auth_log = AuthFailureLog(log)
        self._lock: InstanceLock | None = None
        self._refused: dict[str, int] = {}
        self.dataplane: DataPlane = NoDataPlane()
        self.children = ChildTracker(self.dataplane)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the sockets, take the store's lock and serve. Only then are bindings left
        by a previous run that ended without a clean shutdown closed (their SAs no longer
        exist): a second start that fails (ports or store in use) leaves the running
        SeGW's rows alone."""
        self._stopping = False
        cfg = self.config
        path = self.store.lock_file()
        lock = InstanceLock(path) if path is not None else None
        endpoint = self._endpoint()
        try:
            if lock is not None:
                lock.acquire()
            port, natt = endpoint.ports
            settings = replace(self._settings(natt), events=self._interest())
        except BaseException:
            endpoint.close()
            if lock is not None:
                lock.release()
            raise
        self._lock = lock
        for b in self.store.all():
            self._remove(b.spi_r, "stale at startup")
        self.store.claim(os.getpid())
        self.dispatcher = Dispatcher(settings, cfg.listen[0], port=port, natt_ports={natt},
                                     **self._dispatcher_options())
        self.dispatcher.take_active()  # the sweep visits only SAs that spoke: track them
        self._driver = DispatchDriver(self.dispatcher, endpoint, self._on_events, clock=self.clock)
        self._driver.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        log.info("SeGW %s listening on %s ports %d/%d, pool %s", cfg.identity,
                 ", ".join(cfg.listen), port, natt, cfg.pool)

    def _endpoint(self) -> UdpEndpoint:
        """One socket per address and port; with ``dataplane = "tun"`` the data plane owns
        the NAT-T socket of the (single) listen address."""
        cfg = self.config
        if cfg.dataplane != "tun":
            log.info('dataplane "none": CHILD SAs are negotiated but carry no traffic')
            # Batched: one recvmmsg/sendmmsg per wakeup for all the FAPs' datagrams.
            return UdpEndpoint(cfg.listen, (cfg.port, cfg.natt_port), batch=True)
        from ..dataplane.tun import PlaneEndpoint, TunDataPlane

        plane = TunDataPlane(cfg.listen[0], cfg.natt_port, cfg.tun_name,
                             on_event=self._on_dataplane, routes=(cfg.pool,))
        self.dataplane = self.children.plane = plane
        return PlaneEndpoint(cfg.listen[0], (cfg.port, cfg.natt_port), plane)

    def _settings(self, natt: int) -> Settings:
        """The engine settings of this run (a worker process gives its own)."""
        prebuilt, self._prebuilt = self._prebuilt, None
        return replace(prebuilt or self.config.settings(providers=self.providers),
                       natt_port=natt)

    def _dispatcher_options(self) -> dict[str, Any]:
        """The Dispatcher's keyword arguments besides the ports (a worker adds its own)."""
        return self.config.limits()

    def _rotate_cookie(self, d: Dispatcher, now: float) -> None:
        if now - self._cookie_rotated >= COOKIE_SECRET_LIFETIME:
            d.rotate_cookie_secret()
            self._cookie_rotated = now

    def _on_dataplane(self, ev: DataPlaneEvent) -> None:
        sa = self.children.owner(ev.spi_in)
        if sa is None or self.dispatcher is None:
            return
        if ev.kind == "peer_moved" and ev.new is not None:
            # An authenticated ESP packet from a new address: the NAT rebound (RFC 3948
            # §3.5); follow it as after an authenticated request. The binding follows.
            sa.track_address(ev.new, None)
            self.dispatcher.update(sa, self.clock())
        else:
            log.warning("CHILD SA %08x of %s: %s (%s); no CHILD SA rekey here yet", ev.spi_in,
                        sa.peer_id, ev.kind, ev.what)

    @property
    def ports(self) -> tuple[int, int]:
        """The bound (IKE, NAT-T) ports."""
        assert self._driver is not None, "not started"
        port, natt = self._driver.endpoint.ports
        return port, natt

    async def stop(self, timeout: float = 3.0, *, delete: bool = True) -> None:
        """DELETE every SA (paced: ``SHUTDOWN_WINDOW`` unanswered at a time), give up once
        no answer came for ``timeout`` s, then close. ``delete=False`` just closes the
        sockets, as a crash would (bindings stay)."""
        if self._driver is None or self.dispatcher is None:
            return
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        d = self.dispatcher
        d.responder = None  # no new SAs while shutting down
        if delete:
            await self._delete_all(timeout)
            for b in self.store.all():
                self._remove(b.spi_r, "shutdown (peer did not answer DELETE)")
        self._driver.close()
        self._driver = None
        if delete:
            self.store.release()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._own_store:
            self.store.close()
        if self._stream is not None:
            self._stream.close()
        log.info("SeGW stopped")

    async def _delete_all(self, timeout: float) -> None:
        """A DELETE to every SA, at most ``SHUTDOWN_WINDOW`` of them unanswered at once: all
        at once, thousands of answers overflow the socket's receive buffer while the loop is
        still sending, and each lost answer is a peer recorded as silent."""
        d, driver = self.dispatcher, self._driver
        assert d is not None and driver is not None
        todo = list(d.sas())
        waiting: list[IkeSa] = []
        sent = 0
        progress = self.clock()
        while todo or waiting:
            left = [sa for sa in waiting if not sa.closed]
            now = self.clock()
            if len(left) < len(waiting):
                progress = now
            elif now - progress > timeout:
                break
            waiting = left
            room = SHUTDOWN_WINDOW - len(waiting)
            if room > 0 and todo:
                batch, todo = todo[:room], todo[room:]
                for sa in batch:
                    sent += sa.established
                    sa.delete()
                    d.update(sa, now)
                    if not sa.closed:
                        waiting.append(sa)
                driver.flush()
            await asyncio.sleep(0.005)
        for sa in todo:  # out of time: tell them anyway, without waiting
            sa.delete()
            d.update(sa, self.clock())
        driver.flush()
        log.info("shut down: DELETE sent to %d peers, %d unanswered", sent + len(todo),
                 len(waiting) + len(todo))

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- events -----------------------------------------------------------------------------

    def _interest(self) -> frozenset[type] | None:
        """The event types this SeGW reads, so the engine builds no others (None: all, for
        an ``on_event`` callback)."""
        if self.on_event is not None:
            return None
        kinds = {PeerBinding, LivenessConfirmed, AuthenticationFailed, ChildSaFailed,
                 IkeSaRekeyed, InitialContact, ConfigSetAnswered, CpValueDeferred, SaDeleted,
                 SaFailed}
        if self.keylog is not None or log.isEnabledFor(logging.INFO):
            kinds.add(IkeSaEstablished)
        if log.isEnabledFor(logging.DEBUG):
            kinds.add(NatDetected)
        return frozenset(kinds) | self.children.interest

    def _on_events(self, events: list[tuple[IkeSa, Event]]) -> None:
        for sa, ev in events:
            self._handle(sa, ev)
            call(log, self.on_event, sa, ev)

    def _handle(self, sa: IkeSa, ev: Event) -> None:
        self.children.on_event(sa, ev)
        if isinstance(ev, PeerBinding):
            if ev.inner_address is None and sa.child_failure is not None \
                    and sa.child_failure[0] == NotifyType.INTERNAL_ADDRESS_FAILURE:
                # RFC 7296 §3.15.4 keeps the IKE SA, but a FAP without an inner address and
                # CHILD_SA has no use for it: no binding row; delete it, the FAP retries.
                log.warning("no inner address for %s at %s:%d (%s): IKE SA deleted",
                            ev.peer_id, ev.public_address, ev.public_port,
                            sa.child_failure[1])
                sa.delete()
                if self.dispatcher is not None:
                    self.dispatcher.update(sa, self.clock())
                return
            kind = self._update(ev)
            # The row's last_seen is now: the next sweep need not touch it again.
            self._seen[sa.spi_r] = sa.stats.requests_processed
            log.info("binding %s: %s inner %s public %s:%d", kind, ev.peer_id,
                     ev.inner_address, ev.public_address, ev.public_port)
        elif isinstance(ev, IkeSaEstablished):
            log.info("IKE SA up with %s at %s:%d (SPIr %s)", ev.remote_id, *ev.remote_addr,
                     ev.spi_r.hex())
            if self.keylog is not None:
                self.keylog.write(sa)
        elif isinstance(ev, LivenessConfirmed):
            self.store.touch(sa.spi_r)  # the peer answered our liveness check
        elif isinstance(ev, NatDetected):
            log.debug("NAT detected: peer behind NAT %s", ev.remote_behind_nat)
        elif isinstance(ev, CpValueDeferred):
            loop = asyncio.get_running_loop()

            def settled(_: object) -> None:  # maybe on another thread, maybe after stop()
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._resume, sa)

            ev.deferred.add_done_callback(settled)  # type: ignore[attr-defined]
        elif isinstance(ev, AuthenticationFailed):
            self._auth_log.failure(sa.remote, ev, self.clock())
            self._failure("auth", ev.identity, sa, f"{ev.failure}: {ev.reason}",
                          NotifyType.AUTHENTICATION_FAILED)
        elif isinstance(ev, ChildSaFailed):
            log.warning("CHILD_SA for %s refused: %s", sa.peer_id, ev.reason)
            self._failure("child", sa.peer_id, sa, ev.reason, ev.notify_type)
        elif isinstance(ev, IkeSaRekeyed):
            self._rekeyed(sa, ev)
        elif isinstance(ev, InitialContact):
            self._initial_contact(sa)
        elif isinstance(ev, ConfigSetAnswered):
            if ev.accepted:
                log.info("%s took the pushed attributes %s", sa.peer_id, list(ev.accepted))
            else:
                log.info("%s did not take the pushed attributes %s (%s); not pushing to it "
                         "again", sa.peer_id, list(ev.sent),
                         f"notify {ev.error}" if ev.error is not None else "no CFG_ACK")
        elif isinstance(ev, SaDeleted):
            reason = "deleted by peer" if ev.by_peer else \
                "shutdown" if self._stopping else "deleted"
            self._gone(sa, reason)
        elif isinstance(ev, SaFailed):
            if self.keylog is not None and sa.key_material:
                self.keylog.write(sa)
            log.info("SA with %s failed: %s", sa.peer_id or sa.remote, ev.reason)
            self._failure("sa", sa.peer_id, sa, ev.reason, ev.notify_type)
            self._gone(sa, f"failed: {ev.reason}")

    def _rekeyed(self, old: IkeSa, ev: IkeSaRekeyed) -> None:
        """An IKE rekey keeps the FAP's row: same identity, inner IP and public address,
        new SPIs, one history entry."""
        new = ev.sa
        assert isinstance(new, IkeSa)
        binding = new.binding()
        if self.store.rekey(old.spi_r, binding):
            self._seen[new.spi_r] = self._seen.pop(old.spi_r, 0)
            log.info("IKE SA of %s rekeyed: SPIr %s -> %s", new.peer_id, old.spi_r.hex(),
                     new.spi_r.hex())
            self._tell(BindingChanged("rekey", str(binding.peer_id), binding.inner_address,
                                      binding.public_address, binding.public_port,
                                      binding.spi_r.hex(), old.spi_r.hex()))
        else:
            self._update(binding)
    def _initial_contact(self, new: IkeSa) -> None:
        """The authenticated peer of ``new`` says it holds no other IKE SA with us (it
        rebooted): delete the older ones of the same identity now, with their bindings and
        inner IPs, instead of holding them until liveness checks or expiry find them dead."""
        reason = f"replaced: INITIAL_CONTACT from {new.peer_id} on SA {new.spi_r.hex()}"
        self.drop_identity(new.peer_id, reason, keep=new)
        self._initial_contact_elsewhere(new.peer_id, reason)

    def drop_identity(self, peer_id: object, reason: str, *, keep: IkeSa | None = None) -> int:
        """Delete every established SA of ``peer_id`` except ``keep``, with its binding;
        returns how many."""
        d = self.dispatcher
        if d is None:
            return 0
        old_sas = [sa for sa in d.sas() if sa is not keep and sa.established
                   and sa.peer_id == peer_id]
        for old in old_sas:
            self._seen.pop(old.spi_r, None)
            b = self._remove(old.spi_r, reason)
            log.info("deleting SA %s of %s (inner %s): %s", old.spi_r.hex(), old.peer_id,
                     b.inner_ip if b is not None else None, reason)
            old.delete(wait=False)  # frees its inner IP now
            d.update(old, self.clock())
        return len(old_sas)

    def _initial_contact_elsewhere(self, peer_id: object, reason: str) -> None:
        """Other processes of this SeGW may hold SAs of ``peer_id`` too: a worker tells
        them (``roles.workers``); a single process has none."""

    def _gone(self, sa: IkeSa, reason: str) -> None:
        self._seen.pop(sa.spi_r, None)
        self._counted.pop(sa.spi_r, None)
        b = self._remove(sa.spi_r, reason)
        if b is not None:
            log.info("binding down: %s (%s)", b.identity, reason)

    # --- the binding table and the callbacks ---------------------------------------------------

    def _update(self, ev: PeerBinding) -> str:
        before = self.store.get(ev.spi_r.hex()) if self.on_binding is not None else None
        kind = self.store.update(ev)
        self._tell(BindingChanged(kind, str(ev.peer_id), ev.inner_address, ev.public_address,
                                  ev.public_port, ev.spi_r.hex(),
                                  before.public if before is not None and kind == "rebind"
                                  else None))
        return kind

    def _remove(self, spi_r: bytes | str, reason: str) -> Binding | None:
        b = self.store.remove(spi_r, reason)
        if b is not None:
            self._down(b, reason)
        return b

    def _down(self, b: Binding, reason: str) -> None:
        self._tell(BindingChanged("down", b.identity, b.inner_ip, b.public_ip, b.public_port,
                                  b.spi_r, reason))

    def _tell(self, change: BindingChanged) -> None:
        call(log, self.on_binding, change)

    def _failure(self, kind: str, peer: object, sa: IkeSa, reason: str,
                 notify_type: int | None) -> None:
        if self.on_sa_failed is not None:
            call(log, self.on_sa_failed, SaFailure(kind, str(peer) if peer is not None
                                                   else None, sa.remote, reason, notify_type))

    def _resume(self, sa: IkeSa) -> None:
        """A deferred CP value of ``sa`` was settled: send its IKE_AUTH response now."""
        d, driver = self.dispatcher, self._driver
        if d is None or driver is None or sa.closed:
            return
        d.update(sa, self.clock())
        driver.flush()

    async def _sweep(self) -> None:
        """Move ``last_seen`` for peers that sent authenticated requests; expire the idle."""
        period = min(5.0, self.config.binding_expiry / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def _report_refusals(self, d: Dispatcher) -> None:
        """One WARNING per sweep (at most every 5 s) when unauthenticated requests were
        refused since the last one: a flood is visible without a line per datagram."""
        now = {k: getattr(d.stats, k) for k in _REFUSALS}
        delta = {k: now[k] - self._refused.get(k, 0) for k in _REFUSALS}
        self._refused = now
        if any(delta.values()):
            log.warning("refused since the last report: %s; %d half-open SAs now",
                        ", ".join(f"{n} {_REFUSALS[k]}" for k, n in delta.items() if n),
                        d.half_open)

    def sweep(self) -> None:
        d = self.dispatcher
        if d is None:
            return
        now = self.clock()
        self._auth_log.flush(now)
        self.store.heartbeat()
        self._report_refusals(d)
        self._rotate_cookie(d, now)
        # Only SAs that received IKE messages since the last sweep can have new requests: an
        # idle SA costs the sweep nothing, however many are held.
        for sa in d.take_active():
            if not sa.established:
                continue
            count = sa.stats.requests_processed
            if self._seen.get(sa.spi_r) != count:
                self._seen[sa.spi_r] = count
                self.store.touch(sa.spi_r)
        for sa in d.sas() if self.dataplane.name == "tun" else ():
            if sa.established and self.children.children(sa):
                # Written only when traffic moved them: idle SAs cost no SQLite write.
                counters = self.children.counters(sa)
                if counters != self._counted.get(sa.spi_r, dict.fromkeys(counters, 0)):
                    self._counted[sa.spi_r] = counters
                    self.store.set_counters(sa.spi_r, counters)
        for b in self.store.expire(self.config.binding_expiry):
            self._down(b, "expired")
            # Our own SPI is SPIi when we started the IKE rekey that made the SA.
            idle = d.find(bytes.fromhex(b.spi_r)) or d.find(bytes.fromhex(b.spi_i))
            if idle is not None:
                log.info("binding of %s expired: deleting its SA", b.identity)
                idle.delete()
                d.update(idle, self.clock())
        if self._driver is not None:
            self._driver.flush()
