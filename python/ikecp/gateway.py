"""The security gateway (SeGW): many FAPs at once on real sockets.

Glue between a ``Dispatcher`` on an ``AsyncioDriver`` and the binding registry: PSK or
certificate authentication, inner IPv4 addresses from a pool, EXTERNAL_SOURCE_IP4_NAT_INFO
answers (both come from the CP providers in ``SegwConfig.settings``), a binding per
established SA kept current through NAT rebinding, removed on DELETE, failure or expiry.
``stop()`` deletes every SA with an INFORMATIONAL DELETE and waits (bounded) for the answers,
so each binding leaves the registry through the history and the event stream, not silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TextIO

from .authlog import AuthFailureLog
from .bindings import BindingRegistry
from .config import SegwConfig
from .dataplane import DataPlane, DataPlaneEvent, NoDataPlane
from .dataplane.children import ChildTracker
from .dispatch import Dispatcher
from .engine import IkeSa
from .engine.events import (
    AuthenticationFailed,
    ChildSaFailed,
    Event,
    IkeSaEstablished,
    LivenessConfirmed,
    NatDetected,
    PeerBinding,
    SaDeleted,
    SaFailed,
)
from .keylog import KeyLog
from .net.udp import AsyncioDriver, UdpEndpoint

log = logging.getLogger("ikecp.segw")

Address = tuple[str, int]

#: Seconds between COOKIE secret changes (a cookie stays valid for one more period).
COOKIE_SECRET_LIFETIME = 300.0


class Gateway:
    """Run with ``await gw.start()`` ... ``await gw.stop()`` (or ``async with``)."""

    def __init__(self, config: SegwConfig, *, registry: BindingRegistry | None = None,
                 on_event: Callable[[IkeSa, Event], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._own_registry = registry is None
        self._stream: TextIO | None = None
        if registry is None:
            if config.events:
                self._stream = open(config.events, "a", encoding="utf-8")  # noqa: SIM115
            registry = BindingRegistry(config.bindings, stream=self._stream)
        self.registry = registry
        self.keylog = KeyLog(config.keylog) if config.keylog else None
        self.on_event = on_event
        self.clock = clock
        self.dispatcher: Dispatcher | None = None
        self._driver: AsyncioDriver | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._seen: dict[bytes, int] = {}
        self._counted: dict[bytes, dict[str, object]] = {}  # ESP counters last written
        self._cookie_rotated = 0.0
        self._stopping = False
        self._auth_log = AuthFailureLog(log)
        self.dataplane: DataPlane = NoDataPlane()
        self.children = ChildTracker(self.dataplane, initiator=False)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the sockets and serve. Bindings left by a previous run that ended without a
        clean shutdown belong to SAs that no longer exist: they are closed first."""
        for b in self.registry.all():
            self.registry.remove(b.spi_r, "stale at startup")
        self._stopping = False
        cfg = self.config
        endpoint = self._endpoint()
        port, natt = endpoint.ports
        settings = cfg.settings(natt)
        self.dispatcher = Dispatcher(settings, cfg.listen[0], port=port, natt_ports={natt},
                                     max_half_open=cfg.max_half_open,
                                     cookie_threshold=cfg.cookie_threshold)
        self._driver = AsyncioDriver(self.dispatcher, endpoint, self._on_events, self.clock)
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
            return UdpEndpoint(cfg.listen, (cfg.port, cfg.natt_port))
        from .dataplane.tun import PlaneEndpoint, TunDataPlane

        plane = TunDataPlane(cfg.listen[0], cfg.natt_port, cfg.tun_name,
                             on_event=self._on_dataplane, routes=(cfg.pool,))
        self.dataplane = self.children.plane = plane
        return PlaneEndpoint(cfg.listen[0], (cfg.port, cfg.natt_port), plane)

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
        """DELETE every SA, wait up to ``timeout`` s for the answers, then close.
        ``delete=False`` just closes the sockets, as a crash would (bindings stay)."""
        if self._driver is None or self.dispatcher is None:
            return
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        d = self.dispatcher
        d.responder = None  # no new SAs while shutting down
        if delete:
            n = d.delete_all(self.clock())
            self._driver.flush()
            log.info("shutting down: DELETE sent to %d peers", n)
            deadline = self.clock() + timeout
            while len(d) and self.clock() < deadline:
                await asyncio.sleep(0.02)
            for b in self.registry.all():
                self.registry.remove(b.spi_r, "shutdown (peer did not answer DELETE)")
        self._driver.close()
        self._driver = None
        if self._own_registry:
            self.registry.close()
        if self._stream is not None:
            self._stream.close()
        log.info("SeGW stopped")

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- events -----------------------------------------------------------------------------

    def _on_events(self, events: list[tuple[IkeSa, Event]]) -> None:
        for sa, ev in events:
            self._handle(sa, ev)
            if self.on_event is not None:
                self.on_event(sa, ev)

    def _handle(self, sa: IkeSa, ev: Event) -> None:
        self.children.on_event(sa, ev)
        if isinstance(ev, PeerBinding):
            kind = self.registry.update(ev)
            log.info("binding %s: %s inner %s public %s:%d", kind, ev.peer_id,
                     ev.inner_address, ev.public_address, ev.public_port)
        elif isinstance(ev, IkeSaEstablished):
            log.info("IKE SA up with %s at %s:%d (SPIr %s)", ev.remote_id, *ev.remote_addr,
                     ev.spi_r.hex())
            if self.keylog is not None:
                self.keylog.write(sa)
        elif isinstance(ev, LivenessConfirmed):
            self.registry.touch(sa.spi_r)  # the peer answered our liveness check
        elif isinstance(ev, NatDetected):
            log.debug("NAT detected: peer behind NAT %s", ev.remote_behind_nat)
        elif isinstance(ev, AuthenticationFailed):
            self._auth_log.failure(sa.remote, ev, self.clock())
        elif isinstance(ev, ChildSaFailed):
            log.warning("CHILD_SA for %s refused: %s", sa.peer_id, ev.reason)
        elif isinstance(ev, SaDeleted):
            reason = "deleted by peer" if ev.by_peer else \
                "shutdown" if self._stopping else "deleted"
            self._gone(sa, reason)
        elif isinstance(ev, SaFailed):
            if self.keylog is not None and sa.key_material:
                self.keylog.write(sa)
            log.info("SA with %s failed: %s", sa.peer_id or sa.remote, ev.reason)
            self._gone(sa, f"failed: {ev.reason}")

    def _gone(self, sa: IkeSa, reason: str) -> None:
        self._seen.pop(sa.spi_r, None)
        self._counted.pop(sa.spi_r, None)
        b = self.registry.remove(sa.spi_r, reason)
        if b is not None:
            log.info("binding down: %s (%s)", b.identity, reason)

    async def _sweep(self) -> None:
        """Move ``last_seen`` for peers that sent authenticated requests; expire the idle."""
        period = min(5.0, self.config.binding_expiry / 4)
        while True:
            await asyncio.sleep(period)
            self.sweep()

    def sweep(self) -> None:
        d = self.dispatcher
        if d is None:
            return
        now = self.clock()
        self._auth_log.flush(now)
        if now - self._cookie_rotated >= COOKIE_SECRET_LIFETIME:
            d.rotate_cookie_secret()
            self._cookie_rotated = now
        for sa in d.sas():
            if not sa.established:
                continue
            count = sa.stats.requests_processed
            if self._seen.get(sa.spi_r) != count:
                self._seen[sa.spi_r] = count
                self.registry.touch(sa.spi_r)
            if self.dataplane.name == "tun" and self.children.children(sa):
                # Written only when traffic moved them: idle SAs cost no SQLite write.
                counters = self.children.counters(sa)
                if counters != self._counted.get(sa.spi_r, dict.fromkeys(counters, 0)):
                    self._counted[sa.spi_r] = counters
                    self.registry.set_counters(sa.spi_r, counters)
        for b in self.registry.expire(self.config.binding_expiry):
            idle = d.find(bytes.fromhex(b.spi_r))
            if idle is not None:
                log.info("binding of %s expired: deleting its SA", b.identity)
                idle.delete()
                d.update(idle, self.clock())
        if self._driver is not None:
            self._driver.flush()
