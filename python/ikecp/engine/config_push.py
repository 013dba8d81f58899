"""CP(CFG_SET) / CP(CFG_ACK) in an INFORMATIONAL exchange (RFC 7296 §1.4, §3.15): pushing
an attribute whose value changed after IKE_AUTH, e.g. the NAT info after a NAT rebinding.

Which attributes are pushed, and to whom, is the CP providers' decision (an optional
``push(ctx)`` method, see ``ikecp.cp.registry``); which pushed values are taken is the CP
handlers' (optional ``pushed(ctx, values)``). A peer that does not know the push answers
with an empty INFORMATIONAL response or an error notify: the SA stays up, the answer is
reported as ``ConfigSetAnswered`` and that SA is not pushed to again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import CfgType
from ..const import ExchangeType as X
from ..events import ConfigSetAnswered
from ..message import CP, ConfigAttribute, Notify, Payload
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


def _pending(sa: IkeSa) -> list[ConfigAttribute]:
    ctx = sa.cp_context()
    attrs: list[ConfigAttribute] = []
    for attr_type, provider in sa.settings.cp.providers.items():
        push = getattr(provider, "push", None)
        values = push(ctx) if push is not None else None
        if values:
            attrs.extend(ConfigAttribute(attr_type, v) for v in values)
    return attrs


def after_address_change(sa: IkeSa) -> None:
    """The established peer moved (NAT rebinding): queue one CFG_SET if a provider has a
    new value for it, unless one is already queued or the peer refused a push before."""
    ctx = sa.cp_context()
    if ctx.push_refused or ctx.push_queued or not _pending(sa):
        return
    ctx.push_queued = True
    sa.tasks.queue(X.INFORMATIONAL, [ConfigSetTask()])


class ConfigSetTask(Task):
    """Initiator: CFG_SET with the providers' current values (taken when the request is
    built, so the newest address goes out). Responder: CFG_ACK naming the attribute types
    a handler accepted (§3.15: zero-length values; none accepted, no CP)."""

    __slots__ = ("accepted", "sent")

    def __init__(self) -> None:
        self.sent: tuple[ConfigAttribute, ...] = ()
        self.accepted: list[ConfigAttribute] = []

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        sa.cp_context().push_queued = False
        self.sent = tuple(_pending(sa))
        if self.sent:
            out.append(CP(CfgType.CFG_SET, self.sent))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        if not self.sent:  # nothing was left to push when the request was built
            return DONE
        sent = tuple(dict.fromkeys(int(a.type) for a in self.sent))
        ack = next((p for p in msg.find(CP) if p.cfg_type == CfgType.CFG_ACK), None)
        accepted = tuple(dict.fromkeys(a.type for a in ack.attributes if a.type in sent)) \
            if ack is not None else ()
        error = next((n.notify_type for n in msg.find(Notify) if n.notify_type < 16384), None)
        ctx = sa.cp_context()
        if not accepted:
            ctx.push_refused = True
        for attr_type in accepted:  # the peer holds these values now
            ctx.reported[attr_type] = [a.value for a in self.sent if a.type == attr_type]
        sa.emit(ConfigSetAnswered(sent, accepted, error))
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        cp = next((p for p in msg.find(CP) if p.cfg_type == CfgType.CFG_SET), None)
        if cp is None:
            return DONE
        grouped: dict[int, list[bytes]] = {}
        for a in cp.attributes:
            grouped.setdefault(a.type, []).append(a.value)
        ctx = sa.cp_context()
        for attr_type, values in grouped.items():
            handler = sa.settings.cp.handlers.get(attr_type)
            take = getattr(handler, "pushed", None)
            if take is not None and take(ctx, values):
                self.accepted.append(ConfigAttribute(attr_type, b""))
        sa.flush_cp_events()
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.accepted:
            out.append(CP(CfgType.CFG_ACK, tuple(self.accepted)))
