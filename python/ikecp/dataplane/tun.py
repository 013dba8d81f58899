"""``dataplane = "tun"``: userspace ESP in UDP (RFC 4303, RFC 3948) on a TUN device.

The backend's ``Dataplane`` (native: Rust threads; ``IKECP_BACKEND=python``: the slow
pure-Python twin) owns the NAT-T socket and the TUN device and moves packets in two
threads (native: with the GIL released). This class adds what the kernel must be told, with
iproute2: the interface is brought up, gets the FAP's inner address, and every CHILD SA's
remote selectors are routed into it (0.0.0.0/0 as 0/1 + 128/1, so the default route stays;
a selector covering the peer's own outer address first pins that address to the route it
has now, so ESP never loops into the tunnel). On the SeGW that means each FAP's inner /32
goes to the TUN device and from there to its CHILD SA.

``socket`` is the NAT-T "socket" for the role's ``UdpEndpoint``: its ``recv_batch`` returns
the datagrams that are not ESP (IKE, keepalives) and hands data plane events to ``on_event``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

from .. import _backend, _reference
from ..net.udp import UdpEndpoint
from . import (
    Address,
    ChildSpec,
    DataPlaneEvent,
    DataplaneUnavailableError,
    EventSink,
    Selector,
)

log = logging.getLogger("ikecp.dataplane")

#: Inner MTU: 1500 minus outer IPv4 (20), UDP (8), ESP header, IV, padding, trailer and ICV.
TUN_MTU = 1400


def check_available() -> None:
    """Raise ``DataplaneUnavailableError`` unless this process can open TUN devices."""
    if not os.path.exists("/dev/net/tun"):
        raise DataplaneUnavailableError('dataplane "tun" needs /dev/net/tun (no TUN driver here)')
    if not _has_net_admin():
        raise DataplaneUnavailableError('dataplane "tun" needs root (CAP_NET_ADMIN) to create a '
                                   'TUN device')
    if shutil.which("ip") is None:
        raise DataplaneUnavailableError('dataplane "tun" needs iproute2 ("ip") to set routes')
    if not hasattr(os, "eventfd"):
        raise DataplaneUnavailableError('dataplane "tun" needs Linux')


def _has_net_admin() -> bool:
    """Whether CAP_NET_ADMIN (bit 12) is effective: what creating a TUN device needs, whatever
    the uid (root without it fails; a non-root service granted it succeeds)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 12 & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise DataplaneUnavailableError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def networks(sel: Selector) -> list[str]:
    """The CIDR blocks a selector's address range covers (0.0.0.0/0 split in two halves)."""
    start, end = ipaddress.ip_address(sel[3]), ipaddress.ip_address(sel[4])
    out: list[str] = []
    for net in ipaddress.summarize_address_range(start, end):  # type: ignore[type-var]
        if net.prefixlen == 0:
            out.extend(str(half) for half in net.subnets(1))
        else:
            out.append(str(net))
    return out


class _ControlSocket:
    """The NAT-T socket as a ``BatchSocketLike`` for the role's ``UdpEndpoint``."""

    def __init__(self, plane: TunDataPlane) -> None:
        self._plane = plane
        self.MAX_BATCH: int = plane.native.MAX_BATCH

    def fileno(self) -> int:
        return int(self._plane.native.fileno())

    def getsockname(self) -> tuple[str, int]:
        host, port = self._plane.native.getsockname()
        return str(host), int(port)

    def close(self) -> None:
        self._plane.close()

    def recv_batch(self, max_datagrams: int, timeout: float | None = None
                   ) -> list[tuple[bytes, tuple[str, int]]]:
        got: list[tuple[bytes, tuple[str, int]]] = self._plane.native.recv_batch(
            max_datagrams, timeout)
        self._plane.poll_events()
        return got

    def send_batch(self, datagrams: Iterable[tuple[bytes, tuple[str, int]]]) -> int:
        return int(self._plane.native.send_batch(list(datagrams)))


class TunDataPlane:
    """The TUN data plane of one role. ``host``/``port``: the NAT-T socket to own."""

    name = "tun"

    def __init__(self, host: str, port: int, tun_name: str = "", *,
                 on_event: EventSink | None = None, routes: tuple[str, ...] = ()) -> None:
        check_available()
        cls = getattr(_backend.backend, "Dataplane", None)
        if cls is None:  # the native class exists on Linux only
            cls = _reference.Dataplane
        try:
            self.native: Any = cls(host, port, tun_name)
        except OSError as exc:
            raise DataplaneUnavailableError(
                f'dataplane "tun": cannot open TUN {tun_name or "device"} or bind '
                f'{host}:{port}: {exc.strerror or exc}') from exc
        self.on_event = on_event
        self.tun = str(self.native.tun_name)
        self.socket = _ControlSocket(self)
        self._routes: dict[str, int] = {}       # CIDR -> SAs routing it here
        self._specs: dict[int, ChildSpec] = {}
        self._pinned: set[str] = set()
        self._closed = False
        _ip("link", "set", "dev", self.tun, "mtu", str(TUN_MTU), "up")
        # Fixed routes (the SeGW's address pool): CHILD SAs inside them need no route of
        # their own, so installing one costs no ``ip`` call.
        self._static = [ipaddress.ip_network(r, strict=False) for r in routes]
        for net in self._static:
            _ip("route", "replace", str(net), "dev", self.tun)
        log.info("data plane: TUN %s up, ESP in UDP on %s:%d", self.tun, host, port)

    # --- the seam --------------------------------------------------------------------------

    def set_address(self, address: str) -> None:
        """Give the TUN device our inner address (the FAP's INTERNAL_IP4_ADDRESS), in place
        of the one an earlier SA gave it."""
        _ip("addr", "flush", "dev", self.tun)
        _ip("addr", "add", f"{address}/32", "dev", self.tun)

    def install(self, spec: ChildSpec) -> None:
        self._install(spec, None)

    def replace(self, old_spi_in: int, spec: ChildSpec) -> None:
        self._install(spec, old_spi_in)

    def remove(self, spi_in: int) -> bool:
        spec = self._specs.pop(spi_in, None)
        if self._closed:
            return spec is not None
        removed = bool(self.native.remove(spi_in))
        if spec is not None:
            self._unroute(spec)
        return removed

    def set_peer(self, spi_in: int, peer: Address) -> None:
        if not self._closed:
            self.native.set_peer(spi_in, peer)

    def counters(self, spi_in: int) -> dict[str, object] | None:
        if self._closed:
            return None
        c = self.native.counters(spi_in)
        return dict(c) if c is not None else None

    def stats(self) -> dict[str, int]:
        return {} if self._closed else dict(self.native.stats())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.native.close()  # the TUN device and its routes go with it
            for host in self._pinned:
                _ip("route", "del", f"{host}/32", check=False)

    # --- internals -------------------------------------------------------------------------

    def _install(self, spec: ChildSpec, old: int | None) -> None:
        self.native.install(spec.spi_in, spec.spi_out, spec.encr, spec.integ, spec.key_in,
                            spec.key_out, spec.esn, list(spec.local_ts), list(spec.remote_ts),
                            spec.peer, replaces=old)
        self._specs[spec.spi_in] = spec
        self._route(spec)
        log.info("CHILD SA %08x/%08x installed: %s -> %s via %s:%d", spec.spi_in, spec.spi_out,
                 _ranges(spec.local_ts), _ranges(spec.remote_ts), *spec.peer)

    def _route(self, spec: ChildSpec) -> None:
        peer = ipaddress.ip_address(spec.peer[0])
        for sel in spec.remote_ts:
            for cidr in self._own_routes(sel):
                if peer in ipaddress.ip_network(cidr):
                    self._pin(spec.peer[0])
                n = self._routes.get(cidr, 0)
                if n == 0:
                    _ip("route", "replace", cidr, "dev", self.tun)
                self._routes[cidr] = n + 1

    def _unroute(self, spec: ChildSpec) -> None:
        for sel in spec.remote_ts:
            for cidr in self._own_routes(sel):
                n = self._routes.get(cidr, 0) - 1
                if n <= 0:
                    self._routes.pop(cidr, None)
                    _ip("route", "del", cidr, "dev", self.tun, check=False)
                else:
                    self._routes[cidr] = n

    def _own_routes(self, sel: Selector) -> list[str]:
        """The selector's blocks that no fixed route already sends into the TUN device."""
        return [c for c in networks(sel)
                if not any(ipaddress.ip_network(c).subnet_of(n)  # type: ignore[arg-type]
                           for n in self._static if n.version == ipaddress.ip_network(c).version)]

    def _pin(self, host: str) -> None:
        """Keep the peer's outer address on the route it has now (not into the tunnel)."""
        if host in self._pinned:
            return
        words = _ip("route", "get", host).split()
        via = ["via", words[words.index("via") + 1]] if "via" in words else []
        dev = ["dev", words[words.index("dev") + 1]] if "dev" in words else []
        _ip("route", "replace", f"{host}/32", *via, *dev)
        self._pinned.add(host)

    def poll_events(self) -> None:
        """Hand the native plane's events to ``on_event``."""
        if self._closed:
            return
        for ev in self.native.events():
            kind, spi = ev[0], ev[1]
            if kind == "peer_moved":
                out = DataPlaneEvent(kind, spi, old=tuple(ev[2]), new=tuple(ev[3]))  # type: ignore[arg-type]
            else:
                out = DataPlaneEvent(kind, spi, what=ev[2])
            log.info("data plane: %s", out)
            if self.on_event is not None:
                self.on_event(out)


def _ranges(sels: tuple[Selector, ...]) -> str:
    return ", ".join(f"{s[3]}-{s[4]}" for s in sels)



class PlaneEndpoint(UdpEndpoint):
    """A batched ``UdpEndpoint`` whose NAT-T "socket" is the data plane's (one socket
    owner); the IKE port keeps an ordinary batched socket."""

    def __init__(self, host: str, ports: tuple[int, int], plane: TunDataPlane) -> None:
        self._plane = plane
        super().__init__(host, ports, batch=True)

    def _open(self, host: str, port: int) -> Any:
        if port == self._plane.socket.getsockname()[1]:
            return self._plane.socket
        return super()._open(host, port)
