"""The femtocell (FAP): one IKE SA to the SeGW, kept up for as long as it runs.

It connects, reports whether NAT was detected, the inner IP it was given and the public
IP:port the SeGW saw (EXTERNAL_SOURCE_IP4_NAT_INFO, and again whenever the SeGW pushes a new
one after a NAT rebinding), has the engine send NAT keepalives while behind a NAT (RFC 3948
§2.3, every 20 s by default) and run liveness checks, and starts a new SA when the old one
is deleted or dies (with a growing delay while attempts keep failing). Its first IKE SA
after start carries N(INITIAL_CONTACT), so the SeGW drops what it still holds from before a
reboot. A CHILD SA that is refused or deleted by the SeGW is reported (WARNING, status) and
repaired.
Rekeyed IKE SAs replace the current one silently; a reauthentication (make-before-break)
switches to the new SA once it is up, and a public address that changed is reported.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from ..config import ConfigError, FapConfig, plugins
from ..const import ConfigAttr, NotifyType, notify_name
from ..cp import AttributeHandler
from ..dataplane import DataPlane, DataPlaneEvent, NoDataPlane
from ..dataplane.children import ChildTracker
from ..engine import IkeSa
from ..events import (
    AuthenticationFailed,
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ConfigReceived,
    Event,
    IkeSaEstablished,
    IkeSaRekeyed,
    NatDetected,
    NatInfoNotSupported,
    PublicAddressLearned,
    PublicAddressUpdate,
    ReauthStarted,
    SaDeleted,
    SaFailed,
    SaFailure,
)
from ..keylog import KeyLog
from ..net.udp import DispatchDriver, UdpEndpoint, family_of
from .callback import call
from .dispatch import Dispatcher

log = logging.getLogger("ikecp.fap")

#: Longest wait between two attempts to re-establish.
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class FapStatus:
    """What the FAP knows about its SA; printed by ``ikecp fap`` (``--json``: as JSON)."""

    state: str = "connecting"          # connecting, established, down
    segw: str = ""
    local: str = ""
    nat_detected: bool | None = None   # we are behind a NAT (IKE_SA_INIT NAT-D)
    inner_ip: str | None = None
    public_ip: str | None = None       # as the SeGW saw us (NAT-info attribute)
    public_port: int | None = None
    nat_info: str | None = None        # why the NAT-info answer is missing, if it is
    spi_i: str | None = None
    spi_r: str | None = None
    established: int = 0               # how many SAs were established so far
    reason: str | None = None          # why the last SA went down
    rekeys: int = 0                    # IKE SA rekeys (same authentication, new keys)
    reauths: int = 0                   # reauthentications (new IKE SA, CP, NAT info afresh)
    previous_public: str | None = None  # the public ip:port before the last change
    child_state: str | None = None     # installed, refused, deleted (by the SeGW)
    child_reason: str | None = None    # why the CHILD SA is not installed
    child_spis: tuple[str, ...] = ()   # (inbound, outbound) ESP SPIs of the CHILD SA
    child_losses: int = 0              # CHILD SAs refused or deleted so far
    dataplane: str = "none"            # "tun": CHILD SAs carry traffic through ``tun``
    tun: str | None = None
    esp: dict[str, object] | None = None  # CHILD SA counters (``Femto.refresh_counters``)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        if self.state != "established":
            why = f" ({self.reason})" if self.reason else ""
            return f"{self.state}{why}"
        public = f"{self.public_ip}:{self.public_port}" if self.public_ip else \
            f"unknown ({self.nat_info})"
        nat = "detected" if self.nat_detected else "not detected"
        child = "CHILD SA installed" if self.child_state == "installed" else \
            f"CHILD SA {self.child_state or 'pending'}" + \
            (f" ({self.child_reason})" if self.child_reason else "")
        return (f"established with {self.segw}: NAT {nat}, inner IP {self.inner_ip}, "
                f"public address {public}, {child}")


def route_source(dest: str) -> str:
    """The local address the kernel would use towards ``dest`` (no packet is sent)."""
    with socket.socket(family_of(dest), socket.SOCK_DGRAM) as s:
        s.connect((dest, 9))
        return str(s.getsockname()[0])


class Femto:
    """A FAP: ``await fap.start()`` ... ``await fap.stop()``; ``status`` is always current.

    ``config`` is a validated ``FapConfig`` (in code or from ``ikecp.config.load_fap``); its
    ``auth`` may carry an ``Authenticator`` of the application's own. ``handlers``: the
    application's CP handlers (``ikecp.cp``), asked after the configured ones (one for a
    configured type replaces it). Callbacks run on the event loop: ``on_status(FapStatus)``
    on each change of the status, ``on_public_address(PublicAddressUpdate)`` when the SeGW
    first tells us our public address:port and whenever it changes,
    ``on_sa_failed(SaFailure)`` for failed authentications, refused CHILD SAs and dead IKE
    SAs, ``on_event(sa, event)`` for every engine event. Bad input raises ``ConfigError``
    here, not at ``start``.
    """

    def __init__(self, config: FapConfig, *, handlers: Iterable[AttributeHandler] = (),
                 on_status: Callable[[FapStatus], None] | None = None,
                 on_public_address: Callable[[PublicAddressUpdate], None] | None = None,
                 on_sa_failed: Callable[[SaFailure], None] | None = None,
                 on_event: Callable[[IkeSa, Event], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(config, FapConfig):
            raise ConfigError("config", f"must be a FapConfig, not {type(config).__name__}")
        self.config = config
        self.handlers = plugins("handlers", handlers)
        self._settings = config.settings(self.handlers)
        self.on_status = on_status
        self.on_public_address = on_public_address
        self.on_sa_failed = on_sa_failed
        self.on_event = on_event
        self.clock = clock
        self.keylog = KeyLog(config.keylog) if config.keylog else None
        self.status = FapStatus(segw=config.segw)
        self.sa: IkeSa | None = None
        self.dispatcher: Dispatcher | None = None
        self._driver: DispatchDriver | None = None
        self._reconnect: asyncio.TimerHandle | None = None
        self._failures = 0
        self._stopping = False
        self._successors: set[int] = set()  # id() of IKE SAs that a rekey made
        self._reauth: IkeSa | None = None   # the new IKE SA of a reauthentication
        self._up = asyncio.Event()
        self._contacted = False            # an IKE SA was established since start
        self._repairing: IkeSa | None = None
        self._public: tuple[str, int | None] | None = None  # the last one learned
        self.dataplane: DataPlane = NoDataPlane()
        self.children = ChildTracker(self.dataplane)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        local = cfg.local or route_source(cfg.segw)
        endpoint = self._endpoint(local)
        port, natt = endpoint.ports
        self._natt = natt
        self.dispatcher = Dispatcher(None, local, port=port, natt_ports={natt})
        self._driver = DispatchDriver(self.dispatcher, endpoint, self._on_events, clock=self.clock)
        self._driver.start()
        self._set(local=f"{local}:{port}")
        self._connect()

    def _endpoint(self, local: str) -> UdpEndpoint:
        """The IKE and NAT-T sockets; with ``dataplane = "tun"`` the data plane owns the
        NAT-T one and carries the CHILD SA's traffic through a TUN device."""
        cfg = self.config
        if cfg.dataplane != "tun":
            log.info('dataplane "none": the CHILD SA is negotiated but carries no traffic')
            return UdpEndpoint(local, (cfg.port, cfg.natt_port))
        from ..dataplane.tun import PlaneEndpoint, TunDataPlane

        plane = TunDataPlane(local, cfg.natt_port, cfg.tun_name, on_event=self._on_dataplane)
        self.dataplane = self.children.plane = plane
        self._set(dataplane="tun", tun=plane.tun)
        return PlaneEndpoint(local, (cfg.port, cfg.natt_port), plane)

    def _on_dataplane(self, ev: DataPlaneEvent) -> None:
        sa = self.children.owner(ev.spi_in)
        if sa is None or self.dispatcher is None:
            return
        if ev.kind == "peer_moved" and ev.new is not None:
            sa.track_address(ev.new, None)  # the NAT rebound (RFC 3948 §3.5)
            self.dispatcher.update(sa, self.clock())
        else:
            log.warning("CHILD SA %08x: %s (%s); no CHILD SA rekey here yet", ev.spi_in,
                        ev.kind, ev.what)

    def refresh_counters(self) -> FapStatus:
        """Put the current CHILD SA counters into ``status.esp`` and return the status."""
        if self.sa is not None and self.dataplane.name == "tun":
            self._set(esp=self.children.counters(self.sa))
        return self.status

    async def stop(self, timeout: float = 2.0, *, delete: bool = True) -> None:
        """DELETE the SA (bounded wait for the answer) and close the sockets.
        ``delete=False`` just closes the sockets, as a crash or a power cut would."""
        self._stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        d, driver = self.dispatcher, self._driver
        if d is None or driver is None:
            return
        sa = self.sa
        if delete and sa is not None and not sa.closed:
            sa.delete()
            d.update(sa, self.clock())
            driver.flush()
            deadline = self.clock() + timeout
            while not sa.closed and self.clock() < deadline:
                await asyncio.sleep(0.02)
        driver.close()
        self._driver = None

    async def wait_established(self, timeout: float) -> FapStatus:
        """Wait until an SA is up (raises ``TimeoutError``); returns the status then."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise TimeoutError(f"no SA within {timeout} s") from None
        return self.status

    def check_liveness(self) -> bool:
        """Send a liveness check now (an authenticated request: after a NAT rebinding it
        tells the SeGW our new address). False if no SA is up."""
        sa, d, driver = self.sa, self.dispatcher, self._driver
        if sa is None or d is None or driver is None or not sa.established:
            return False
        sa.check_liveness()
        d.update(sa, self.clock())
        driver.flush()
        return True

    # --- SA management ----------------------------------------------------------------------

    def _connect(self) -> None:
        self._reconnect = None
        if self._stopping or self.dispatcher is None or self._driver is None:
            return
        cfg = self.config
        before = self.status
        segw_port = cfg.remote_ports[0]
        # INITIAL_CONTACT until an SA is up: a reconnect within this run must not make the
        # SeGW drop an SA we might still hold (RFC 7296 §2.4).
        settings = self._settings if self._contacted else \
            replace(self._settings, initial_contact=True)
        self.sa = self.dispatcher.connect(settings, (cfg.segw, segw_port), self.clock(),
                                          natt_local_port=self._natt)
        self._set(state="connecting", spi_i=self.sa.spi_i.hex(), spi_r=None,
                  nat_detected=None, inner_ip=None, public_ip=None, public_port=None,
                  nat_info=None, child_state=None, child_reason=None, child_spis=())
        log.info("connecting to %s:%d as %s", cfg.segw, segw_port, cfg.identity)
        self._report(before)
        self._driver.flush()

    def _lost(self, sa: IkeSa, reason: str) -> None:
        if sa is not self.sa:
            return
        if self._repairing is sa:
            reason = f"re-establishing to repair the CHILD SA ({self.status.child_reason})"
            self._repairing = None
        self._up.clear()
        self._set(state="down", reason=reason)
        if self._stopping:
            return
        delay = min(MAX_BACKOFF, max(self.config.reconnect, 0.05) * 2 ** self._failures)
        self._failures += 1
        log.warning("SA down (%s): reconnecting in %.1f s", reason, delay)
        self._reconnect = asyncio.get_running_loop().call_later(delay, self._connect)

    def _on_events(self, events: list[tuple[IkeSa, Event]]) -> None:
        before = self.status
        for sa, ev in events:
            self._handle(sa, ev)
            call(log, self.on_event, sa, ev)
        self._report(before)

    def _report(self, before: FapStatus) -> None:
        """Tell ``on_status`` once per batch of events, and only about real changes."""
        now = self.status
        if (now.state, now.public_ip, now.public_port, now.inner_ip, now.child_state,
                now.child_reason, now.rekeys, now.reauths) == \
                (before.state, before.public_ip, before.public_port, before.inner_ip,
                 before.child_state, before.child_reason, before.rekeys, before.reauths):
            return
        if now.state == "established":
            log.info("%s", now.describe())
        call(log, self.on_status, now)

    def _handle(self, sa: IkeSa, ev: Event) -> None:
        self.children.on_event(sa, ev)
        if isinstance(ev, NatDetected):
            self._set(nat_detected=ev.local_behind_nat)
            log.info("NAT %s", "detected: we are behind a NAT" if ev.local_behind_nat
                     else "not detected")
        elif isinstance(ev, ConfigReceived):
            for attr in ev.attributes:
                if attr.type == ConfigAttr.INTERNAL_IP4_ADDRESS and len(attr.value) == 4:
                    self._set(inner_ip=str(ipaddress.IPv4Address(attr.value)))
        elif isinstance(ev, PublicAddressLearned):
            if ev.pushed:
                log.info("public address now %s:%s (pushed by the SeGW; was %s:%s)",
                         ev.address, ev.port, self.status.public_ip, self.status.public_port)
            old = self.status
            if old.public_ip is not None and (old.public_ip, old.public_port) != \
                    (ev.address, ev.port):
                previous = f"{old.public_ip}:{old.public_port}"
                if not ev.pushed:  # a push is logged above
                    log.warning("public address changed: %s -> %s:%s", previous, ev.address,
                                ev.port)
                self._set(previous_public=previous)
            self._set(public_ip=ev.address, public_port=ev.port)
            self._public_learned(ev)
        elif isinstance(ev, IkeSaRekeyed):
            if sa is self.sa and isinstance(ev.sa, IkeSa):
                self.sa = ev.sa
                self._successors.add(id(ev.sa))
                self._set(spi_i=ev.spi_i.hex(), spi_r=ev.spi_r.hex(),
                          rekeys=self.status.rekeys + 1)
                log.info("IKE SA rekeyed: SPIs %s/%s", ev.spi_i.hex(), ev.spi_r.hex())
        elif isinstance(ev, ReauthStarted):
            self._reauth = ev.sa if isinstance(ev.sa, IkeSa) else None
            log.info("reauthenticating: new IKE SA %s", getattr(ev.sa, "spi_i", b"").hex())
        elif isinstance(ev, NatInfoNotSupported):
            self._set(nat_info=ev.reason)
        elif isinstance(ev, ChildSaEstablished):
            self._failures = 0  # only a working tunnel resets the reconnect backoff
            self._set(child_state="installed", child_reason=None,
                      child_spis=(ev.spi_in.hex(), ev.spi_out.hex()))
        elif isinstance(ev, ChildSaFailed):
            why = f"{notify_name(ev.notify_type)}: {ev.reason}"
            self._failure("child", sa, why, ev.notify_type)
            if sa.children:  # a refused rekey or extra CHILD SA: the installed one carries on
                log.warning("CHILD SA request refused (%s); the installed one stays", why)
            else:
                self._child_lost(sa, "refused", why)
        elif isinstance(ev, ChildSaDeleted):
            # The SeGW names its inbound SPI: our outbound one. Others are not ours to mourn.
            spis = self.status.child_spis
            if len(spis) == 2 and bytes.fromhex(spis[1]) in ev.spis:
                self._child_lost(sa, "deleted", "deleted by the SeGW")
        elif isinstance(ev, IkeSaEstablished):
            if self.keylog is not None:
                self.keylog.write(sa)
            if id(sa) in self._successors:  # a rekeyed SA: nothing new to report
                self._successors.discard(id(sa))
                return
            if sa is self._reauth:
                self.sa, self._reauth = sa, None  # reauthenticated: the old SA goes now
                self._set(reauths=self.status.reauths + 1, spi_i=ev.spi_i.hex())
            self._contacted = True
            self._set(state="established", spi_r=ev.spi_r.hex(), reason=None,
                      established=self.status.established + 1)
            self._up.set()
        elif isinstance(ev, SaDeleted):
            if not ev.replaced:
                self._lost(sa, "deleted by the SeGW" if ev.by_peer else "deleted")
        elif isinstance(ev, AuthenticationFailed):
            self._failure("auth", sa, f"{ev.failure}: {ev.reason}",
                          NotifyType.AUTHENTICATION_FAILED)
        elif isinstance(ev, SaFailed):
            if self.keylog is not None and sa.key_material:
                self.keylog.write(sa)
            self._failure("sa", sa, ev.reason, ev.notify_type)
            self._lost(sa, ev.reason)

    def _public_learned(self, ev: PublicAddressLearned) -> None:
        """Tell ``on_public_address`` when the address differs from the last one learned in
        this run (a new SA that learns the same address again is no news)."""
        new = (ev.address, ev.port)
        if new == self._public:
            return
        previous, self._public = self._public, new
        if self.on_public_address is not None:
            call(log, self.on_public_address,
                 PublicAddressUpdate(ev.address, ev.port, previous, ev.pushed))

    def _failure(self, kind: str, sa: IkeSa, reason: str, notify_type: int | None) -> None:
        if self.on_sa_failed is not None:
            peer = sa.peer_id
            call(log, self.on_sa_failed, SaFailure(kind, str(peer) if peer is not None
                                                   else None, sa.remote, reason, notify_type))

    def _child_lost(self, sa: IkeSa, state: str, reason: str) -> None:
        if sa is not self.sa:
            return
        log.warning("CHILD SA %s: %s; IKE SA %s stays up, repairing", state, reason,
                    self.status.spi_i)
        self._set(child_state=state, child_reason=reason, child_spis=(),
                  child_losses=self.status.child_losses + 1)
        self._repair_child(sa)

    def _repair_child(self, sa: IkeSa) -> None:
        """Get a CHILD SA back. Until the engine initiates CREATE_CHILD_SA, the repair is a
        new IKE SA (with its CHILD SA in IKE_AUTH): this one is deleted and ``_lost``
        reconnects. This is the one place to switch to re-creating the CHILD SA on the same
        IKE SA."""
        if self._stopping or self.dispatcher is None or not sa.established:
            return
        self._repairing = sa
        sa.delete()
        self.dispatcher.update(sa, self.clock())

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
