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
header's Initiator flag tells apart. A responder SA is also found by (initiator IP, SPIi) for
its whole life, so an IKE_SA_INIT retransmitted from any source port, before or after the SA
is established, reaches that SA and never creates a second one.

Unauthenticated input costs bounded work before any state exists: an IKE_SA_INIT request
larger than ``max_init_size`` or with more than ``max_payloads`` payloads is dropped after
a walk over the generic payload headers (no full decode), and the COOKIE check uses that walk
too. Half-open SAs are capped per initiator IP and in total; beyond a cap, or beyond the
COOKIE thresholds, a request without a valid COOKIE gets a COOKIE demand (RFC 7296 §2.6). A
request for an unknown SPI gets an unprotected INVALID_IKE_SPI (§2.21.4), rate-limited.

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
import socket
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from .. import _backend, framing
from ..addr import Address
from ..const import IKE_HEADER_LEN, ExchangeType, HeaderFlag, NotifyType
from ..engine import Datagram, IkeSa, Settings, State
from ..events import Event, IkeSaRekeyed, ReauthStarted, RedundantIkeSa
from ..message import Message, Notify

_NEW_SA = frozenset({IkeSaRekeyed, RedundantIkeSa, ReauthStarted})

_ZERO_SPI = bytes(8)
# Plain ints: an IntFlag/IntEnum operation runs Python code, and this is the per-datagram path.
_SA_INIT, _IKE_AUTH = int(ExchangeType.IKE_SA_INIT), int(ExchangeType.IKE_AUTH)
_INFORMATIONAL = int(ExchangeType.INFORMATIONAL)
_NONCE, _NOTIFY, _COOKIE_TYPE = 40, 41, int(NotifyType.COOKIE).to_bytes(2, "big")
_GENERIC, _U32 = struct.Struct("!BxH"), struct.Struct("!I")  # next payload, -, length
_I, _R = int(HeaderFlag.INITIATOR), int(HeaderFlag.RESPONSE)

#: Defaults (see docs/wire.md, "Limits and DoS protection").
MAX_INIT_SIZE = 8192
MAX_PAYLOADS = 32
MAX_HALF_OPEN = 10_000
MAX_HALF_OPEN_IP = 1_000
COOKIE_THRESHOLD = 100
COOKIE_THRESHOLD_IP = 10
INVALID_SPI_RATE = 100.0


def source_of(ip: str) -> str | bytes:
    """What the per-IP limits count by: the IPv4 address, or the /64 of an IPv6 address
    (one host or site usually holds a whole /64, so per-address limits would not bind)."""
    return socket.inet_pton(socket.AF_INET6, ip)[:8] if ":" in ip else ip


def scan_init(data: bytes, max_payloads: int) -> tuple[bytes | None, bytes | None] | None:
    """Walk the generic payload headers of an unauthenticated IKE_SA_INIT request (RFC 7296
    §3.2) without decoding a body: (first COOKIE notify data or None, Nonce data or None),
    or None when the chain is malformed or longer than ``max_payloads``."""
    if len(data) < IKE_HEADER_LEN:
        return None
    end = min(len(data), _U32.unpack_from(data, 24)[0])
    kind, at, cookie, nonce = data[16], IKE_HEADER_LEN, None, None
    generic = _GENERIC.unpack_from
    for n in range(max_payloads + 1):
        if kind == 0:
            return (cookie, nonce) if at == end else None
        if n == max_payloads or at + 4 > end:
            return None
        following, length = generic(data, at)
        if length < 4 or at + length > end:
            return None
        if kind == _NONCE:
            if nonce is None:
                nonce = data[at + 4:at + length]
        elif n == 0 and kind == _NOTIFY and length >= 8 and data[at + 5] == 0 \
                and data[at + 6:at + 8] == _COOKIE_TYPE:
            cookie = data[at + 8:at + length]
        kind, at = following, at + length
    return None


@dataclass(slots=True)
class DispatchStats:
    """What arrived and what was done with it; nothing here is ever an exception."""

    datagrams: int = 0          # everything passed to ``receive``
    ike: int = 0                # IKE messages handed to an SA
    keepalives: int = 0         # NAT keepalives (0xFF) on the NAT-T port
    esp: int = 0                # UDP-encapsulated ESP reaching the dispatcher (the TUN data plane
                                #   keeps its own; without it ESP is counted only)
    invalid: int = 0            # too short for an IKE header, or neither IKE nor ESP
    unknown_spi: int = 0        # no SA with that SPI
    no_responder: int = 0       # IKE_SA_INIT request while we accept none
    half_open_refused: int = 0  # IKE_SA_INIT over a half-open cap (per IP or in total)
    cookies_sent: int = 0       # stateless COOKIE challenges
    bad_cookies: int = 0        # IKE_SA_INIT with a wrong cookie while challenging
    oversized: int = 0          # IKE_SA_INIT requests over ``max_init_size``
    too_many_payloads: int = 0  # IKE_SA_INIT requests over ``max_payloads`` (or malformed)
    invalid_spi_sent: int = 0   # unprotected INVALID_IKE_SPI answers to unknown SPIs
    misrouted: int = 0          # worker of several: IKE messages whose SPI names another worker
    sas_created: int = 0
    sas_removed: int = 0


class Dispatcher:
    """The SA table, the demultiplexer and the timer heap of one IKE endpoint.

    ``responder`` is the ``Settings`` for SAs created by incoming IKE_SA_INIT requests
    (None: accept none, as on a FAP). ``local_ip`` and ``port`` are the address and IKE port
    our sockets are bound to (the address enters NAT detection). ``natt_ports`` are the
    local ports on which datagrams carry the non-ESP marker (default: the responder's NAT-T
    port, else 4500). At most ``max_half_open`` responder SAs may wait for IKE_AUTH, at most
    ``max_half_open_ip`` of them from one IP (generous: every FAP behind one carrier-grade
    NAT shares its address); from ``cookie_threshold`` half-open SAs on, or
    ``cookie_threshold_ip`` from one IP, a new IKE_SA_INIT must return our COOKIE first
    (None: never). ``invalid_spi_rate`` bounds the INVALID_IKE_SPI answers per second (0:
    none). ``worker`` (index, count): this dispatcher is one of several processes behind
    the reuseport steering program; it counts in ``stats.misrouted`` the IKE messages whose
    SPI names another worker (its SAs' SPIs carry the index: ``Settings.spi_tag``).
    ``cookie_key``: COOKIE secrets derived from it, so every process holding the key
    accepts the others' cookies (default: random secrets).
    """

    def __init__(self, responder: Settings | None, local_ip: str, *, port: int = 500,
                 natt_ports: Collection[int] | None = None,
                 max_half_open: int = MAX_HALF_OPEN, max_half_open_ip: int = MAX_HALF_OPEN_IP,
                 cookie_threshold: int | None = COOKIE_THRESHOLD,
                 cookie_threshold_ip: int | None = COOKIE_THRESHOLD_IP,
                 max_init_size: int = MAX_INIT_SIZE, max_payloads: int = MAX_PAYLOADS,
                 invalid_spi_rate: float = INVALID_SPI_RATE, backend: Any = None,
                 worker: tuple[int, int] | None = None,
                 cookie_key: bytes | None = None) -> None:
        self.responder = responder
        self.local_ip = local_ip
        self.port = port
        if natt_ports is None:
            natt_ports = {responder.natt_port if responder is not None else 4500}
        self.natt_ports = frozenset(natt_ports)
        self.max_half_open = max_half_open
        self.max_half_open_ip = max_half_open_ip
        self.cookie_threshold = cookie_threshold
        self.cookie_threshold_ip = cookie_threshold_ip
        self.max_init_size = max_init_size
        self.max_payloads = max_payloads
        self.invalid_spi_rate = invalid_spi_rate
        self.backend = backend if backend is not None else _backend.backend
        self.stats = DispatchStats()
        self._by_spi: dict[bytes, IkeSa] = {}
        # Responder SAs by (initiator IP, SPIi) for their whole life; which are half-open,
        # and how many of those each IP holds.
        self._by_init: dict[tuple[str, bytes], IkeSa] = {}
        self._half: set[int] = set()
        self._half_per_ip: dict[str | bytes, int] = {}
        self._spi_tokens = invalid_spi_rate
        self._spi_tokens_at = 0.0
        self._timers: list[tuple[float, int, IkeSa]] = []
        self._seq = itertools.count()
        self._outbox: list[Datagram] = []
        self._events: list[tuple[IkeSa, Event]] = []
        self._now = 0.0
        self.worker = worker
        self._cookie_key = cookie_key
        self._cookie_version = 0
        # version -> secret (current + previous)
        self._cookie_secrets = {0: self._cookie_secret(0)}
        self._predecessor: dict[int, IkeSa] = {}  # id(reauthenticating SA) -> the old one
        # SAs that got IKE messages since take_active(); None until its first call (a load
        # generator never asks: nothing piles up).
        self._active: set[IkeSa] | None = None

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
        from_initiator = bool(flags & _I)
        sa = self._by_spi.get(spi_r if from_initiator else spi_i)
        if sa is None and from_initiator and spi_r == _ZERO_SPI and data[18] == _SA_INIT \
                and not flags & _R:
            scanned = self._admit(data)
            if scanned is None:
                return
            sa = self._by_init.get((remote[0], spi_i))
            if sa is None:
                if self.worker is not None:
                    self._check_route(spi_i)
                sa = self._new_responder(data, scanned, local_port, remote, local_ip)
                if sa is None:
                    return
        if sa is None:
            st.unknown_spi += 1
            if self.worker is not None:
                self._check_route(spi_r if from_initiator and spi_r != _ZERO_SPI else spi_i)
            if not flags & _R:
                self._invalid_spi(data, local_port, remote)
            return
        st.ike += 1
        if self._active is not None:
            self._active.add(sa)
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
            if sa.timer_queued == when:
                return when
            heapq.heappop(heap)  # superseded entry
        return None

    def handle_timer(self, now: float) -> None:
        """Run every SA timer that is due at ``now`` (retransmissions, timeouts, DPD)."""
        self._now = now
        heap = self._timers
        while heap and heap[0][0] <= now:
            when, _, sa = heapq.heappop(heap)
            if sa.timer_queued != when:
                continue
            sa.timer_queued = None
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
        for sa in self._by_init.values():
            if sa.spi_r == _ZERO_SPI or self._by_spi.get(sa.spi_r) is not sa:
                yield sa

    def take_active(self) -> set[IkeSa]:
        """The SAs that were handed IKE messages since the last call (still in the table or
        not): what a periodic pass over peers that spoke needs, without visiting every SA.
        Tracking starts with the first call."""
        out, self._active = self._active, set()
        return out if out is not None else set()

    def find(self, spi: bytes) -> IkeSa | None:
        """The SA whose own SPI (SPIr for responder SAs, SPIi for initiator SAs) is ``spi``."""
        return self._by_spi.get(spi)

    def __len__(self) -> int:
        return sum(1 for _ in self.sas())

    @property
    def half_open(self) -> int:
        return len(self._half)

    # --- internals --------------------------------------------------------------------------

    def _admit(self, data: bytes) -> tuple[bytes | None, bytes] | None:
        """Bounded checks on an IKE_SA_INIT request before anything is decoded or kept:
        (COOKIE data or None, Nonce data), or None (dropped, counted)."""
        st = self.stats
        if self.responder is None:
            st.no_responder += 1
            return None
        if len(data) > self.max_init_size:
            st.oversized += 1
            return None
        scanned = scan_init(data, self.max_payloads)
        if scanned is None or scanned[1] is None:
            st.too_many_payloads += 1
            return None
        return scanned[0], scanned[1]

    def _new_responder(self, data: bytes, scanned: tuple[bytes | None, bytes], local_port: int,
                       remote: Address, local_ip: str | None) -> IkeSa | None:
        st = self.stats
        ip = remote[0]
        source = source_of(ip)
        total, mine = len(self._half), self._half_per_ip.get(source, 0)
        full = total >= self.max_half_open or mine >= self.max_half_open_ip
        challenge = full or (self.cookie_threshold is not None
                             and total >= self.cookie_threshold) \
            or (self.cookie_threshold_ip is not None and mine >= self.cookie_threshold_ip)
        if challenge and not self._cookie_ok(data, scanned, local_port, remote):
            if full:
                st.half_open_refused += 1
            return None
        if full:
            # A valid cookie proves the address, not room: stay silent, the initiator's
            # retransmission (its cookie still valid) comes back when a slot is free.
            st.half_open_refused += 1
            return None
        assert self.responder is not None  # _admit checked
        sa = IkeSa.responder(self.responder, (local_ip or self.local_ip, local_port),
                             backend=self.backend)
        key = (ip, data[:8])
        self._by_init[key] = sa
        sa.init_key = key
        self._half.add(id(sa))
        self._half_per_ip[source] = mine + 1
        st.sas_created += 1
        return sa

    def _settle(self, sa: IkeSa) -> None:
        """``sa`` is no longer half-open (established or gone)."""
        key = id(sa)
        if key in self._half:
            self._half.remove(key)
            assert sa.init_key is not None  # only responder SAs are half-open
            source = source_of(sa.init_key[0])
            left = self._half_per_ip[source] - 1
            if left:
                self._half_per_ip[source] = left
            else:
                del self._half_per_ip[source]

    def _invalid_spi(self, data: bytes, local_port: int, remote: Address) -> None:
        """RFC 7296 §2.21.4: a request for an SA we do not know (we restarted, or it is
        forged) gets an unprotected INVALID_IKE_SPI with the same SPIs and message ID, so a
        peer whose SA died with us re-establishes at once. Token bucket: a spoofed flood gets
        at most ``invalid_spi_rate`` answers per second, each smaller than its request."""
        if data[17] >> 4 != 2 or not _IKE_AUTH <= data[18] <= _INFORMATIONAL:
            return  # not IKEv2, or not an exchange an SA of ours could have been in
        rate = self.invalid_spi_rate
        self._spi_tokens = min(rate, self._spi_tokens + (self._now - self._spi_tokens_at) * rate)
        self._spi_tokens_at = self._now
        if self._spi_tokens < 1:
            return
        self._spi_tokens -= 1
        flags = _R | (0 if data[19] & _I else _I)
        answer = Message(data[:8], data[8:16], data[18], flags,
                         int.from_bytes(data[20:24], "big"),
                         (Notify(0, NotifyType.INVALID_IKE_SPI),))
        self._outbox.append(Datagram(self.backend.encode_message(answer), local_port, remote,
                                     local_port in self.natt_ports))
        self.stats.invalid_spi_sent += 1

    def rotate_cookie_secret(self, version: int | None = None) -> None:
        """Start a new COOKIE secret (RFC 7296 §2.6 asks for regular changes); cookies made
        with the previous secret stay valid until the next rotation. ``version``: the one to
        make current (with a ``cookie_key``, processes that agree on it agree on the secret);
        default: the next."""
        new = (self._cookie_version + 1 if version is None else version) & 0xFFFF
        previous = (new - 1) & 0xFFFF
        old = self._cookie_secrets.get(previous)
        self._cookie_version = new
        self._cookie_secrets = {previous: old if old is not None
                                else self._cookie_secret(previous),
                                new: self._cookie_secret(new)}

    def _cookie_secret(self, version: int) -> bytes:
        if self._cookie_key is None:
            return os.urandom(32)
        return hmac.new(self._cookie_key, version.to_bytes(2, "big"), hashlib.sha256).digest()

    def _check_route(self, spi: bytes) -> None:
        """Count a message the steering program should have sent to another worker."""
        index, count = self.worker  # type: ignore[misc]
        if spi[0] % count != index:
            self.stats.misrouted += 1

    def _cookie(self, nonce: bytes, remote: Address, spi_i: bytes, version: int) -> bytes:
        """RFC 7296 §2.6: version of the secret | hash(Ni | IPi | SPIi | secret)."""
        secret = self._cookie_secrets[version]
        digest = hashlib.sha256(nonce + remote[0].encode() + spi_i + secret)
        return version.to_bytes(2, "big") + digest.digest()

    def _cookie_ok(self, data: bytes, scanned: tuple[bytes | None, bytes], local_port: int,
                   remote: Address) -> bool:
        """True if the request carries our cookie; otherwise challenge it statelessly. Works
        on ``scan_init``'s result: no full decode for a request that may be spoofed."""
        cookie, nonce = scanned
        spi_i = data[:8]
        if cookie is not None:
            version = int.from_bytes(cookie[:2], "big")
            if version in self._cookie_secrets and hmac.compare_digest(
                    cookie, self._cookie(nonce, remote, spi_i, version)):
                return True
            self.stats.bad_cookies += 1
        expected = self._cookie(nonce, remote, spi_i, self._cookie_version)
        challenge = Message(spi_i, _ZERO_SPI, ExchangeType.IKE_SA_INIT,
                            HeaderFlag.RESPONSE, 0, (Notify(0, NotifyType.COOKIE, data=expected),))
        encap = local_port in self.natt_ports
        self._outbox.append(Datagram(self.backend.encode_message(challenge), local_port, remote,
                                     encap))
        self.stats.cookies_sent += 1
        return False

    def _after(self, sa: IkeSa) -> None:
        """Drain ``sa`` and bring the tables and the timer heap up to date."""
        self._outbox.extend(sa.datagrams_to_send(self._now))
        fresh = sa.take_events()
        if fresh:
            events = self._events
            born: list[Any] = []
            for ev in fresh:
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
            if sa.established:
                self._settle(sa)
        when = sa.next_timer()
        if when is None:
            sa.timer_queued = None
        elif sa.timer_queued != when:
            sa.timer_queued = when
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
        self._settle(sa)
        init, sa.init_key = sa.init_key, None
        if init is not None:
            if self._by_init.get(init) is sa:
                del self._by_init[init]
            removed = True
        sa.timer_queued = None
        self._predecessor.pop(key, None)
        if removed:
            self.stats.sas_removed += 1
