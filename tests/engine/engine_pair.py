"""In-memory pair of IKE SAs with a fake clock, a simulated NAPT and hooks to lose, duplicate,
reorder or damage datagrams in flight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from ikecp import framing
from ikecp.cp import CpRegistry, NatInfoHandler, NatInfoProvider
from ikecp.engine import Datagram, Identity, IkeSa, PskAuthenticator, Settings
from ikecp.engine.fragments import FragmentDropped, FragmentPolicy, Reassembler
from ikecp.events import Event
from ikecp.message import SKF

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
    #: (side, the SA that emitted it, event), in order: what a dispatcher would hand out.
    trail: list[tuple[str, IkeSa, Event]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every SA of each side, oldest first: rekeying and reauthentication add SAs.
        self.i_sas = [IkeSa.initiator(self.i_settings, self.i_addr, self.r_addr,
                                      backend=self.backend)]
        self.r_sas = [IkeSa.responder(self.r_settings, self.r_addr, backend=self.backend)]
        self._map: dict[tuple[str, int], tuple[str, int]] = {}
        self._next_public_port = 40001

    @staticmethod
    def _current(sas: list[IkeSa]) -> IkeSa:
        return next((sa for sa in reversed(sas) if sa.established), sas[-1])

    @property
    def i(self) -> IkeSa:
        """The FAP side's current IKE SA: the newest established one."""
        return self._current(self.i_sas)

    @i.setter
    def i(self, sa: IkeSa) -> None:
        self.i_sas = [sa]

    @property
    def r(self) -> IkeSa:
        """The SeGW side's current IKE SA."""
        return self._current(self.r_sas)

    @staticmethod
    def route(sas: list[IkeSa], data: bytes) -> IkeSa | None:
        """The SA a datagram is for, by its SPIs; None if no SA has them."""
        spi_i, spi_r = data[:8], data[8:16]
        for sa in reversed(sas):
            if sa.spi_i == spi_i and (sa.spi_r == spi_r or bytes(8) in (sa.spi_r, spi_r)):
                return sa
        return None

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
        out = [Flight(True, d, d.wire()) for sa in list(self.i_sas)
               for d in sa.datagrams_to_send(self.clock)]
        out += [Flight(False, d, d.wire()) for sa in list(self.r_sas)
                for d in sa.datagrams_to_send(self.clock)]
        return out

    def deliver(self, f: Flight) -> None:
        d = f.datagram
        data = f.wire
        if d.encapsulated:  # the receiving socket is the NAT-T one: strip the marker
            kind, data = framing.classify(data)
            assert kind is framing.Kind.IKE
        if f.to_responder:
            src = self.public((self.i_addr[0], d.local_port))
            assert d.remote[0] == self.r_addr[0]
            sa = self.route(self.r_sas, data)
            if sa is None and self.r.established and len(data) > 19 and data[18] == 34 \
                    and not data[19] & 0x20:
                sa = IkeSa.responder(self.r_settings, self.r_addr, backend=self.backend)
                self.r_sas.append(sa)  # a new IKE_SA_INIT (reauthentication)
            # Unroutable (damaged) datagrams go to the current SA, which drops them.
            (sa or self.r).receive_datagram(data, src, self.clock, local_port=d.remote[1])
        else:
            dst = self.private(d.remote)
            if dst is None:
                return  # no NAT mapping: the NAPT drops it
            sa = self.route(self.i_sas, data) or self.i
            sa.receive_datagram(data, (self.r_addr[0], d.local_port), self.clock,
                                local_port=dst[1])

    def _drain_events(self) -> None:
        for sas, sink in ((self.i_sas, self.i_events), (self.r_sas, self.r_events)):
            for sa in list(sas):
                while (ev := sa.next_event()) is not None:
                    sink.append(ev)
                    self.trail.append(("i" if sink is self.i_events else "r", sa, ev))
                    new = getattr(ev, "sa", None)  # rekeyed, redundant or reauth SA
                    if isinstance(new, IkeSa) and new not in sas:
                        sas.append(new)

    def step(self) -> bool:
        """Deliver everything in flight once; advance the clock to the next timer when idle.
        Returns False when nothing is left to do."""
        return self._collect_pending() or self.tick(self.clock + 120)

    def tick(self, until: float) -> bool:
        """Advance the clock to the next timer due by ``until`` and run it; False if none."""
        sas = self.i_sas + self.r_sas
        pending = [t for sa in sas if (t := sa.next_timer()) is not None and t <= until]
        if not pending:
            return False
        self.clock = max(self.clock, min(pending))
        for sa in sas:
            t = sa.next_timer()
            if t is not None and t <= self.clock:
                sa.handle_timer(self.clock)
        self._drain_events()
        return True

    def advance(self, until: float, max_steps: int = 2000) -> Pair:
        """Run every exchange and timer up to time ``until`` (lifetimes, rekeys, DPD)."""
        for _ in range(max_steps):
            if self._collect_pending():
                continue
            if not self.tick(until):
                break
        self.clock = max(self.clock, until)
        self._drain_events()
        return self

    def _collect_pending(self) -> bool:
        flights = self._collect()
        if not flights:
            return False
        self.log.extend(flights)
        for f in (self.hook(flights) if self.hook else flights):
            self.deliver(f)
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
        return any(sa._outbox or not sa.tasks.idle for sa in self.i_sas + self.r_sas)

    def opened(self, to_responder: bool, exchange: int):
        """The first SK message of ``exchange`` sent in one direction, decrypted with the
        receiver's keys; SKF fragments (RFC 7383) are put back together first."""
        receiver = self.r if to_responder else self.i
        parts = Reassembler(FragmentPolicy())
        for f in self.log:
            msg = self.backend.decode_message(f.datagram.data)
            if f.to_responder != to_responder or msg.exchange != exchange:
                continue
            if not isinstance(msg.payloads[-1], SKF):
                return self.backend.open_message(receiver.cipher_in, f.datagram.data)
            try:
                whole = parts.add(self.backend, receiver.cipher_in, msg, msg.payloads[-1],
                                  f.datagram.data, 0.0)
            except FragmentDropped:  # a retransmitted copy
                continue
            if whole is not None:
                return whole
        raise AssertionError("message not sent")

    def events(self, side: str, cls: type) -> list:
        return [e for e in (self.i_events if side == "i" else self.r_events)
                if isinstance(e, cls)]
