"""``IkeSa``: one IKE SA, either role, as a sans-IO state machine.

The application feeds it received datagrams and the current time, and drains datagrams to
send, timers and events. It never reads a clock or touches a socket. It keeps the SA's state
(transitions in ``state.py``), keys and addresses and its timers; message IDs, retransmission,
the reply cache and the tasks of each exchange belong to its ``TaskManager``
(``task_manager.py``); the protocol content lives in the task modules.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _backend
from .. import addr as _addr
from ..const import NAT_KEEPALIVE, NON_ESP_MARKER, ConfigAttr, HeaderFlag, ProtocolId
from ..const import ExchangeType as X
from ..cp.registry import CpContext
from ..errors import IntegrityError, LocalProtocolError, ParseError, RemoteProtocolError
from ..message import SKF, Delete, Message
from ..record import record
from . import config_push, fragments
from .auth import AuthTask
from .child_create import ChildCreateTask
from .config import ConfigTask
from .delete import DeleteTask
from .events import (
    DatagramDropped,
    Event,
    NatDetected,
    PeerBinding,
    RemoteAddressChanged,
    SaDeleted,
    SaFailed,
)
from .initial_contact import InitialContactTask
from .liveness import LivenessTask
from .nat_detection import NatDetectionTask
from .sa_init import SaInitTask
from .state import Role, State, Trigger, next_state
from .task_manager import TaskManager

if TYPE_CHECKING:
    from .settings import Identity, Settings
    from .transforms import Suite

Address = tuple[str, int]
log = logging.getLogger("ikecp.engine")
_INITIATOR, _RESPONSE = int(HeaderFlag.INITIATOR), int(HeaderFlag.RESPONSE)


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


class IkeSa:
    """One IKE SA. Build with ``IkeSa.initiator(...)`` or ``IkeSa.responder(...)``."""

    __slots__ = (
        "_close_event",
        "_cp_ctx",
        "_dpd_at",
        "_events",
        "_half_open_at",
        "_keepalive_at",
        "_natt_local_port",
        "_now",
        "_outbox",
        "_reassembly",
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
        "tasks",
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
        #: Message IDs, retransmission, reply cache and the tasks of each exchange.
        self.tasks = TaskManager(self)
        self._cp_ctx: CpContext | None = None
        self._outbox: list[Datagram] = []
        self._events: list[Event] = []
        self._close_event: Event | None = None
        self._now = 0.0
        self._half_open_at: float | None = None
        self._dpd_at: float | None = None
        self._keepalive_at: float | None = None
        self._natt_local_port = settings.natt_port

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
        sa._to(Trigger.START)
        sa.tasks.queue(X.IKE_SA_INIT, [SaInitTask(), NatDetectionTask()])
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
            self.drop("SA is closed")
            return
        try:
            self._receive(data, addr, local_port)
        except Exception:
            # A bug must not let one hostile datagram kill the caller's I/O loop.
            log.exception("internal error while handling a datagram; dropped")
            self.drop("internal error")

    def _receive(self, data: bytes, addr: Address, local_port: int | None) -> None:
        try:
            msg = self.backend.decode_message(data)
        except (ParseError, ValueError) as exc:
            self.drop(f"malformed message: {exc}")
            return
        if msg.major_version != 2:
            self.drop("unsupported major version")
            return
        flags = int(msg.flags)
        is_response = bool(flags & _RESPONSE)
        if msg.spi_i != self.spi_i and not (self.state is State.IDLE and not is_response):
            self.drop("unknown initiator SPI")
        elif bool(flags & _INITIATOR) == self.is_initiator:
            self.drop("wrong initiator flag")
        elif is_response:
            self.tasks.on_response(msg, data)
        else:
            self.tasks.on_request(msg, data, addr, local_port)
        self.tasks.kick()

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Everything queued for sending; starts the retransmission timer of a new request
        and finishes a response whose deferred CP values have all arrived."""
        self._now = now
        self.tasks.flush(now)
        out, self._outbox = self._outbox, []
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` should next be called, or None."""
        if self.state is State.CLOSED:
            return None
        soonest = self.tasks.deadline
        reassembly = self._reassembly.deadline if self._reassembly is not None else None
        for t in (self._half_open_at, self._dpd_at, self._keepalive_at, reassembly):
            if t is not None and (soonest is None or t < soonest):
                soonest = t
        return soonest

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up, time out a half-open SA or start a liveness check."""
        self._now = now
        if not self.tasks.retransmit(now):
            self.fail("peer did not answer (retransmission limit reached)")
            return
        if self._half_open_at is not None and now >= self._half_open_at:
            self.fail("IKE_AUTH did not arrive (half-open timeout)")
            return
        if self._reassembly is not None:  # RFC 7383: partial messages have a time limit
            for mid in self._reassembly.expire(now):
                self.drop(f"fragments of message {mid} timed out")
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
            if self.tasks.idle:
                self.check_liveness()

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    # --- application requests ---------------------------------------------------------------

    def delete(self, *, wait: bool = True) -> None:
        """Delete the IKE SA with an INFORMATIONAL exchange (or just close if not up yet).
        ``wait=False``: the peer is known to be gone (it started over with INITIAL_CONTACT):
        send the DELETE once, never retransmitted, and close at once."""
        if not wait and self.state is State.ESTABLISHED:
            self.tasks.send_once((Delete(ProtocolId.IKE, 0),))
            self.close(SaDeleted(by_peer=False))
        elif self.state is State.ESTABLISHED:
            self.tasks.queue(X.INFORMATIONAL, [DeleteTask()])
        elif self.state is not State.CLOSED:
            self.fail("deleted locally before establishment")

    def check_liveness(self) -> None:
        """Send an empty INFORMATIONAL request (dead peer detection)."""
        if self.state is not State.ESTABLISHED:
            raise LocalProtocolError("liveness checks need an established SA")
        self.tasks.queue(X.INFORMATIONAL, [LivenessTask()])

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

    # --- for tasks and the task manager -----------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def set_nat(self, local_behind: bool, remote_behind: bool, *, supported: bool) -> None:
        self.natt_supported = supported or self.settings.force_encap
        self.local_behind_nat, self.remote_behind_nat = local_behind, remote_behind
        if self.natt_supported:
            self.emit(NatDetected(local_behind, remote_behind))

    def mark_established(self) -> None:
        self._to(Trigger.AUTHENTICATED)

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
        if self._cp_ctx is not None and self.role is Role.RESPONDER:
            for provider in self.settings.cp.providers.values():
                provider.release(self._cp_ctx)

    def close(self, event: Event) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.tasks.clear()
        self._half_open_at = self._dpd_at = self._keepalive_at = None
        self.release_cp()
        self.emit(event)

    def close_after_response(self, event: Event) -> None:
        self._close_event = event

    def drop(self, reason: str) -> None:
        self.stats.dropped += 1
        self._events.append(DatagramDropped(reason))

    def open(self, msg: Message, data: bytes) -> Message | None:
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
            self.drop(f"fragment dropped: {exc}")
        except IntegrityError:
            self.drop("integrity check failed")
        except (ParseError, ValueError) as exc:
            self.drop(f"malformed encrypted payload: {exc}")
        return None

    def fail(self, reason: str, notify_type: int | None = None) -> None:
        self.close(SaFailed(reason, notify_type))

    def send(self, data: bytes | tuple[bytes, ...], remote: Address | None = None,
             local_port: int | None = None) -> None:
        """Queue one message: a datagram, or all the fragments of a fragmented one."""
        port = self.local[1] if local_port is None else local_port
        encapsulated = self.encapsulated if local_port is None else \
            local_port == self.settings.natt_port
        for d in (data,) if isinstance(data, bytes) else data:
            self._outbox.append(Datagram(d, port, remote or self.remote, encapsulated))

    def encode(self, msg: Message) -> bytes | tuple[bytes, ...]:
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

    def accept_init(self, msg: Message, data: bytes, addr: Address,
                    local_port: int | None) -> bool:
        """Responder: take the peer's SPI and address from its IKE_SA_INIT request."""
        if self.state is not State.IDLE or msg.spi_r != bytes(8):
            self.drop("IKE_SA_INIT on an SA already past it, or with a responder SPI")
            return False
        self.spi_i, self.remote, self.init_request = msg.spi_i, addr, data
        if local_port is not None:
            self.local = (self.local[0], local_port)
            self.encapsulated = local_port == self.settings.natt_port
        return True

    def track_address(self, addr: Address, local_port: int | None) -> None:
        """Follow the peer to the address of an authenticated request (§2.23)."""
        if local_port is not None and local_port != self.local[1]:
            self.local = (self.local[0], local_port)
            self.encapsulated = local_port == self.settings.natt_port
        if addr != self.remote:
            old, self.remote = self.remote, addr
            if self.state is State.ESTABLISHED:
                self.emit(RemoteAddressChanged(old, addr))
                if self.role is Role.RESPONDER:
                    self._emit_binding()
                    config_push.after_address_change(self)

    def exchange_completed(self, exchange: int) -> None:
        """Initiator: the peer's response to our ``exchange`` was processed."""
        if exchange == X.IKE_AUTH:
            self._forget_auth_inputs()
        elif exchange == X.IKE_SA_INIT:
            self._to(Trigger.INIT_DONE)
            self.tasks.queue(X.IKE_AUTH, [AuthTask(), ConfigTask(), ChildCreateTask(),
                                          InitialContactTask()])

    def exchange_answered(self, exchange: int, reply: bytes | tuple[bytes, ...],
                          error: RemoteProtocolError | None) -> None:
        """Responder: our answer to the peer's ``exchange`` went out."""
        if exchange == X.IKE_SA_INIT:
            if isinstance(reply, bytes):  # always: IKE_SA_INIT is never fragmented
                self.init_response = reply
            self._to(Trigger.INIT_ANSWERED)
        elif exchange == X.IKE_AUTH:
            if error is not None:
                self.fail(f"IKE_AUTH refused: {error.reason}", error.notify_type)
            else:
                self._emit_binding()
                self._forget_auth_inputs()
        if self._close_event is not None:
            self.close(self._close_event)

    # --- internals --------------------------------------------------------------------------

    def _to(self, trigger: Trigger) -> None:
        """Take a transition of the state table and start what the new state needs."""
        state = self.state = next_state(self.state, trigger)
        if state is State.AUTH:
            if trigger is Trigger.INIT_DONE:
                self._float()
            else:
                self._half_open_at = self._now + self.settings.half_open_timeout
        elif state is State.ESTABLISHED:
            self._half_open_at = None
            if self.settings.dpd_interval is not None:
                self._dpd_at = self._now + self.settings.dpd_interval
            keepalive = self.settings.keepalive_interval
            if keepalive is not None and self.local_behind_nat and self.encapsulated:
                self._keepalive_at = self._now + keepalive

    def _float(self) -> None:
        """Move to the NAT-T port after IKE_SA_INIT found a NAT (§2.23)."""
        if self.natt_supported and (self.local_behind_nat or self.remote_behind_nat):
            self.local = (self.local[0], self._natt_local_port)
            self.remote = (self.remote[0], self.settings.natt_port)
            self.encapsulated = True

    def _forget_auth_inputs(self) -> None:
        """Only IKE_AUTH signs over these: free them once it is done (memory per SA)."""
        self.init_request = self.init_response = self.sk_pi = self.sk_pr = b""

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
