"""``IkeSa``: one IKE SA, either role, as a sans-IO state machine.

The application feeds it received datagrams and the current time, and drains datagrams to
send, timers and events. It never reads a clock or touches a socket. It keeps the SA's state
(transitions in ``state.py``), keys and addresses and its timers; message IDs, retransmission,
the reply cache and the tasks of each exchange belong to its ``TaskManager``
(``task_manager.py``); the protocol content lives in the task modules.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _backend
from .. import addr as _addr
from ..addr import Address
from ..const import NAT_KEEPALIVE, NON_ESP_MARKER, ConfigAttr, HeaderFlag, ProtocolId
from ..const import ExchangeType as X
from ..cp.registry import CpContext
from ..errors import IntegrityError, LocalProtocolError, ParseError, RemoteProtocolError
from ..events import (
    AuthLifetimeReceived,
    ChildSaClosed,
    DatagramDropped,
    Event,
    IkeSaEstablished,
    IkeSaRekeyed,
    NatDetected,
    PeerBinding,
    ReauthStarted,
    RedundantIkeSa,
    RemoteAddressChanged,
    SaDeleted,
    SaFailed,
)
from ..message import SKF, Delete, Message
from ..record import record
from . import config_push, fragments
from .child_create import ChildCreateTask
from .child_rekey import ChildRekeyTask
from .child_sa import ChildSa, ChildState
from .delete import DeleteTask
from .ike_rekey import IkeRekeyTask
from .keys import derive_ike_keys
from .liveness import LivenessTask
from .nat_detection import NatDetectionTask
from .sa_init import SaInitTask
from .settings import new_spi
from .state import TRANSITIONS, Role, State, Trigger, next_state
from .task_manager import TaskManager, auth_tasks

if TYPE_CHECKING:
    from .settings import Identity, Settings
    from .transforms import Suite

log = logging.getLogger("ikecp.engine")
_INITIATOR, _RESPONSE = int(HeaderFlag.INITIATOR), int(HeaderFlag.RESPONSE)
#: Our own addresses are few: SAs share one tuple for each instead of holding a copy apiece.
_LOCAL_ADDRESSES: dict[Address, Address] = {}


def _local_address(ip: str, port: int) -> Address:
    addr = (ip, port)
    shared = _LOCAL_ADDRESSES.get(addr)
    if shared is None:
        if len(_LOCAL_ADDRESSES) >= 4096:  # a load generator's many float ports: bounded
            return addr
        shared = _LOCAL_ADDRESSES[addr] = addr
    return shared


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
        "_expire_at",
        "_half_open_at",
        "_keepalive_at",
        "_life_at",
        "_natt_local_port",
        "_now",
        "_outbox",
        "_reassembly",
        "_reauth_at",
        "_rekey_at",
        "_replaces",
        "_successor",
        "backend",
        "child_failure",
        "children",
        "cipher_in",
        "cipher_out",
        "encapsulated",
        "init_key",
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
        "timer_queued",
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
        self.spi_i = new_spi(settings, 8) if self.is_initiator else bytes(8)
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
        self.children: list[ChildSa] = []
        self.stats = Stats()
        #: Message IDs, retransmission, reply cache and the tasks of each exchange.
        self.tasks = TaskManager(self)
        self._cp_ctx: CpContext | None = None
        # Empty until used: a held SA keeps no empty lists (memory per SA).
        self._outbox: list[Datagram] | tuple[()] = ()
        self._events: list[Event] | tuple[()] = ()
        self._close_event: Event | None = None
        self._now = 0.0
        self._half_open_at: float | None = None
        self._dpd_at: float | None = None
        self._keepalive_at: float | None = None
        # Renewal: IKE rekey, reauthentication, hard end; _life_at is the soonest of these
        # and of every CHILD SA's rekey/expiry, so next_timer stays cheap.
        self._rekey_at: float | None = None
        self._reauth_at: float | None = None
        self._expire_at: float | None = None
        self._life_at: float | None = None
        self._replaces: IkeSa | None = None    # reauthentication: the SA this one replaces
        self._successor: IkeSa | None = None   # reauthentication under way
        self._natt_local_port = settings.natt_port
        #: The deadline a driver's timer heap holds for this SA (the driver's bookkeeping:
        #: an attribute here costs less memory per SA than a table entry there).
        self.timer_queued: float | None = None
        #: Where a driver filed this responder SA by (initiator IP, SPIi), if it did.
        self.init_key: tuple[str, bytes] | None = None

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
        if self.tasks.queued:
            self.tasks.kick()

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Everything queued for sending; starts the retransmission timer of a new request
        and finishes a response whose deferred CP values have all arrived."""
        self._now = now
        tasks = self.tasks
        if tasks.armed or tasks.parked is not None:
            tasks.flush(now)
        out = self._outbox
        if not out:
            return []
        self._outbox = ()
        return out  # type: ignore[return-value]  # not empty: a list

    def next_timer(self) -> float | None:
        """When ``handle_timer`` should next be called, or None."""
        if self.state is State.CLOSED:
            return None
        req = self.tasks.request
        soonest = req.deadline if req is not None else None
        reassembly = self._reassembly.deadline if self._reassembly is not None else None
        for t in (self._half_open_at, self._dpd_at, self._keepalive_at, self._life_at,
                  reassembly):
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
            self._queue(Datagram(NAT_KEEPALIVE, self.local[1], self.remote, False))
            self._keepalive_at = now + keepalive
        interval = self.settings.dpd_interval
        if self._dpd_at is not None and interval is not None and now >= self._dpd_at:
            self._dpd_at = now + interval
            if self.tasks.idle:
                self.check_liveness()
        if self._life_at is not None and now >= self._life_at:
            self._renew(now)

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.pop(0)  # type: ignore[union-attr]  # not empty: a list
        if not events:
            self._events = ()
        return event

    def take_events(self) -> list[Event] | tuple[()]:
        """Every pending event at once, oldest first: what ``next_event`` would return one
        by one (a driver draining many SAs saves a call per event)."""
        out, self._events = self._events, ()
        return out

    # --- application requests ---------------------------------------------------------------

    def delete(self, *, wait: bool = True) -> None:
        """Delete the IKE SA with an INFORMATIONAL exchange (or just close if not up yet).
        ``wait=False``: the peer is known to be gone (it started over with INITIAL_CONTACT):
        send the DELETE once, never retransmitted, and close at once."""
        if not wait and self.state is State.ESTABLISHED:
            self.tasks.send_once((Delete(ProtocolId.IKE, 0),))
            self.close(SaDeleted(by_peer=False))
        elif self.state is State.ESTABLISHED or self.state is State.REPLACED:
            self.tasks.queue(X.INFORMATIONAL, [DeleteTask()])
        elif self.state is not State.CLOSED:
            self.fail("deleted locally before establishment")

    def rekey(self) -> None:
        """Rekey the IKE SA (§2.18); ``IkeSaRekeyed`` hands the new one over."""
        self._need_established("IKE rekeying")
        if self.tasks.active(IkeRekeyTask) is None:
            self.tasks.queue(X.CREATE_CHILD_SA, [IkeRekeyTask()])

    def rekey_child(self, child: ChildSa | None = None) -> None:
        """Rekey a CHILD SA (default: the first installed one) with CREATE_CHILD_SA."""
        self._need_established("CHILD SA rekeying")
        if child is None:
            child = next((c for c in self.children if c.state is ChildState.INSTALLED), None)
            if child is None:
                raise LocalProtocolError("no installed CHILD SA to rekey")
        child.rekey_at = None
        self.tasks.queue(X.CREATE_CHILD_SA, [ChildRekeyTask(child)])

    def create_child(self) -> None:
        """Negotiate another CHILD SA with the configured selectors (CREATE_CHILD_SA)."""
        self._need_established("CREATE_CHILD_SA")
        self.tasks.queue(X.CREATE_CHILD_SA, [ChildCreateTask(in_auth=False)])

    def reauthenticate(self) -> IkeSa:
        """Make-before-break reauthentication (§2.8.3): a new IKE SA from scratch, announced
        in ``ReauthStarted``; this one is deleted once the new one is established."""
        self._need_established("reauthentication")
        if self.role is not Role.INITIATOR:
            raise LocalProtocolError("only the original initiator reauthenticates")
        if self._successor is None:
            settings = self.settings
            if settings.initial_contact:  # the old SA is alive: not a restart (§2.4)
                settings = dataclasses.replace(settings, initial_contact=False)
            new = IkeSa.initiator(settings, self.local, self.remote, backend=self.backend,
                                  natt_local_port=self._natt_local_port)
            new._replaces, self._successor = self, new
            self.emit(ReauthStarted(new))
        return self._successor

    def _need_established(self, what: str) -> None:
        if self.state is not State.ESTABLISHED:
            raise LocalProtocolError(f"{what} needs an established SA")

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
    def child_spis(self) -> tuple[bytes, bytes] | None:
        """(inbound, outbound) SPI of the first CHILD SA, or None."""
        return self.children[0].spis if self.children else None

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # --- for tasks and the task manager -----------------------------------------------------

    def wants(self, kind: type) -> bool:
        """Whether anyone reads events of type ``kind`` (``Settings.events``): build one only
        then."""
        events = self.settings.events
        return events is None or kind in events

    def emit(self, event: Event) -> None:
        events = self._events
        if events:
            events.append(event)  # type: ignore[union-attr]  # not empty: a list
        else:
            self._events = [event]

    def set_nat(self, local_behind: bool, remote_behind: bool, *, supported: bool) -> None:
        self.natt_supported = supported or self.settings.force_encap
        self.local_behind_nat, self.remote_behind_nat = local_behind, remote_behind
        if self.natt_supported and self.wants(NatDetected):
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
            for event in self._cp_ctx.events:
                self.emit(event)
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
        self._half_open_at = self._dpd_at = self._keepalive_at = self._life_at = None
        self.release_cp()
        if self.wants(ChildSaClosed):
            for child in self.children:
                self.emit(ChildSaClosed(child.spi_in, child.spi_out, "IKE SA closed"))
        self.children = []
        self.emit(event)
        old, self._replaces = self._replaces, None
        if old is not None:  # a reauthentication that failed: the old SA tries again later
            old._successor = None
            old._reauth_at = self._now + self.settings.rekey_retry
            old._reschedule()

    def close_after_response(self, event: Event) -> None:
        self._close_event = event

    def drop(self, reason: str) -> None:
        self.stats.dropped += 1
        if self.wants(DatagramDropped):
            self.emit(DatagramDropped(reason))

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
            self._queue(Datagram(d, port, remote or self.remote, encapsulated))

    def _queue(self, datagram: Datagram) -> None:
        outbox = self._outbox
        if outbox:
            outbox.append(datagram)  # type: ignore[union-attr]  # not empty: a list
        else:
            self._outbox = [datagram]

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
            self.local = _local_address(self.local[0], local_port)
            self.encapsulated = local_port == self.settings.natt_port
        return True

    def track_address(self, addr: Address, local_port: int | None) -> None:
        """Follow the peer to the address of an authenticated request (§2.23)."""
        if local_port is not None and local_port != self.local[1]:
            self.local = _local_address(self.local[0], local_port)
            self.encapsulated = local_port == self.settings.natt_port
        if addr != self.remote:
            old, self.remote = self.remote, addr
            if self.state is State.ESTABLISHED:
                if self.wants(RemoteAddressChanged):
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
            self.tasks.queue(X.IKE_AUTH, auth_tasks(self))

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
        state = TRANSITIONS.get((self.state, trigger))
        if state is None:
            state = next_state(self.state, trigger)  # raises, naming both
        self.state = state
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
            self._schedule_ike()
            old = self._replaces
            if old is not None:  # reauthentication: the old SA goes now (make-before-break)
                self._replaces = None
                old._successor = None
                if old.state is State.ESTABLISHED:
                    old._to(Trigger.REPLACED)
                    old.delete()
        elif state is State.REPLACED:
            self._dpd_at = self._keepalive_at = None
            self._rekey_at = self._reauth_at = None
            self._reschedule()

    def _float(self) -> None:
        """Move to the NAT-T port after IKE_SA_INIT found a NAT (§2.23)."""
        if self.natt_supported and (self.local_behind_nat or self.remote_behind_nat):
            self.local = _local_address(self.local[0], self._natt_local_port)
            self.remote = (self.remote[0], self.settings.natt_port)
            self.encapsulated = True

    def _forget_auth_inputs(self) -> None:
        """Only IKE_AUTH signs over these (and keys its first CHILD SA with the nonces): free
        them once it is done (memory per SA)."""
        self.init_request = self.init_response = self.sk_pi = self.sk_pr = b""
        self.nonce_i = self.nonce_r = b""

    def _emit_binding(self) -> None:
        if self.wants(PeerBinding):
            self.emit(self.binding())

    def binding(self) -> PeerBinding:
        """What the mobile network needs to reach the peer of this (responder-role) SA."""
        ctx = self.cp_context()
        inner = ctx.assigned.get(ConfigAttr.INTERNAL_IP4_ADDRESS)
        return PeerBinding(
            peer_id=self.peer_id,
            inner_address=_addr.unpack(inner[0]) if inner else None,
            public_address=self.remote[0], public_port=self.remote[1],
            spi_i=self.spi_i, spi_r=self.spi_r,
            child_spis=self.child_spis or (),
        )

    # --- CHILD SAs --------------------------------------------------------------------------

    def add_child(self, child: ChildSa) -> None:
        lifetime, now = self.settings.child_lifetime, self._now
        soonest = self._life_at
        if lifetime.rekey_time is not None:
            soonest = child.rekey_at = \
                now + lifetime.rekey_time - lifetime.rand * self.settings.jitter()
        if lifetime.life is not None:
            child.expire_at = now + lifetime.life
            if soonest is None or child.expire_at < soonest:
                soonest = child.expire_at
        if soonest is not None and (self._life_at is None or soonest < self._life_at):
            self._life_at = soonest
        self.children.append(child)

    def remove_child(self, child: ChildSa, reason: str) -> None:
        if child in self.children:
            self.children.remove(child)
            if self.wants(ChildSaClosed):
                self.emit(ChildSaClosed(child.spi_in, child.spi_out, reason))
            self._reschedule()
            if self.role is Role.RESPONDER and self.state is State.ESTABLISHED:
                self._emit_binding()  # the binding's CHILD SPIs follow rekeys

    def child_by_spi_out(self, spi: bytes) -> ChildSa | None:
        """The CHILD SA the peer receives on ``spi`` (its name for it in REKEY_SA/DELETE)."""
        for child in self.children:
            if child.spi_out == spi:
                return child
        return None

    def delete_children(self, children: list[ChildSa], reason: str) -> None:
        for child in children:
            child.state = ChildState.DELETING
            child.rekey_at = None
        self.tasks.queue(X.INFORMATIONAL, [DeleteTask(children)])

    def retry_child_rekey(self, child: ChildSa) -> None:
        child.rekey_at = self._now + self.settings.rekey_retry * (1 - 0.5 * self.settings.jitter())
        self._reschedule()

    def rekeying_ike(self) -> bool:
        return self.tasks.active(IkeRekeyTask) is not None

    # --- renewal: rekeying and reauthentication ---------------------------------------------

    def _schedule_ike(self) -> None:
        """Timers of a newly established IKE SA (strongSwan's semantics, see IkeLifetime)."""
        lifetime, now = self.settings.ike_lifetime, self._now
        soonest = None
        if lifetime.rekey_time is not None:
            soonest = self._rekey_at = \
                now + lifetime.rekey_time - lifetime.rand * self.settings.jitter()
        if lifetime.reauth_time is not None:
            if self.role is Role.RESPONDER:
                due = now + lifetime.reauth_time  # the initiator's job, by AUTH_LIFETIME
            else:
                if self._reauth_at is None:  # a rekeyed SA keeps its predecessor's
                    self._reauth_at = \
                        now + lifetime.reauth_time - lifetime.rand * self.settings.jitter()
                due = self._reauth_at
            if soonest is None or due < soonest:
                soonest = due
        if soonest is not None:
            end = soonest + lifetime.over
            if self._expire_at is None or end < self._expire_at:
                self._expire_at = end
        if self.children:  # a rekeyed IKE SA brings its CHILD SAs' timers
            self._reschedule()
        elif soonest is not None and (self._life_at is None or soonest < self._life_at):
            self._life_at = soonest

    def set_auth_lifetime(self, seconds: int) -> None:
        """The responder's AUTH_LIFETIME: reauthenticate ``over_time`` before it (RFC 4478)."""
        self.emit(AuthLifetimeReceived(seconds))
        over = self.settings.ike_lifetime.over
        self._reauth_at = self._now + max(0.0, seconds - over)
        self._expire_at = self._now + max(float(seconds), 10.0)
        self._reschedule()

    def retry_ike_rekey(self) -> None:
        self._rekey_at = self._now + self.settings.rekey_retry * (1 - 0.5 * self.settings.jitter())
        self._reschedule()

    def _reschedule(self) -> None:
        soonest = None
        for t in (self._rekey_at, self._reauth_at, self._expire_at):
            if t is not None and (soonest is None or t < soonest):
                soonest = t
        for child in self.children:
            for t in (child.rekey_at, child.expire_at):
                if t is not None and (soonest is None or t < soonest):
                    soonest = t
        self._life_at = soonest if self.state is not State.CLOSED else None

    def _renew(self, now: float) -> None:
        """Whatever renewal is due: hard end, reauthentication, IKE rekey, CHILD SAs."""
        if self._expire_at is not None and now >= self._expire_at:
            self._expire_at = self._rekey_at = self._reauth_at = None
            log.info("IKE SA %s: lifetime over, deleting it", self.spi_i.hex())
            self.delete()
        established = self.state is State.ESTABLISHED
        if established and self._reauth_at is not None and now >= self._reauth_at:
            self._reauth_at = None
            self.reauthenticate()
        elif established and self._rekey_at is not None and now >= self._rekey_at:
            self._rekey_at = None
            if self.tasks.active(IkeRekeyTask) is None:
                self.tasks.queue(X.CREATE_CHILD_SA, [IkeRekeyTask()])
        for child in list(self.children):
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = None
                if child.state is not ChildState.DELETING and established:
                    self.delete_children([child], "expired")
            elif established and child.rekey_at is not None and now >= child.rekey_at \
                    and child.state is ChildState.INSTALLED:
                child.rekey_at = None
                self.tasks.queue(X.CREATE_CHILD_SA, [ChildRekeyTask(child)])
        self._reschedule()

    def successor(self, is_initiator: bool, spi_i: bytes, spi_r: bytes, suite: Suite,
                  nonce_i: bytes, nonce_r: bytes, secret: bytes) -> IkeSa:
        """The IKE SA a rekey creates (§2.18): same peer and addresses, new SPIs and keys.
        ``is_initiator``: we started the rekey, so we are its initiator."""
        new = IkeSa(self.settings, self.role, self.local, self.remote, backend=self.backend)
        new.is_initiator = is_initiator
        new.spi_i, new.spi_r, new.suite = spi_i, spi_r, suite
        new.nonce_i, new.nonce_r = nonce_i, nonce_r
        new._now = self._now
        derive_ike_keys(new, secret, sk_d_old=self.sk_d)
        new.sk_pi = new.sk_pr = new.nonce_i = new.nonce_r = b""  # no IKE_AUTH to sign
        new.peer_id, new.natt_supported = self.peer_id, self.natt_supported
        new.local_behind_nat, new.remote_behind_nat = self.local_behind_nat, self.remote_behind_nat
        new.encapsulated, new._natt_local_port = self.encapsulated, self._natt_local_port
        new.peer_fragmentation = self.peer_fragmentation  # said once, in IKE_SA_INIT
        new._reauth_at = self._reauth_at  # reauthentication is due whatever the keys
        return new

    def hand_over(self, new: IkeSa, *, delete_old: bool) -> None:
        """Rekeyed: ``new`` takes the CHILD SAs and CP state; this one only waits for its
        DELETE (sent now when ``delete_old``, by the peer otherwise)."""
        # CHILD rekeys in flight or queued here die with this SA: the new one starts them again
        # at once, they were due (their rekey_at was cleared when they were started, so
        # nothing else would).
        interrupted = [c for c in self.children if c.state is ChildState.REKEYING]
        interrupted += [t.old for x, ts in self.tasks.queued if x == X.CREATE_CHILD_SA
                        for t in ts if isinstance(t, ChildRekeyTask) and t.old is not None]
        for child in self.children:
            if child.state is ChildState.REKEYING:
                child.state = ChildState.INSTALLED
        new.children, self.children = self.children, []
        for child in interrupted:
            if child in new.children and child.state is ChildState.INSTALLED:
                child.rekey_at = new._now
        new._reschedule()
        new._cp_ctx, self._cp_ctx = self._cp_ctx, None
        if new._cp_ctx is not None:
            new._cp_ctx.spi_i, new._cp_ctx.spi_r = new.spi_i, new.spi_r
        new._to(Trigger.REKEYED_IN)
        s = new.suite
        if new.wants(IkeSaEstablished):
            new.emit(IkeSaEstablished(
                spi_i=new.spi_i, spi_r=new.spi_r, local_id=self.settings.local_id,
                remote_id=new.peer_id, local_addr=new.local, remote_addr=new.remote,
                encr=s.encr, encr_key_bits=s.encr_key_bits, integ=s.integ, prf=s.prf,
                dh=s.dh))
        self.tasks.drop_queued(X.CREATE_CHILD_SA)
        self._to(Trigger.REPLACED)
        self.emit(IkeSaRekeyed(new, new.spi_i, new.spi_r))
        if delete_old:
            self.delete()

    def adopt_redundant(self, new: IkeSa, *, delete: bool = False) -> None:
        """A new IKE SA that lost a rekey collision: the application routes its SPIs until
        its creator deletes it."""
        new._to(Trigger.REKEYED_IN)
        new._to(Trigger.REPLACED)
        if delete:
            new.delete()
        self.emit(RedundantIkeSa(new))
