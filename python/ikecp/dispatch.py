"""``Dispatcher``: many IKE SAs behind one pair of UDP ports, still sans-IO.

The SeGW, the FAP and the load generator all need the same thing between their sockets and
the engine: find the SA a datagram belongs to, create responder SAs for new IKE_SA_INIT
requests (bounded, with an optional stateless COOKIE challenge, RFC 7296 §2.6), tell IKE from
ESP and NAT keepalives on the NAT-T port (RFC 3948 §2), keep one timer heap for all SAs and
forget SAs once they close. It reads no clock and owns no socket: the caller passes ``now``.

Usage, from any I/O loop::

    d = Dispatcher(responder_settings, "198.51.100.10")
    d.receive(data, local_port, remote, now)      # each datagram read from a socket
    for dg in d.datagrams_to_send(): sock_for(dg.local_port).sendto(dg.wire(), dg.remote)
    for sa, event in d.events(): ...
    d.handle_timer(now) when now >= d.next_timer()

SAs are keyed by our own SPI (SPIr for responder SAs, SPIi for initiator SAs), which the
header's Initiator flag tells apart; a responder SA whose SPIr does not exist yet is found by
(remote address, SPIi) so retransmitted IKE_SA_INIT requests reach it.

An SA's lifecycle brings new SAs: an IKE rekey (``IkeSaRekeyed``), the loser of a rekey
collision (``RedundantIkeSa``) and a reauthentication (``ReauthStarted``) each hand over a new
``IkeSa`` in an event; the dispatcher files it under its own SPI and drives it like any other.
A reauthenticating SA is drained again when its successor is up or gone, since that is
when it deletes itself or schedules another attempt.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from . import _backend, framing
from .const import ExchangeType, HeaderFlag, NotifyType
from .engine import Datagram, IkeSa, Settings, State
from .engine.events import Event, IkeSaRekeyed, ReauthStarted, RedundantIkeSa
from .errors import ParseError
from .message import Message, Nonce, Notify

Address = tuple[str, int]
_NEW_SA = frozenset({IkeSaRekeyed, RedundantIkeSa, ReauthStarted})

#: IKE header: SPIi(8) SPIr(8) next payload, version, exchange, flags, message ID, length.
IKE_HEADER_LEN = 28
_ZERO_SPI = bytes(8)


@dataclass(slots=True)
class DispatchStats:
    """What arrived and what was done with it; nothing here is ever an exception."""

    datagrams: int = 0          # everything passed to ``receive``
    ike: int = 0                # IKE messages handed to an SA
    keepalives: int = 0         # NAT keepalives (0xFF) on the NAT-T port
    esp: int = 0                # UDP-encapsulated ESP (no data plane here: counted only)
    invalid: int = 0            # too short for an IKE header, or neither IKE nor ESP
    unknown_spi: int = 0        # no SA with that SPI
    no_responder: int = 0       # IKE_SA_INIT request while we accept none
    half_open_refused: int = 0  # IKE_SA_INIT dropped: too many half-open SAs
    cookies_sent: int = 0       # stateless COOKIE challenges
    bad_cookies: int = 0        # IKE_SA_INIT with a missing or wrong cookie while challenging
    sas_created: int = 0
    sas_removed: int = 0


class Dispatcher:
    """The SA table, the demultiplexer and the timer heap of one IKE endpoint.

    ``responder`` is the ``Settings`` for SAs created by incoming IKE_SA_INIT requests
    (None: accept none, as on a FAP). ``local_ip`` and ``port`` are the address and IKE port
    our sockets are bound to (the address enters NAT detection). ``natt_ports`` are the
    local ports on which datagrams carry the non-ESP marker (default: the responder's NAT-T
    port, else 4500). At most
    ``max_half_open`` responder SAs may wait for IKE_AUTH; from ``cookie_threshold`` half-open
    SAs on, a new IKE_SA_INIT must return our COOKIE first.
    """

    def __init__(self, responder: Settings | None, local_ip: str, *, port: int = 500,
                 natt_ports: Collection[int] | None = None, max_half_open: int = 10_000,
                 cookie_threshold: int | None = None, backend: Any = None) -> None:
        self.responder = responder
        self.local_ip = local_ip
        self.port = port
        if natt_ports is None:
            natt_ports = {responder.natt_port if responder is not None else 4500}
        self.natt_ports = frozenset(natt_ports)
        self.max_half_open = max_half_open
        self.cookie_threshold = cookie_threshold
        self.backend = backend if backend is not None else _backend.backend
        self.stats = DispatchStats()
        self._by_spi: dict[bytes, IkeSa] = {}
        self._half_open: dict[tuple[Address, bytes], IkeSa] = {}
        self._half_key: dict[int, tuple[Address, bytes]] = {}
        self._timers: list[tuple[float, int, IkeSa]] = []
        self._scheduled: dict[int, float] = {}
        self._seq = itertools.count()
        self._outbox: list[Datagram] = []
        self._events: list[tuple[IkeSa, Event]] = []
        self._now = 0.0
        self._cookie_secrets = {0: os.urandom(32)}  # version -> secret (current + previous)
        self._cookie_version = 0
        self._predecessor: dict[int, IkeSa] = {}  # id(reauthenticating SA) -> the old one

    # --- the sans-IO surface ----------------------------------------------------------------

    def receive(self, data: bytes, local_port: int, remote: Address, now: float, *,
                local_ip: str | None = None) -> None:
        """Route one datagram read on ``local_port`` from ``remote``. Never raises for bad
        input: whatever cannot be used is counted in ``stats`` and dropped."""
        self._now = now
        st = self.stats
        st.datagrams += 1
        if local_port in self.natt_ports:
            kind, data = framing.classify(data)
            if kind is framing.Kind.KEEPALIVE:
                st.keepalives += 1
                return
            if kind is framing.Kind.ESP:
                st.esp += 1
                return
            if kind is framing.Kind.INVALID:
                st.invalid += 1
                return
        if len(data) < IKE_HEADER_LEN:
            st.invalid += 1
            return
        spi_i, spi_r, flags = data[:8], data[8:16], data[19]
        from_initiator = bool(flags & HeaderFlag.INITIATOR)
        sa = self._by_spi.get(spi_r if from_initiator else spi_i)
        if sa is None and from_initiator and spi_r == _ZERO_SPI:
            sa = self._half_open.get((remote, spi_i))
            if sa is None:
                sa = self._new_responder(data, flags, local_port, remote, local_ip)
                if sa is None:
                    return
        if sa is None:
            st.unknown_spi += 1
            return
        st.ike += 1
        sa.receive_datagram(data, remote, now, local_port)
        self._after(sa)

    def datagrams_to_send(self) -> list[Datagram]:
        """Everything the SAs want sent, in order; send each as ``dg.wire()`` to
        ``dg.remote`` from the socket on ``dg.local_port``."""
        out, self._outbox = self._outbox, []
        return out

    def events(self) -> list[tuple[IkeSa, Event]]:
        """Engine events since the last call, each with the SA that emitted it."""
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        """The earliest time ``handle_timer`` has work to do, or None."""
        heap = self._timers
        while heap:
            when, _, sa = heap[0]
            if self._scheduled.get(id(sa)) == when:
                return when
            heapq.heappop(heap)  # superseded entry
        return None

    def handle_timer(self, now: float) -> None:
        """Run every SA timer that is due at ``now`` (retransmissions, timeouts, DPD)."""
        self._now = now
        heap = self._timers
        while heap and heap[0][0] <= now:
            when, _, sa = heapq.heappop(heap)
            if self._scheduled.get(id(sa)) != when:
                continue
            del self._scheduled[id(sa)]
            sa.handle_timer(now)
            self._after(sa)

    # --- SAs the application starts or acts on ---------------------------------------------

    def connect(self, settings: Settings, remote: Address, now: float, *,
                local: Address | None = None, natt_local_port: int | None = None) -> IkeSa:
        """Start an initiator SA towards ``remote`` from ``local`` (default: ``local_ip`` and
        ``port``); after a NAT is found it floats to ``natt_local_port`` (default: the
        settings' NAT-T port, which is also the peer's)."""
        self._now = now
        sa = IkeSa.initiator(settings, local or (self.local_ip, self.port), remote,
                             backend=self.backend, natt_local_port=natt_local_port)
        self._by_spi[sa.spi_i] = sa
        self.stats.sas_created += 1
        self._after(sa)
        return sa

    def update(self, sa: IkeSa, now: float) -> None:
        """Collect the results of a call the application made on ``sa`` itself
        (``delete()``, ``check_liveness()``)."""
        self._now = now
        self._after(sa)

    def delete_all(self, now: float) -> int:
        """Start an INFORMATIONAL DELETE on every established SA; close the others.
        Returns how many DELETE requests were queued."""
        self._now = now
        n = 0
        for sa in list(self.sas()):
            n += sa.established
            sa.delete()
            self._after(sa)
        return n

    def sas(self) -> Iterator[IkeSa]:
        """Every SA in the table (half-open ones included)."""
        yield from self._by_spi.values()
        for sa in self._half_open.values():
            if sa.spi_r == _ZERO_SPI or self._by_spi.get(sa.spi_r) is not sa:
                yield sa

    def find(self, spi: bytes) -> IkeSa | None:
        """The SA whose own SPI (SPIr for responder SAs, SPIi for initiator SAs) is ``spi``."""
        return self._by_spi.get(spi)

    def __len__(self) -> int:
        return sum(1 for _ in self.sas())

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    # --- internals --------------------------------------------------------------------------

    def _new_responder(self, data: bytes, flags: int, local_port: int, remote: Address,
                       local_ip: str | None) -> IkeSa | None:
        st = self.stats
        if flags & HeaderFlag.RESPONSE or data[18] != ExchangeType.IKE_SA_INIT:
            st.unknown_spi += 1
            return None
        if self.responder is None:
            st.no_responder += 1
            return None
        if len(self._half_open) >= self.max_half_open:
            st.half_open_refused += 1
            return None
        if self.cookie_threshold is not None and len(self._half_open) >= self.cookie_threshold \
                and not self._cookie_ok(data, local_port, remote):
            return None
        sa = IkeSa.responder(self.responder, (local_ip or self.local_ip, local_port),
                             backend=self.backend)
        key = (remote, data[:8])
        self._half_open[key] = sa
        self._half_key[id(sa)] = key
        st.sas_created += 1
        return sa

    def rotate_cookie_secret(self) -> None:
        """Start a new COOKIE secret (RFC 7296 §2.6 asks for regular changes); cookies made
        with the previous secret stay valid until the next rotation."""
        self._cookie_version = (self._cookie_version + 1) & 0xFFFF
        previous = (self._cookie_version - 1) & 0xFFFF
        self._cookie_secrets = {previous: self._cookie_secrets[previous],
                                self._cookie_version: os.urandom(32)}

    def _cookie(self, nonce: bytes, remote: Address, spi_i: bytes, version: int) -> bytes:
        """RFC 7296 §2.6: version of the secret | hash(Ni | IPi | SPIi | secret)."""
        secret = self._cookie_secrets[version]
        digest = hashlib.sha256(nonce + remote[0].encode() + spi_i + secret)
        return version.to_bytes(2, "big") + digest.digest()

    def _cookie_ok(self, data: bytes, local_port: int, remote: Address) -> bool:
        """True if the request carries our cookie; otherwise challenge it statelessly."""
        try:
            msg = self.backend.decode_message(data)
        except (ParseError, ValueError):
            self.stats.invalid += 1
            return False
        nonce = msg.first(Nonce)
        if nonce is None:
            self.stats.invalid += 1
            return False
        expected = self._cookie(nonce.data, remote, msg.spi_i, self._cookie_version)
        first = msg.payloads[0] if msg.payloads else None
        if isinstance(first, Notify) and first.notify_type == NotifyType.COOKIE:
            version = int.from_bytes(first.data[:2], "big")
            if version in self._cookie_secrets and hmac.compare_digest(
                    first.data, self._cookie(nonce.data, remote, msg.spi_i, version)):
                return True
            self.stats.bad_cookies += 1
        challenge = Message(msg.spi_i, _ZERO_SPI, ExchangeType.IKE_SA_INIT,
                            HeaderFlag.RESPONSE, 0, (Notify(0, NotifyType.COOKIE, data=expected),))
        encap = local_port in self.natt_ports
        self._outbox.append(Datagram(self.backend.encode_message(challenge), local_port, remote,
                                     encap))
        self.stats.cookies_sent += 1
        return False

    def _after(self, sa: IkeSa) -> None:
        """Drain ``sa`` and bring the tables and the timer heap up to date."""
        self._outbox.extend(sa.datagrams_to_send(self._now))
        events = self._events
        born: list[Any] = []
        while (ev := sa.next_event()) is not None:
            events.append((sa, ev))
            if type(ev) in _NEW_SA:
                born.append(ev)
        for ev in born:
            self._adopt(ev.sa, sa if type(ev) is ReauthStarted else None)
        key = id(sa)
        if self._predecessor and (sa.established or sa.closed):
            old = self._predecessor.pop(key, None)
            if old is not None:
                self._after(old)
        if sa.closed or (sa.state is State.IDLE and not sa.is_initiator):
            # Closed, or a responder SA that refused IKE_SA_INIT statelessly / dropped it.
            self._remove(sa)
            return
        if not sa.is_initiator:
            if sa.spi_r != _ZERO_SPI and sa.spi_r not in self._by_spi:
                self._by_spi[sa.spi_r] = sa
            if sa.established and key in self._half_key:
                self._half_open.pop(self._half_key.pop(key), None)
        when = sa.next_timer()
        if when is None:
            self._scheduled.pop(key, None)
        elif self._scheduled.get(key) != when:
            self._scheduled[key] = when
            heapq.heappush(self._timers, (when, next(self._seq), sa))

    def _adopt(self, new: IkeSa, predecessor: IkeSa | None) -> None:
        """File an SA the engine made (rekey, collision, reauthentication) under its SPI."""
        self._by_spi[new.spi_i if new.is_initiator else new.spi_r] = new
        self.stats.sas_created += 1
        if predecessor is not None:
            self._predecessor[id(new)] = predecessor
        self._after(new)

    def _remove(self, sa: IkeSa) -> None:
        key = id(sa)
        removed = False
        own = sa.spi_i if sa.is_initiator else sa.spi_r
        if self._by_spi.get(own) is sa:
            del self._by_spi[own]
            removed = True
        half = self._half_key.pop(key, None)
        if half is not None:
            self._half_open.pop(half, None)
            removed = True
        self._scheduled.pop(key, None)
        self._predecessor.pop(key, None)
        if removed:
            self.stats.sas_removed += 1
