"""``IkeSa``: one IKE SA, either role, as a sans-IO state machine.

The application feeds it received datagrams and the current time, and drains datagrams to
send, timers and events. It never reads a clock or touches a socket. It owns message IDs
(window 1), retransmission and the responder's reply cache (RFC 7296 §2.1-§2.4) and runs
the tasks of each exchange; the protocol content lives in the task modules.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _backend
from .. import addr as _addr
from ..const import NAT_KEEPALIVE, NON_ESP_MARKER, ConfigAttr, HeaderFlag, NotifyType
from ..const import ExchangeType as X
from ..cp.registry import CpContext
from ..errors import IntegrityError, LocalProtocolError, ParseError, RemoteProtocolError
from ..message import SK, SKF, Delete, Message, Notify, Payload
from ..record import record
from . import fragments, rules
from .auth import AuthTask
from .child_create import ChildCreateTask
from .config import ConfigTask
from .delete import DeleteTask
from .events import (
    DatagramDropped,
    Event,
    NatDetected,
    PeerBinding,
    ProtocolErrorReceived,
    ProtocolErrorSent,
    RemoteAddressChanged,
    SaFailed,
)
from .liveness import LivenessTask
from .nat_detection import NatDetectionTask
from .sa_init import SaInitTask
from .task import Ignore, Retry, Task
from .view import MessageView

if TYPE_CHECKING:
    from .settings import Identity, Settings
    from .transforms import Suite

Address = tuple[str, int]
log = logging.getLogger("ikecp.engine")
_INITIATOR, _RESPONSE = int(HeaderFlag.INITIATOR), int(HeaderFlag.RESPONSE)


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class State(enum.Enum):
    IDLE = "idle"                # responder waiting for IKE_SA_INIT
    INIT = "init"                # IKE_SA_INIT in progress (initiator)
    AUTH = "auth"                # keys derived, IKE_AUTH in progress
    ESTABLISHED = "established"
    CLOSED = "closed"


@record
class Datagram:
    """One IKE message to send.

    ``data`` is the bare IKE message. The I/O layer sends it from its socket on
    ``local_port`` to ``remote`` and, when ``encapsulated`` (UDP/4500 after the NAT-T float),
    prepends the 4-octet non-ESP marker (RFC 3948 §2.2) — ``wire()`` does exactly that. On
    receive the I/O layer strips the marker (``ikecp.framing.classify``) before calling
    ``IkeSa.receive_datagram`` and passes the port it arrived on as ``local_port``: the
    marker belongs to the socket, since port 4500 also carries ESP and keepalives.
    """

    data: bytes
    local_port: int
    remote: Address
    encapsulated: bool

    def wire(self) -> bytes:
        return NON_ESP_MARKER + self.data if self.encapsulated else self.data


@dataclass(slots=True)
class Stats:
    """Counters for tests and monitoring."""

    requests_processed: int = 0
    cached_replies: int = 0
    retransmissions: int = 0
    dropped: int = 0


class _Request:
    __slots__ = ("data", "deadline", "exchange", "msg_id", "tasks", "tries")

    def __init__(self, exchange: int, msg_id: int, data: bytes, tasks: list[Task]) -> None:
        self.exchange, self.msg_id, self.data, self.tasks = exchange, msg_id, data, tasks
        self.tries = 0
        self.deadline: float | None = None


class _Work:
    """A request being answered; ``index`` is the next task to run."""

    __slots__ = ("exchange", "index", "inner", "msg_id", "request_hash", "tasks")

    def __init__(self, exchange: int, msg_id: int, request_hash: int, inner: MessageView,
                 tasks: list[Any]) -> None:
        self.exchange, self.msg_id, self.request_hash = exchange, msg_id, request_hash
        self.inner, self.tasks, self.index = inner, tasks, 0


class _RefuseChild:
    """CREATE_CHILD_SA is not supported yet: refuse it without harming the IKE SA."""

    def process_r(self, sa: IkeSa, msg: MessageView) -> None:
        raise RemoteProtocolError(NotifyType.NO_ADDITIONAL_SAS, "CREATE_CHILD_SA unsupported")


class IkeSa:
    """One IKE SA. Build with ``IkeSa.initiator(...)`` or ``IkeSa.responder(...)``."""

    __slots__ = (
        "_arm",
        "_cached",
        "_close_event",
        "_cp_ctx",
        "_dpd_at",
        "_events",
        "_expected",
        "_half_open_at",
        "_keepalive_at",
        "_natt_local_port",
        "_next_id",
        "_now",
        "_outbox",
        "_parked",
        "_queue",
        "_reassembly",
        "_request",
        "backend",
        "child_failure",
        "child_spis",
        "cipher_in",
        "cipher_out",
        "encapsulated",
        "init_request",
        "init_response",
        "is_initiator",
        "key_material",
        "local",
        "local_behind_nat",
        "natt_supported",
        "nonce_i",
        "nonce_r",
        "peer_cas",
        "peer_fragmentation",
        "peer_hashes",
        "peer_id",
        "remote",
        "remote_behind_nat",
        "role",
        "settings",
        "sk_d",
        "sk_pi",
        "sk_pr",
        "spi_i",
        "spi_r",
        "state",
        "stats",
        "suite",
    )

    def __init__(self, settings: Settings, role: Role, local: Address,
                 remote: Address | None = None, *, backend: Any = None) -> None:
        self.settings = settings
        self.role = role
        self.is_initiator = role is Role.INITIATOR
        self.backend = backend if backend is not None else _backend.backend
        self.local: Address = local
        self.remote: Address = remote or ("0.0.0.0", 0)
        self.state = State.IDLE
        self.spi_i = os.urandom(8) if self.is_initiator else bytes(8)
        self.spi_r = bytes(8)
        self.suite: Suite = None  # type: ignore[assignment]  # set by IKE_SA_INIT
        self.nonce_i = self.nonce_r = b""
        self.sk_d = self.sk_pi = self.sk_pr = b""
        self.cipher_in: Any = None
        self.cipher_out: Any = None
        self.key_material: tuple[bytes, ...] = ()
        self.init_request = self.init_response = b""
        self.peer_id: Identity | None = None
        #: The peer's SIGNATURE_HASH_ALGORITHMS (None: it sent none) and CERTREQ CA key hashes.
        self.peer_hashes: tuple[int, ...] | None = None
        self.peer_cas: tuple[bytes, ...] = ()
        self.natt_supported = False
        #: The peer announced FRAGMENTATION_SUPPORTED (RFC 7383 §2.3).
        self.peer_fragmentation = False
        self._reassembly: fragments.Reassembler | None = None  # made on the first SKF
        self.local_behind_nat = self.remote_behind_nat = False
        # Messages to the NAT-T port carry the non-ESP marker from the very first one: an
        # initiator may start there (RFC 7296 §2.23), e.g. strongSwan reauthenticating.
        self.encapsulated = (remote if remote is not None and self.is_initiator
                             else local)[1] == settings.natt_port
        self.child_failure: tuple[int, str] | None = None
        self.child_spis: tuple[bytes, bytes] | None = None
        self.stats = Stats()
        self._cp_ctx: CpContext | None = None
        self._next_id = 0          # our next request's message ID
        self._expected = 0         # message ID of the next request we accept
        self._request: _Request | None = None
        self._queue: list[tuple[int, list[Task]]] = []
        self._cached: tuple[int, int, bytes] | None = None  # (msg id, hash(request), reply)
        self._outbox: list[Datagram] = []
        self._events: list[Event] = []
        self._arm = False
        self._close_event: Event | None = None
        self._now = 0.0
        self._half_open_at: float | None = None
        self._dpd_at: float | None = None
        self._keepalive_at: float | None = None
        self._natt_local_port = settings.natt_port
        self._parked: _Work | None = None  # a request waiting for a Deferred CP value

    @classmethod
    def initiator(cls, settings: Settings, local: Address, remote: Address, *,
                  backend: Any = None, natt_local_port: int | None = None) -> IkeSa:
        """An SA that starts IKE_SA_INIT towards ``remote`` right away.

        ``natt_local_port`` is the local port to float to when NAT is found (default
        ``settings.natt_port``); a load generator gives every simulated peer its own.
        """
        sa = cls(settings, Role.INITIATOR, local, remote, backend=backend)
        if natt_local_port is not None:
            sa._natt_local_port = natt_local_port
        sa.state = State.INIT
        sa._queue.append((X.IKE_SA_INIT, [SaInitTask(), NatDetectionTask()]))
        sa._kick()
        return sa

    @classmethod
    def responder(cls, settings: Settings, local: Address, *, backend: Any = None) -> IkeSa:
        """An SA waiting for an IKE_SA_INIT request to arrive at ``local``."""
        return cls(settings, Role.RESPONDER, local, backend=backend)

    # --- the sans-IO surface ----------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float,
                         local_port: int | None = None) -> None:
        """Feed one received IKE message (non-ESP marker already removed) from ``addr``."""
        self._now = now
        if self.state is State.CLOSED:
            self._drop("SA is closed")
            return
        try:
            self._receive(data, addr, local_port)
        except Exception:
            # A bug must not let one hostile datagram kill the caller's I/O loop.
            log.exception("internal error while handling a datagram; dropped")
            self._drop("internal error")

    def _receive(self, data: bytes, addr: Address, local_port: int | None) -> None:
        try:
            msg = self.backend.decode_message(data)
        except (ParseError, ValueError) as exc:
            self._drop(f"malformed message: {exc}")
            return
        if msg.major_version != 2:
            self._drop("unsupported major version")
            return
        flags = int(msg.flags)
        is_response = bool(flags & _RESPONSE)
        if msg.spi_i != self.spi_i and not (self.state is State.IDLE and not is_response):
            self._drop("unknown initiator SPI")
        elif bool(flags & _INITIATOR) == self.is_initiator:
            self._drop("wrong initiator flag")
        elif is_response:
            self._on_response(msg, data)
        else:
            self._on_request(msg, data, addr, local_port)
        self._kick()

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Everything queued for sending; starts the retransmission timer of a new request
        and finishes a response whose deferred CP values have all arrived."""
        self._now = now
        parked = self._parked
        if parked is not None and self.state is not State.CLOSED \
                and not parked.tasks[parked.index - 1].waiting_for_values():
            self._work(parked)
            self._kick()
        req = self._request
        if self._arm and req is not None:
            req.deadline = now + self.settings.retransmit.delay(req.tries)
        self._arm = False
        out, self._outbox = self._outbox, []
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` should next be called, or None."""
        if self.state is State.CLOSED:
            return None
        req = self._request
        soonest = req.deadline if req is not None else None
        reassembly = self._reassembly.deadline if self._reassembly is not None else None
        for t in (self._half_open_at, self._dpd_at, self._keepalive_at, reassembly):
            if t is not None and (soonest is None or t < soonest):
                soonest = t
        return soonest

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up, time out a half-open SA or start a liveness check."""
        self._now = now
        req = self._request
        if req is not None and req.deadline is not None and now >= req.deadline:
            if req.tries >= self.settings.retransmit.tries:
                self._fail("peer did not answer (retransmission limit reached)")
                return
            req.tries += 1
            req.deadline = None
            self.stats.retransmissions += 1
            self._send(req.data)
            self._arm = True
        if self._half_open_at is not None and now >= self._half_open_at:
            self._fail("IKE_AUTH did not arrive (half-open timeout)")
            return
        if self._reassembly is not None:  # RFC 7383: partial messages have a time limit
            for mid in self._reassembly.expire(now):
                self._drop(f"fragments of message {mid} timed out")
            if self._reassembly.deadline is None:
                self._reassembly = None
        keepalive = self.settings.keepalive_interval
        if self._keepalive_at is not None and keepalive is not None and now >= self._keepalive_at:
            # One 0xFF octet, no non-ESP marker: not encapsulated in the Datagram's sense.
            self._outbox.append(Datagram(NAT_KEEPALIVE, self.local[1], self.remote, False))
            self._keepalive_at = now + keepalive
        interval = self.settings.dpd_interval
        if self._dpd_at is not None and interval is not None and now >= self._dpd_at:
            self._dpd_at = now + interval
            if self._request is None and not self._queue:
                self.check_liveness()

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    # --- application requests ---------------------------------------------------------------

    def delete(self) -> None:
        """Delete the IKE SA with an INFORMATIONAL exchange (or just close if not up yet)."""
        if self.state is State.ESTABLISHED:
            self._queue.append((X.INFORMATIONAL, [DeleteTask()]))
            self._kick()
        elif self.state is not State.CLOSED:
            self._fail("deleted locally before establishment")

    def check_liveness(self) -> None:
        """Send an empty INFORMATIONAL request (dead peer detection)."""
        if self.state is not State.ESTABLISHED:
            raise LocalProtocolError("liveness checks need an established SA")
        self._queue.append((X.INFORMATIONAL, [LivenessTask()]))
        self._kick()

    def key_log(self) -> dict[str, object] | None:
        """SPIs, SK_e/SK_a keys and transform ids for a decryption key log (Wireshark's
        ikev2_decryption_table); None before keys exist. Secret: never log it by default."""
        if not self.key_material or self.suite is None:
            return None
        sk_ei, sk_er, sk_ai, sk_ar = self.key_material
        return {"spi_i": self.spi_i, "spi_r": self.spi_r, "sk_ei": sk_ei, "sk_er": sk_er,
                "sk_ai": sk_ai, "sk_ar": sk_ar, "encr": self.suite.encr,
                "encr_key_bits": self.suite.encr_key_bits, "integ": self.suite.integ}

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # --- for tasks --------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def set_nat(self, local_behind: bool, remote_behind: bool, *, supported: bool) -> None:
        self.natt_supported = supported or self.settings.force_encap
        self.local_behind_nat, self.remote_behind_nat = local_behind, remote_behind
        if self.natt_supported:
            self.emit(NatDetected(local_behind, remote_behind))

    def mark_established(self) -> None:
        self.state = State.ESTABLISHED
        self._half_open_at = None
        if self.settings.dpd_interval is not None:
            self._dpd_at = self._now + self.settings.dpd_interval
        keepalive = self.settings.keepalive_interval
        if keepalive is not None and self.local_behind_nat and self.encapsulated:
            self._keepalive_at = self._now + keepalive

    def cp_context(self) -> CpContext:
        ctx = self._cp_ctx
        if ctx is None:
            ctx = self._cp_ctx = CpContext(self.peer_id, self.remote, self.local_behind_nat,
                                           self.remote_behind_nat, self.spi_i, self.spi_r)
        else:
            ctx.peer_id, ctx.remote_addr = self.peer_id, self.remote
            ctx.local_behind_nat = self.local_behind_nat
            ctx.remote_behind_nat = self.remote_behind_nat
        return ctx

    def flush_cp_events(self) -> None:
        if self._cp_ctx is not None and self._cp_ctx.events:
            self._events.extend(self._cp_ctx.events)
            self._cp_ctx.events.clear()

    def release_cp(self) -> None:
        if self._cp_ctx is not None and not self.is_initiator:
            for provider in self.settings.cp.providers.values():
                provider.release(self._cp_ctx)

    def close(self, event: Event) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._request = None
        self._queue.clear()
        self._half_open_at = self._dpd_at = self._keepalive_at = None
        self.release_cp()
        self.emit(event)

    def close_after_response(self, event: Event) -> None:
        self._close_event = event

    # --- internals --------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.stats.dropped += 1
        self._events.append(DatagramDropped(reason))

    def _open(self, msg: Message, data: bytes) -> Message | None:
        """Verify, decrypt and decode an SK-protected message; drop it (None) if it fails.
        An SKF fragment (RFC 7383) is kept once verified, and the whole message comes back
        with its last fragment (None until then)."""
        try:
            if msg.payloads and isinstance(msg.payloads[-1], SKF):
                reassembly = self._reassembly
                if reassembly is None:
                    reassembly = self._reassembly = fragments.Reassembler(
                        self.settings.fragmentation)
                whole = reassembly.add(self.backend, self.cipher_in, msg, msg.payloads[-1],
                                       data, self._now)
                if reassembly.deadline is None:  # nothing partial left: free it (memory/SA)
                    self._reassembly = None
                return whole
            return self.backend.open_message(self.cipher_in, data)
        except fragments.FragmentDropped as exc:
            self._drop(f"fragment dropped: {exc}")
        except IntegrityError:
            self._drop("integrity check failed")
        except (ParseError, ValueError) as exc:
            self._drop(f"malformed encrypted payload: {exc}")
        return None

    def _fail(self, reason: str, notify_type: int | None = None) -> None:
        self.close(SaFailed(reason, notify_type))

    def _send(self, data: bytes | tuple[bytes, ...], remote: Address | None = None,
              local_port: int | None = None) -> None:
        """Queue one message: a datagram, or all the fragments of a fragmented one."""
        port = self.local[1] if local_port is None else local_port
        encapsulated = self.encapsulated if local_port is None else \
            local_port == self.settings.natt_port
        for d in (data,) if isinstance(data, bytes) else data:
            self._outbox.append(Datagram(d, port, remote or self.remote, encapsulated))

    def _encode(self, msg: MessageView) -> bytes | tuple[bytes, ...]:
        """The datagram of ``msg``, or its SKF fragments when it is too large for the
        fragment size and the fragmentation mode allows (RFC 7383)."""
        if msg.exchange == X.IKE_SA_INIT:
            return self.backend.encode_message(msg)
        data = self.backend.seal_message(self.cipher_out, msg)
        frag = self.settings.fragmentation
        if frag.may_fragment(self.peer_fragmentation):
            limit = frag.max_ike_message(self.remote[0], self.encapsulated)
            if len(data) > limit:
                return fragments.split(self.backend, self.cipher_out, msg, limit)
        return data

    def _kick(self) -> None:
        """Start the next queued exchange when the window (size 1) is free."""
        if self._request is not None or not self._queue or self.state is State.CLOSED:
            return
        exchange, tasks = self._queue.pop(0)
        self._send_request(exchange, tasks)

    def _send_request(self, exchange: int, tasks: list[Task]) -> None:
        payloads: list[Payload] = []
        try:
            for task in tasks:
                task.build_i(self, payloads)
        except RemoteProtocolError as exc:
            self._fail(f"cannot build request: {exc.reason}", exc.notify_type)
            return
        flags = _INITIATOR if self.is_initiator else 0
        msg = Message(self.spi_i, self.spi_r, exchange, flags, self._next_id, tuple(payloads))
        data = self._encode(msg)
        if exchange == X.IKE_SA_INIT:
            self.init_request = data
        self._request = _Request(exchange, self._next_id, data, tasks)
        self._send(data)
        self._arm = True

    def _track_address(self, addr: Address, local_port: int | None) -> None:
        """Follow the peer to the address of an authenticated request (§2.23)."""
        if local_port is not None and local_port != self.local[1]:
            self.local = (self.local[0], local_port)
            self.encapsulated = local_port == self.settings.natt_port
        if addr != self.remote:
            old, self.remote = self.remote, addr
            if self.state is State.ESTABLISHED:
                self.emit(RemoteAddressChanged(old, addr))
                if not self.is_initiator:
                    self._emit_binding()

    def _float(self) -> None:
        """Move to the NAT-T port after IKE_SA_INIT found a NAT (§2.23)."""
        if self.natt_supported and (self.local_behind_nat or self.remote_behind_nat):
            self.local = (self.local[0], self._natt_local_port)
            self.remote = (self.remote[0], self.settings.natt_port)
            self.encapsulated = True

    def _on_request(self, msg: MessageView, data: bytes, addr: Address,
                    local_port: int | None) -> None:
        mid, exchange = msg.message_id, msg.exchange
        cached = self._cached
        if cached is not None and mid == cached[0]:
            if msg.payloads and isinstance(msg.payloads[-1], SKF):
                if not self._retransmitted_first_fragment(msg.payloads[-1], data):
                    return
            elif hash(data) != cached[1]:
                self._drop("different request with an answered message ID")
                return
            # An exact replay proves nothing about its source, so the SA keeps its address;
            # the answer goes back where the request came from (RFC 7296 §2.11).
            self.stats.cached_replies += 1
            self._send(cached[2], addr, local_port)
            return
        if mid != self._expected or self._parked is not None:
            self._drop(f"request message ID {mid} unexpected or still being answered")
            return
        if exchange == X.IKE_SA_INIT:
            if self.state is not State.IDLE or msg.spi_r != bytes(8):
                self._drop("IKE_SA_INIT on an SA already past it, or with a responder SPI")
                return
            self.spi_i, self.remote, self.init_request = msg.spi_i, addr, data
            if local_port is not None:
                self.local = (self.local[0], local_port)
                self.encapsulated = local_port == self.settings.natt_port
            inner = msg
        else:
            if not rules.must_encrypt(exchange):
                self._drop(f"unknown exchange type {exchange}")
                return
            if self.cipher_in is None or msg.spi_r != self.spi_r:
                self._drop("request for an SA without keys")
                return
            if not msg.payloads or not isinstance(msg.payloads[-1], (SK, SKF)):
                self._drop("unencrypted request")
                return
            inner = self._open(msg, data)
            if inner is None:
                return
            self._track_address(addr, local_port)
        view = MessageView(inner)
        tasks = self._responder_tasks(exchange, view)
        if tasks is None:
            self._drop(f"exchange {exchange} not expected in state {self.state.value}")
            return
        self.stats.requests_processed += 1
        self._work(_Work(exchange, mid, hash(data), view, tasks))

    def _retransmitted_first_fragment(self, skf: SKF, data: bytes) -> bool:
        """A fragment of a request already answered: RFC 7383 §2.6.1 resends the answer for
        fragment 1 only (once its ICV verifies), and ignores the others."""
        if skf.fragment_number != 1:
            self._drop(f"fragment {skf.fragment_number} of an answered request")
            return False
        try:
            if self.cipher_in is not None:
                self.cipher_in.open_fragment(data)
                return True
        except (IntegrityError, ParseError, ValueError):
            pass
        self._drop("fragment 1 of an answered request failed its integrity check")
        return False

    def _work(self, work: _Work) -> None:
        """Run the responder tasks from where ``work`` stands; park it when a CP provider
        answers later (``Deferred``), otherwise build and send the response."""
        error: RemoteProtocolError | None = None
        out: list[Payload] = []
        tasks = work.tasks
        try:
            if work.index == 0:
                rules.check(work.exchange, False, work.inner.payloads)
            else:
                tasks[work.index - 1].resume_r(self)
            while work.index < len(tasks):
                task = tasks[work.index]
                work.index += 1
                task.process_r(self, work.inner)
                if getattr(task, "waiting", None):
                    self._parked = work
                    return
            for task in tasks:
                task.build_r(self, out)
        except RemoteProtocolError as exc:
            error = exc
            out = [Notify(0, exc.notify_type, data=exc.data)]
            self.emit(ProtocolErrorSent(exc.notify_type, exc.reason))
        self._parked = None
        exchange, mid = work.exchange, work.msg_id
        flags = _RESPONSE | (_INITIATOR if self.is_initiator else 0)
        if exchange == X.IKE_SA_INIT and error is not None:
            # Stateless refusal (INVALID_KE, NO_PROPOSAL_CHOSEN, ...): nothing is kept, the
            # initiator may try again with the same SPI.
            self._send(self.backend.encode_message(
                Message(self.spi_i, bytes(8), exchange, flags, mid, tuple(out))))
            return
        reply = self._encode(Message(self.spi_i, self.spi_r, exchange, flags, mid, tuple(out)))
        self._cached = (mid, work.request_hash, reply)
        self._expected = mid + 1
        self._send(reply)
        if exchange == X.IKE_SA_INIT:
            self.init_response = reply
            self.state = State.AUTH
            self._half_open_at = self._now + self.settings.half_open_timeout
        elif exchange == X.IKE_AUTH:
            if error is not None:
                self._fail(f"IKE_AUTH refused: {error.reason}", error.notify_type)
            else:
                self._emit_binding()
                self._forget_auth_inputs()
        if self._close_event is not None:
            self.close(self._close_event)

    def _responder_tasks(self, exchange: int, inner: MessageView) -> list[Any] | None:
        if exchange == X.IKE_SA_INIT:
            return [SaInitTask(), NatDetectionTask()] if not self.is_initiator else None
        if exchange == X.IKE_AUTH:
            ok = self.state is State.AUTH and not self.is_initiator
            return [AuthTask(), ConfigTask(), ChildCreateTask()] if ok else None
        if self.state is not State.ESTABLISHED:
            return None
        if exchange == X.INFORMATIONAL:
            return [DeleteTask()] if inner.first(Delete) is not None else [LivenessTask()]
        if exchange == X.CREATE_CHILD_SA:
            return [_RefuseChild()]
        return None

    def _on_response(self, msg: MessageView, data: bytes) -> None:
        req = self._request
        if req is None or msg.message_id != req.msg_id or msg.exchange != req.exchange:
            self._drop("unexpected response")
            return
        if req.exchange == X.IKE_SA_INIT:
            inner, self.init_response = msg, data
        else:
            if msg.spi_r != self.spi_r:
                self._drop("response with wrong responder SPI")
                return
            inner = self._open(msg, data)
            if inner is None:
                return
        view = MessageView(inner)
        try:
            rules.check(req.exchange, True, inner.payloads)
            for task in req.tasks:
                task.process_i(self, view)
        except Retry:
            self._request = None
            self._send_request(req.exchange, req.tasks)
            return
        except Ignore as exc:
            self._drop(f"ignored response: {exc}")
            return
        except RemoteProtocolError as exc:
            refused = view.notifies(exc.notify_type)
            if req.exchange == X.IKE_SA_INIT and not refused:
                # Unauthenticated and broken: maybe forged; keep waiting for the real one.
                self._drop(f"invalid IKE_SA_INIT response: {exc.reason}")
                return
            if refused:
                self.emit(ProtocolErrorReceived(exc.notify_type, req.exchange))
            elif req.exchange == X.IKE_AUTH:
                self._notify_once(exc.notify_type)
            self._fail(exc.reason, exc.notify_type)
            return
        self._request = None
        self._next_id += 1
        if req.exchange == X.IKE_AUTH:
            self._forget_auth_inputs()
        elif req.exchange == X.IKE_SA_INIT:
            self.state = State.AUTH
            self._float()
            self._queue.append((X.IKE_AUTH, [AuthTask(), ConfigTask(), ChildCreateTask()]))

    def _forget_auth_inputs(self) -> None:
        """Only IKE_AUTH signs over these: free them once it is done (memory per SA)."""
        self.init_request = self.init_response = self.sk_pi = self.sk_pr = b""

    def _notify_once(self, notify_type: int) -> None:
        """Tell the peer why we give up on its IKE_AUTH response, in a one-shot
        INFORMATIONAL that is never retransmitted (RFC 7296 §2.21.2)."""
        flags = _INITIATOR if self.is_initiator else 0
        msg = Message(self.spi_i, self.spi_r, X.INFORMATIONAL, flags, self._next_id + 1,
                      (Notify(0, notify_type),))
        self._send(self._encode(msg))

    def _emit_binding(self) -> None:
        ctx = self.cp_context()
        inner = ctx.assigned.get(ConfigAttr.INTERNAL_IP4_ADDRESS)
        self.emit(PeerBinding(
            peer_id=self.peer_id,
            inner_address=_addr.unpack(inner[0]) if inner else None,
            public_address=self.remote[0], public_port=self.remote[1],
            spi_i=self.spi_i, spi_r=self.spi_r,
            child_spis=self.child_spis or (),
        ))
