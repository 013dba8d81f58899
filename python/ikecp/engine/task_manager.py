"""``TaskManager``: the exchanges of one IKE SA (RFC 7296 §2.1-§2.4), as strongSwan's task
manager keeps them apart from the IKE SA itself.

It owns both message-ID windows (size 1 each way), the initiator's queue of exchanges and its
retransmission, the responder's reply cache, the parking of an answer that waits for deferred
CP values, and which tasks answer which request. It runs the tasks and reads their ``Status``;
the IKE SA it serves keeps state, keys and addresses and is told when an exchange completes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from ..const import ExchangeType as X
from ..const import HeaderFlag, NotifyType, ProtocolId
from ..errors import RemoteProtocolError
from ..events import ProtocolErrorReceived, ProtocolErrorSent
from ..message import CP, SA, SK, SKF, Delete, Message, Notify, Payload
from . import fragments, rules
from .auth import AuthTask
from .auth_lifetime import AuthLifetimeTask
from .child_create import ChildCreateTask
from .child_rekey import ChildRekeyTask
from .config_push import ConfigSetTask
from .delete import DeleteTask
from .ike_config import ConfigTask
from .ike_rekey import IkeRekeyTask
from .initial_contact import InitialContactTask
from .liveness import LivenessTask
from .nat_detection import NatDetectionTask
from .sa_init import SaInitTask
from .state import State
from .task import FAILED, NEED_MORE, Status, Task
from .view import MessageView

if TYPE_CHECKING:
    from .sa import Address, IkeSa

_INITIATOR, _RESPONSE = int(HeaderFlag.INITIATOR), int(HeaderFlag.RESPONSE)
T = TypeVar("T", bound=Task)
#: Seconds between two retransmissions that INVALID_IKE_SPI hints may bring forward.
HINT_INTERVAL = 0.5


class _Request:
    """Our outstanding request: its bytes for retransmission and the tasks awaiting it."""

    __slots__ = ("data", "deadline", "exchange", "msg_id", "sent_at", "tasks", "tries")

    def __init__(self, exchange: int, msg_id: int, data: bytes | tuple[bytes, ...],
                 tasks: list[Task]) -> None:
        self.exchange, self.msg_id, self.data, self.tasks = exchange, msg_id, data, tasks
        self.tries = 0
        self.deadline: float | None = None
        self.sent_at = 0.0


class _Work:
    """A request being answered; ``index`` is the next task to run."""

    __slots__ = ("exchange", "index", "inner", "msg_id", "request_hash", "tasks")

    def __init__(self, exchange: int, msg_id: int, request_hash: int, inner: MessageView,
                 tasks: list[Task]) -> None:
        self.exchange, self.msg_id, self.request_hash = exchange, msg_id, request_hash
        self.inner, self.tasks, self.index = inner, tasks, 0


class TaskManager:
    __slots__ = ("_cached", "_expected", "_next_id", "armed", "parked", "queued", "request",
                 "sa")

    def __init__(self, sa: IkeSa) -> None:
        self.sa = sa
        self._next_id = 0          # our next request's message ID
        self._expected = 0         # message ID of the next request we accept
        self.request: _Request | None = None
        #: Read by the SA on its hot path to skip calls with nothing to do.
        #: Empty until used (a tuple: a held SA keeps no empty list).
        self.queued: list[tuple[int, list[Task]]] | tuple[()] = ()
        # (msg id, hash(request), reply: a datagram or a whole fragment set)
        self._cached: tuple[int, int, bytes | tuple[bytes, ...]] | None = None
        self.parked: _Work | None = None  # an answer waiting for a Deferred CP value
        self.armed = False

    # --- the initiator's side ---------------------------------------------------------------

    def queue(self, exchange: int, tasks: list[Task]) -> None:
        """Run ``tasks`` in an exchange of our own once the window is free."""
        queued = self.queued
        if queued:
            queued.append((exchange, tasks))  # type: ignore[union-attr]  # not empty: a list
        else:
            self.queued = [(exchange, tasks)]
        self.kick()

    @property
    def idle(self) -> bool:
        """No request of ours outstanding or queued."""
        return self.request is None and not self.queued

    def active(self, cls: type[T]) -> T | None:
        """The task of class ``cls`` in our outstanding request, if any."""
        req = self.request
        if req is not None:
            for task in req.tasks:
                if type(task) is cls:
                    return task
        return None

    def busy_creating(self) -> bool:
        """A CREATE_CHILD_SA of ours that makes or rekeys a CHILD SA is outstanding."""
        req = self.request
        return req is not None and req.exchange == X.CREATE_CHILD_SA \
            and not any(type(t) is IkeRekeyTask for t in req.tasks)

    def drop_queued(self, exchange: int) -> None:
        """Forget queued (not yet sent) exchanges of one type."""
        self.queued = [q for q in self.queued if q[0] != exchange] or ()

    def kick(self) -> None:
        """Start the next queued exchange when the window (size 1) is free."""
        if self.request is not None or not self.queued or self.sa.state is State.CLOSED:
            return
        exchange, tasks = self.queued.pop(0)  # type: ignore[union-attr]  # not empty
        if not self.queued:
            self.queued = ()
        self._send_request(exchange, tasks)

    def _send_request(self, exchange: int, tasks: list[Task]) -> None:
        sa = self.sa
        payloads: list[Payload] = []
        try:
            for task in tasks:
                task.build_i(sa, payloads)
        except RemoteProtocolError as exc:
            sa.fail(f"cannot build request: {exc.reason}", exc.notify_type)
            return
        flags = _INITIATOR if sa.is_initiator else 0
        msg = Message(sa.spi_i, sa.spi_r, exchange, flags, self._next_id, tuple(payloads))
        data = sa.encode(msg)
        if exchange == X.IKE_SA_INIT and isinstance(data, bytes):  # never fragmented
            sa.init_request = data
        self.request = _Request(exchange, self._next_id, data, tasks)
        sa.send(data)
        self.armed = True

    def on_response(self, msg: Message, data: bytes) -> None:
        sa = self.sa
        req = self.request
        if req is None or msg.message_id != req.msg_id or msg.exchange != req.exchange:
            sa.drop("unexpected response")
            return
        inner: Message | None
        if req.exchange == X.IKE_SA_INIT:
            inner, sa.init_response = msg, data
        else:
            if msg.spi_r != sa.spi_r:
                sa.drop("response with wrong responder SPI")
                return
            if not msg.payloads or not isinstance(msg.payloads[-1], (SK, SKF)):
                self._unprotected_response(msg, req)
                return
            opened = sa.open(msg, data)
            if opened is None:
                return
            inner = opened
        view = MessageView(inner)
        try:
            rules.check(req.exchange, True, inner.payloads)
            for task in req.tasks:
                status = task.process_i(sa, view)
                if status is NEED_MORE:
                    # IKE_SA_INIT is refused statelessly and retried with the same ID; any
                    # other exchange was answered, so its retry is a new request (§2.2).
                    self.request = None
                    if req.exchange != X.IKE_SA_INIT:
                        self._next_id += 1
                    self._send_request(req.exchange, req.tasks)
                    return
                if status is FAILED:
                    if req.exchange == X.IKE_SA_INIT:  # unauthenticated: maybe forged (§2.4)
                        sa.drop(f"ignored response: {task.reason}")
                    else:
                        sa.fail(task.reason)
                    return
        except RemoteProtocolError as exc:
            refused = view.notifies(exc.notify_type)
            if req.exchange == X.IKE_SA_INIT and not refused:
                # Unauthenticated and broken: maybe forged; keep waiting for the real one.
                sa.drop(f"invalid IKE_SA_INIT response: {exc.reason}")
                return
            if refused:
                sa.emit(ProtocolErrorReceived(exc.notify_type, req.exchange))
            elif req.exchange == X.IKE_AUTH:
                self._notify_once(exc.notify_type)
            sa.fail(exc.reason, exc.notify_type)
            return
        self.request = None
        self._next_id += 1
        sa.exchange_completed(req.exchange)

    def _unprotected_response(self, msg: Message, req: _Request) -> None:
        """RFC 7296 §2.21.4: an unprotected INVALID_IKE_SPI answering our request says the
        peer may have lost the SA (it restarted), or it is forged. It changes no state; as
        the hint the RFC asks us to act on, it only brings the next retransmission forward
        to ``HINT_INTERVAL`` after the last one, so a peer that really lost the SA is found
        dead after the usual number of tries in seconds, not after the whole backoff, while
        a live peer's authenticated answer still settles the request."""
        sa = self.sa
        if not msg.notifies(NotifyType.INVALID_IKE_SPI):
            sa.drop("unprotected response")
            return
        sa.drop("unprotected INVALID_IKE_SPI: the peer may have lost this SA")
        if req.deadline is not None:
            now = sa._now  # the time of the datagram being handled
            req.deadline = min(req.deadline, max(now, req.sent_at + HINT_INTERVAL))

    def _notify_once(self, notify_type: int) -> None:
        """Tell the peer why we give up on its IKE_AUTH response (RFC 7296 §2.21.2)."""
        self.send_once((Notify(0, notify_type),))

    def send_once(self, payloads: tuple[Payload, ...]) -> None:
        """A one-shot INFORMATIONAL request, never retransmitted, with the next unused
        message ID."""
        sa = self.sa
        flags = _INITIATOR if sa.is_initiator else 0
        mid = self._next_id + (self.request is not None)
        msg = Message(sa.spi_i, sa.spi_r, X.INFORMATIONAL, flags, mid, payloads)
        sa.send(sa.encode(msg))

    # --- timers -----------------------------------------------------------------------------

    def flush(self, now: float) -> None:
        """Finish an answer whose deferred values arrived; start the retransmission timer of
        a request just sent."""
        parked = self.parked
        if parked is not None and self.sa.state is not State.CLOSED \
                and parked.tasks[parked.index - 1].resume_r(self.sa) is not NEED_MORE:
            self._work(parked)
            self.kick()
        req = self.request
        if self.armed and req is not None:
            req.deadline = now + self.sa.settings.retransmit.delay(req.tries)
            req.sent_at = now
        self.armed = False

    @property
    def deadline(self) -> float | None:
        req = self.request
        return req.deadline if req is not None else None

    def retransmit(self, now: float) -> bool:
        """Resend a request whose timer ran out; False when the retries are used up."""
        req = self.request
        if req is None or req.deadline is None or now < req.deadline:
            return True
        if req.tries >= self.sa.settings.retransmit.tries:
            return False
        req.tries += 1
        req.deadline = None
        self.sa.stats.retransmissions += 1
        self.sa.send(req.data)
        self.armed = True
        return True

    def clear(self) -> None:
        self.request = None
        self.queued = ()

    # --- the responder's side ---------------------------------------------------------------

    def on_request(self, msg: Message, data: bytes, addr: Address,
                   local_port: int | None) -> None:
        sa = self.sa
        mid, exchange = msg.message_id, msg.exchange
        cached = self._cached
        if cached is not None and mid == cached[0]:
            last = msg.payloads[-1] if msg.payloads else None
            if isinstance(last, SKF):  # RFC 7383 §2.6.1: fragment 1 brings the answer back
                refused = fragments.refuse_replayed(sa.cipher_in, last, data)
                if refused is not None:
                    sa.drop(refused)
                    return
            elif hash(data) != cached[1]:
                sa.drop("different request with an answered message ID")
                return
            # An exact replay proves nothing about its source, so the SA keeps its address;
            # the answer goes back where the request came from (RFC 7296 §2.11).
            sa.stats.cached_replies += 1
            sa.send(cached[2], addr, local_port)
            return
        if mid != self._expected or self.parked is not None:
            sa.drop(f"request message ID {mid} unexpected or still being answered")
            return
        inner: Message | None
        if exchange == X.IKE_SA_INIT:
            if not sa.accept_init(msg, data, addr, local_port):
                return
            inner = msg
        else:
            if not rules.must_encrypt(exchange):
                sa.drop(f"unknown exchange type {exchange}")
                return
            if sa.cipher_in is None or msg.spi_r != sa.spi_r:
                sa.drop("request for an SA without keys")
                return
            if not msg.payloads or not isinstance(msg.payloads[-1], (SK, SKF)):
                sa.drop("unencrypted request")
                return
            opened = sa.open(msg, data)
            if opened is None:
                return
            inner = opened
            if addr != sa.remote or (local_port is not None and local_port != sa.local[1]):
                sa.track_address(addr, local_port)
        view = MessageView(inner)
        tasks = self._responder_tasks(exchange, view)
        if tasks is None:
            sa.drop(f"exchange {exchange} not expected in state {sa.state.value}")
            return
        sa.stats.requests_processed += 1
        self._work(_Work(exchange, mid, hash(data), view, tasks))

    def _responder_tasks(self, exchange: int, inner: MessageView) -> list[Task] | None:
        sa = self.sa
        if exchange == X.IKE_SA_INIT:
            return [SaInitTask(), NatDetectionTask()] if not sa.is_initiator else None
        if exchange == X.IKE_AUTH:
            ok = sa.state is State.AUTH and not sa.is_initiator
            return auth_tasks(sa) if ok else None
        if sa.state is not State.ESTABLISHED and sa.state is not State.REPLACED:
            return None
        if exchange == X.INFORMATIONAL:
            if inner.first(Delete) is not None:
                return [DeleteTask()]
            return [LivenessTask(), ConfigSetTask()] if inner.first(CP) else [LivenessTask()]
        if exchange == X.CREATE_CHILD_SA:
            if sa.state is State.REPLACED:
                return [_Refuse(NotifyType.TEMPORARY_FAILURE, "IKE SA replaced")]
            sa_payload = inner.first(SA)
            if sa_payload is not None and sa_payload.proposals \
                    and sa_payload.proposals[0].protocol_id == ProtocolId.IKE:
                return [IkeRekeyTask()]
            if inner.notifies(NotifyType.REKEY_SA):
                return [ChildRekeyTask()]
            return [ChildCreateTask(in_auth=False)]
        return None

    def _work(self, work: _Work) -> None:
        """Run the responder tasks from where ``work`` stands; park it when a task waits for
        values (NEED_MORE), otherwise build and send the response."""
        sa = self.sa
        error: RemoteProtocolError | None = None
        out: list[Payload] = []
        tasks = work.tasks
        try:
            if work.index == 0:
                rules.check(work.exchange, False, work.inner.payloads)
            while work.index < len(tasks):
                task = tasks[work.index]
                work.index += 1
                if task.process_r(sa, work.inner) is NEED_MORE:
                    self.parked = work
                    return
            for task in tasks:
                task.build_r(sa, out)
        except RemoteProtocolError as exc:
            error = exc
            out = [Notify(0, exc.notify_type, data=exc.data)]
            sa.emit(ProtocolErrorSent(exc.notify_type, exc.reason))
        self.parked = None
        exchange, mid = work.exchange, work.msg_id
        flags = _RESPONSE | (_INITIATOR if sa.is_initiator else 0)
        if exchange == X.IKE_SA_INIT and error is not None:
            # Stateless refusal (INVALID_KE, NO_PROPOSAL_CHOSEN, ...): nothing is kept, the
            # initiator may try again with the same SPI.
            sa.send(sa.backend.encode_message(
                Message(sa.spi_i, bytes(8), exchange, flags, mid, tuple(out))))
            return
        reply = sa.encode(Message(sa.spi_i, sa.spi_r, exchange, flags, mid, tuple(out)))
        self._cached = (mid, work.request_hash, reply)
        self._expected = mid + 1
        sa.send(reply)
        sa.exchange_answered(exchange, reply, error)


def auth_tasks(sa: IkeSa) -> list[Task]:
    """The tasks of IKE_AUTH: an initiator always honours AUTH_LIFETIME, a responder sends
    it only when it wants reauthentication; INITIAL_CONTACT as ``initial_contact.py`` says."""
    tasks: list[Task] = [AuthTask(), ConfigTask(), ChildCreateTask(), InitialContactTask()]
    if sa.is_initiator or sa.settings.ike_lifetime.reauth_time:
        tasks.append(AuthLifetimeTask())
    return tasks


class _Refuse(Task):
    """Answer a request with one error notify, harming nothing."""

    __slots__ = ("notify_type",)

    def __init__(self, notify_type: int, reason: str) -> None:
        self.notify_type, self.reason = notify_type, reason

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        raise RemoteProtocolError(self.notify_type, self.reason)
