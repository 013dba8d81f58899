"""Configuration payload attributes per type (RFC 7296 §3.15): handlers on the initiator,
providers on the responder.

The engine's config task only walks the registry, so an application adds an attribute by
registering one object; it never touches the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import LocalProtocolError


@dataclass(slots=True)
class CpContext:
    """What an attribute handler or provider may know about the SA it serves.

    ``remote_addr`` is the peer's address as observed on the request being answered (on the
    responder: the IKE_AUTH request, after the float to 4500). ``assigned`` maps attribute
    type to the values a provider handed out, so providers can see each other's results and
    release them when the SA goes. ``events`` collects events for the application.
    ``reported`` maps attribute type to values the peer was told that are no allocation
    (nothing to release), e.g. the NAT info: what a later push compares against.
    ``push_queued`` / ``push_refused``: a CFG_SET to this peer is waiting to be sent / the
    peer answered one without accepting anything (``ikecp.engine.config_push``).
    """

    peer_id: object
    remote_addr: tuple[str, int]
    local_behind_nat: bool
    remote_behind_nat: bool
    spi_i: bytes
    spi_r: bytes
    assigned: dict[int, list[bytes]] = field(default_factory=dict)
    events: list = field(default_factory=list)
    reported: dict[int, list[bytes]] = field(default_factory=dict)
    push_queued: bool = False
    push_refused: bool = False


class CpFailure(Exception):  # noqa: N818 - a signal to the config task, not an error report
    """Raised by a provider that cannot serve the request; ``notify_type`` (for example
    INTERNAL_ADDRESS_FAILURE) refuses the first CHILD_SA while the IKE SA stays up."""

    def __init__(self, notify_type: int, reason: str) -> None:
        super().__init__(reason)
        self.notify_type = notify_type
        self.reason = reason


class Deferred:
    """Returned by ``AttributeProvider.provide`` when the answer comes later (an IPAM or
    AAA lookup). The engine holds the IKE_AUTH response (dropping retransmissions meanwhile)
    until every deferred value is settled with ``resolve`` or ``fail``.

    Who sends the response then: a ``Gateway`` does it at once (it registered a done
    callback when the engine reported ``CpValueDeferred``); a program that drives the SA
    itself calls ``datagrams_to_send`` on it, e.g. from its own ``add_done_callback``.
    Settle it on the thread that runs the SA (with asyncio:
    ``loop.call_soon_threadsafe(deferred.resolve, values)``)."""

    __slots__ = ("_callbacks", "done", "failure", "values")

    def __init__(self) -> None:
        self.done = False
        self.values: list[bytes] = []
        self.failure: CpFailure | None = None
        self._callbacks: list[Callable[[Deferred], None]] = []

    def resolve(self, values: list[bytes]) -> None:
        if self.done:
            raise LocalProtocolError("deferred CP value already settled")
        self.values, self.done = list(values), True
        self._settled()

    def fail(self, notify_type: int, reason: str) -> None:
        """Refuse like a synchronous ``CpFailure`` (e.g. INTERNAL_ADDRESS_FAILURE)."""
        if self.done:
            raise LocalProtocolError("deferred CP value already settled")
        self.failure, self.done = CpFailure(notify_type, reason), True
        self._settled()

    def add_done_callback(self, callback: Callable[[Deferred], None]) -> None:
        """Call ``callback(self)`` once settled (at once if it already is)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _settled(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


class AttributeHandler(Protocol):
    """Initiator side of one attribute type."""

    @property
    def attr_type(self) -> int: ...

    def request(self, ctx: CpContext) -> bytes | None:
        """Value to put in CFG_REQUEST (usually empty), or None not to ask."""

    def handle(self, ctx: CpContext, values: list[bytes]) -> None:
        """Values of this type in CFG_REPLY (maybe none); append events to ``ctx.events``."""

    # Optional: ``pushed(ctx, values) -> bool`` takes values the responder pushed later in
    # CP(CFG_SET) (INFORMATIONAL); True acknowledges them in CFG_ACK. Without it a pushed
    # value of this type is not accepted.


class AttributeProvider(Protocol):
    """Responder side of one attribute type; called only when the type was requested and
    only after the initiator has authenticated."""

    @property
    def attr_type(self) -> int: ...

    def provide(self, ctx: CpContext, requested: list[bytes]) -> list[bytes] | Deferred:
        """Values for CFG_REPLY (empty: answer nothing), a ``Deferred`` settled later, or
        raise ``CpFailure``."""

    def release(self, ctx: CpContext) -> None:
        """The SA is gone: give back whatever ``provide`` handed out."""

    # Optional: ``push(ctx) -> list[bytes] | None`` is asked after the established peer's
    # address changed; values it returns are pushed in CP(CFG_SET) in an INFORMATIONAL
    # exchange (``ikecp.engine.config_push``). None or empty: nothing to push.


class CpRegistry:
    """Handlers and providers in registration order, at most one of each per type."""

    def __init__(self) -> None:
        self.handlers: dict[int, AttributeHandler] = {}
        self.providers: dict[int, AttributeProvider] = {}

    def add_handler(self, handler: AttributeHandler) -> CpRegistry:
        if handler.attr_type in self.handlers:
            raise LocalProtocolError(f"attribute {handler.attr_type} already has a handler")
        self.handlers[handler.attr_type] = handler
        return self

    def add_provider(self, provider: AttributeProvider) -> CpRegistry:
        if provider.attr_type in self.providers:
            raise LocalProtocolError(f"attribute {provider.attr_type} already has a provider")
        self.providers[provider.attr_type] = provider
        return self
