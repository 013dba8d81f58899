"""In-memory pair of IKE SAs with a fake clock, a simulated NAPT and hooks to lose, duplicate,
reorder or damage datagrams in flight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from ikecp import framing
from ikecp.cp import CpRegistry, NatInfoHandler, NatInfoProvider
from ikecp.engine import Datagram, Identity, IkeSa, PskAuthenticator, Settings
from ikecp.engine.events import Event

INITIATOR_ADDR = ("100.64.0.2", 500)
RESPONDER_ADDR = ("198.51.100.10", 500)
NAT_PUBLIC_IP = "198.51.100.1"
PSK = b"correct horse battery staple"
FAP_ID = Identity.fqdn("fap-0001.example.net")
SEGW_ID = Identity.fqdn("segw.example.net")


def fap_settings(registry: CpRegistry | None = None, **kw) -> Settings:
    if registry is None:
        registry = CpRegistry().add_handler(NatInfoHandler())
    kw.setdefault("auth", PskAuthenticator(PSK))
    return Settings(local_id=FAP_ID, remote_id=SEGW_ID, cp=registry, **kw)


def segw_settings(registry: CpRegistry | None = None, **kw) -> Settings:
    if registry is None:
        registry = CpRegistry().add_provider(NatInfoProvider())
    kw.setdefault("auth", PskAuthenticator(PSK))
    return Settings(local_id=SEGW_ID, cp=registry, **kw)


@dataclass
class Flight:
    """One datagram on the wire: who sent it and how the receiver will see it."""

    to_responder: bool
    datagram: Datagram
    wire: bytes


# A hook gets the datagrams of one direction and returns what is delivered, in order.
Hook = Callable[[list[Flight]], list[Flight]]


@dataclass
class Pair:
    backend: ModuleType
    i_settings: Settings
    r_settings: Settings
    nat: bool = False
    i_addr: tuple[str, int] = INITIATOR_ADDR
    r_addr: tuple[str, int] = RESPONDER_ADDR
    hook: Hook | None = None
    clock: float = 0.0
    log: list[Flight] = field(default_factory=list)
    i_events: list[Event] = field(default_factory=list)
    r_events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.i = IkeSa.initiator(self.i_settings, self.i_addr, self.r_addr, backend=self.backend)
        self.r = IkeSa.responder(self.r_settings, self.r_addr, backend=self.backend)
        self._map: dict[tuple[str, int], tuple[str, int]] = {}
        self._next_public_port = 40001

    # NAPT: a new public port for every private (ip, port), like Linux's masquerade random.
    def public(self, private: tuple[str, int]) -> tuple[str, int]:
        if not self.nat:
            return private
        if private not in self._map:
            self._map[private] = (NAT_PUBLIC_IP, self._next_public_port)
            self._next_public_port += 1111
        return self._map[private]

    def private(self, public: tuple[str, int]) -> tuple[str, int] | None:
        if not self.nat:
            return public
        for priv, pub in self._map.items():
            if pub == public:
                return priv
        return None

    def _collect(self) -> list[Flight]:
        out = [Flight(True, d, d.wire()) for d in self.i.datagrams_to_send(self.clock)]
        out += [Flight(False, d, d.wire()) for d in self.r.datagrams_to_send(self.clock)]
        return out

    def deliver(self, f: Flight) -> None:
        d = f.datagram
        data = f.wire
        if d.encapsulated:  # the receiving socket is the NAT-T one: strip the marker
            kind, data = framing.classify(data)
            assert kind is framing.Kind.IKE
        if f.to_responder:
            src = self.public((self.i.local[0], d.local_port))
            assert d.remote[0] == self.r_addr[0]
            self.r.receive_datagram(data, src, self.clock, local_port=d.remote[1])
        else:
            dst = self.private(d.remote)
            if dst is None:
                return  # no NAT mapping: the NAPT drops it
            self.i.receive_datagram(data, (self.r_addr[0], d.local_port), self.clock,
                                    local_port=dst[1])

    def _drain_events(self) -> None:
        for sa, sink in ((self.i, self.i_events), (self.r, self.r_events)):
            while (ev := sa.next_event()) is not None:
                sink.append(ev)

    def step(self) -> bool:
        """Deliver everything in flight once; advance the clock to the next timer when idle.
        Returns False when nothing is left to do."""
        flights = self._collect()
        if flights:
            self.log.extend(flights)
            for f in (self.hook(flights) if self.hook else flights):
                self.deliver(f)
            self._drain_events()
            return True
        timers = [t for t in (self.i.next_timer(), self.r.next_timer()) if t is not None]
        pending = [t for t in timers if t <= self.clock + 120]
        if not pending:
            return False
        self.clock = max(self.clock, min(pending))
        for sa in (self.i, self.r):
            t = sa.next_timer()
            if t is not None and t <= self.clock:
                sa.handle_timer(self.clock)
        self._drain_events()
        return True

    def run(self, max_steps: int = 60) -> Pair:
        for _ in range(max_steps):
            if self.i.established and self.r.established and not self._busy():
                break
            if not self.step():
                break
        self._drain_events()
        return self

    def _busy(self) -> bool:
        return bool(self.i._outbox or self.r._outbox or not self.i.tasks.idle
                    or not self.r.tasks.idle)

    def events(self, side: str, cls: type) -> list:
        return [e for e in (self.i_events if side == "i" else self.r_events)
                if isinstance(e, cls)]
