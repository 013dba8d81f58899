"""``ikecp demo``: a SeGW, a userspace NAPT and a handful of FAPs, all on loopback.

Loopback is a /8, so each party gets its own address and every party can use the same two
port numbers (IKE and NAT-T must be equal on both sides of an SA):

    FAP i 127.0.1.i:P/N -> NAPT 127.0.0.3:P/N -> (from 127.0.0.1:fresh) -> SeGW 127.0.0.1:P/N

P and N are free unprivileged ports the SeGW binds first. After every FAP is up, each FAP's
learned public address (EXTERNAL_SOURCE_IP4_NAT_INFO) is checked against the relay's mapping
of that FAP's NAT-T socket: the translation the SeGW really saw.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import FapConfig, SegwConfig
from ..net.relay import NatRelay, Route
from ..roles.bindings import Binding, BindingRegistry
from ..roles.femto import FapStatus, Femto
from ..roles.gateway import Gateway

log = logging.getLogger("ikecp.lab.demo")

SEGW_IP = "127.0.0.1"
RELAY_IP = "127.0.0.3"
NAT_OUTSIDE_IP = "127.0.0.1"


def fap_ip(index: int) -> str:
    return f"127.0.1.{index + 1}"


@dataclass
class FapResult:
    identity: str
    status: FapStatus
    nat_mapping: tuple[str, int] | None  # what the relay assigned to the FAP's NAT-T socket

    @property
    def ok(self) -> bool:
        learned = (self.status.public_ip, self.status.public_port)
        return self.status.state == "established" and learned == self.nat_mapping


@dataclass
class DemoResult:
    expected: int
    faps: list[FapResult] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.faps) and all(f.ok for f in self.faps) \
            and len(self.bindings) == len(self.faps) == self.expected


class Topology:
    """The running demo network; also what the tests drive (``rebind``, restarts)."""

    def __init__(self, n_faps: int = 4, *, bindings: str = ":memory:",
                 registry: BindingRegistry | None = None, fap_options: dict | None = None,
                 segw_options: dict | None = None,
                 on_status: Callable[[FapStatus], None] | None = None) -> None:
        if not 1 <= n_faps <= 250:
            raise ValueError("between 1 and 250 FAPs")
        self.n_faps = n_faps
        self.psk = secrets.token_hex(16)
        self.registry = registry if registry is not None else BindingRegistry(bindings)
        self.segw_options = segw_options or {}
        self.fap_options = fap_options or {}
        self.on_status = on_status
        self.gateway: Gateway | None = None
        self.relay: NatRelay | None = None
        self.faps: list[Femto] = []
        self.ports = (0, 0)

    def segw_config(self, port: int = 0, natt_port: int = 0) -> SegwConfig:
        psk = None if "cert" in self.segw_options else self.psk
        return SegwConfig(identity="segw.demo.ikecp", listen=(SEGW_IP,), port=port,
                          natt_port=natt_port, psk=psk, **self.segw_options)

    async def start_gateway(self, gateway: Gateway | None = None) -> Gateway:
        """Start ``gateway`` (default: one on the topology's registry and ports)."""
        self.gateway = gateway or Gateway(self.segw_config(*self.ports), store=self.registry)
        await self.gateway.start()
        self.ports = self.gateway.ports
        return self.gateway

    async def start(self, timeout: float = 10.0, *, gateway: Gateway | None = None) -> None:
        await self.start_gateway(gateway)
        port, natt = self.ports
        self.relay = NatRelay([Route((RELAY_IP, port), (SEGW_IP, port)),
                               Route((RELAY_IP, natt), (SEGW_IP, natt))],
                              outside_host=NAT_OUTSIDE_IP, lifetime=24 * 3600)
        await self.relay.start()
        for i in range(self.n_faps):
            options = {"keepalive": 20.0, "reconnect": 0.5, **self.fap_options}
            if "cert" not in options:
                options.setdefault("psk", self.psk)
            cfg = FapConfig(identity=f"fap-{i + 1:03d}.demo.ikecp", segw=RELAY_IP,
                            segw_id="segw.demo.ikecp", local=fap_ip(i), port=port,
                            natt_port=natt, **options)
            fap = Femto(cfg, on_status=self.on_status)
            self.faps.append(fap)
            await fap.start()
        await asyncio.gather(*(f.wait_established(timeout) for f in self.faps))

    def mapping_of(self, fap: Femto) -> tuple[str, int] | None:
        """The relay's outside address for ``fap``'s NAT-T socket."""
        assert self.relay is not None
        return self.relay.mappings().get((fap.config.local, self.ports[1]))

    def result(self) -> DemoResult:
        return DemoResult(
            self.n_faps,
            [FapResult(f.config.identity, f.status, self.mapping_of(f)) for f in self.faps],
            self.registry.all())

    async def stop(self) -> None:
        for fap in self.faps:
            await fap.stop()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.relay is not None:
            await self.relay.stop()
        self.registry.close()


async def run(n_faps: int = 4, *, bindings: str = ":memory:", timeout: float = 15.0,
              on_status: Callable[[FapStatus], None] | None = None) -> DemoResult:
    """Bring the demo network up, collect the result, shut everything down cleanly."""
    topo = Topology(n_faps, bindings=bindings, on_status=on_status)
    try:
        try:
            await topo.start(timeout)
        except TimeoutError:
            log.error("not every FAP established an SA within %.0f s", timeout)
        return topo.result()
    finally:
        await topo.stop()


def format_result(result: DemoResult) -> str:
    lines = ["Binding table (SeGW):",
             f"  {'identity':<22} {'inner IP':<14} {'public address':<22} SPIi/SPIr"]
    for b in result.bindings:
        lines.append(f"  {b.identity:<22} {b.inner_ip or '-':<14} {b.public:<22} "
                     f"{b.spi_i[:8]}../{b.spi_r[:8]}..")
    lines.append("FAPs (learned public address vs. NAPT mapping):")
    for f in result.faps:
        learned = f"{f.status.public_ip}:{f.status.public_port}"
        mapped = f"{f.nat_mapping[0]}:{f.nat_mapping[1]}" if f.nat_mapping else "none"
        verdict = "OK" if f.ok else "MISMATCH"
        lines.append(f"  {f.identity:<22} NAT {'yes' if f.status.nat_detected else 'no ':<3} "
                     f"inner {f.status.inner_ip or '-':<12} learned {learned:<21} "
                     f"NAPT {mapped:<21} {verdict}")
    lines.append("demo: OK" if result.ok else "demo: MISMATCH")
    return os.linesep.join(lines)
