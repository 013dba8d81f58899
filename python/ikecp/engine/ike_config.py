"""The CP payload in IKE_AUTH (RFC 7296 §3.15): CFG_REQUEST built from the registered
handlers, CFG_REPLY from the registered providers. Types without a provider are ignored,
never fatal, which is what keeps new attributes backward compatible."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import CfgType
from ..cp.registry import AttributeHandler, CpFailure, Deferred
from ..events import ConfigReceived, CpValueDeferred
from ..message import CP, ConfigAttribute, Payload
from .task import DONE, NEED_MORE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


def _group(attributes: tuple[ConfigAttribute, ...]) -> dict[int, list[bytes]]:
    grouped: dict[int, list[bytes]] = {}
    for a in attributes:
        grouped.setdefault(a.type, []).append(a.value)
    return grouped


class ConfigTask(Task):
    __slots__ = ("asked", "reply", "waiting")

    def __init__(self) -> None:
        self.asked: list[AttributeHandler] = []
        self.reply: list[ConfigAttribute] | None = None
        self.waiting: list[tuple[int, Deferred]] = []

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        ctx = sa.cp_context()
        attrs = []
        for handler in sa.settings.cp.handlers.values():
            value = handler.request(ctx)
            if value is not None:
                attrs.append(ConfigAttribute(handler.attr_type, value))
                self.asked.append(handler)
        if attrs:
            out.append(CP(CfgType.CFG_REQUEST, tuple(attrs)))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        if not self.asked:
            return DONE
        cp = next((p for p in msg.find(CP) if p.cfg_type == CfgType.CFG_REPLY), None)
        attrs = cp.attributes if cp is not None else ()
        if attrs:
            sa.emit(ConfigReceived(attrs))
        grouped = _group(attrs)
        ctx = sa.cp_context()
        for handler in self.asked:
            handler.handle(ctx, grouped.get(handler.attr_type, []))
        sa.flush_cp_events()
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        cp = next((p for p in msg.find(CP) if p.cfg_type == CfgType.CFG_REQUEST), None)
        if cp is None:
            return DONE
        requested = _group(cp.attributes)
        ctx = sa.cp_context()
        self.reply = []
        failure: CpFailure | None = None
        for attr_type, provider in sa.settings.cp.providers.items():
            if attr_type not in requested:
                continue
            try:
                values = provider.provide(ctx, requested[attr_type])
            except CpFailure as exc:
                failure = failure or exc
                continue
            if isinstance(values, Deferred):
                self.waiting.append((attr_type, values))
                sa.emit(CpValueDeferred(attr_type, values))
            else:
                self.reply.extend(ConfigAttribute(attr_type, v) for v in values)
        if failure is not None:
            self._failed(sa, failure)
        sa.flush_cp_events()
        return NEED_MORE if self.waiting else DONE

    def resume_r(self, sa: IkeSa) -> Status:
        """Once every deferred value arrived, add them to the reply in registration order."""
        if any(not d.done for _, d in self.waiting):
            return NEED_MORE
        waiting, self.waiting = self.waiting, []
        for attr_type, deferred in waiting:
            if deferred.failure is not None:
                self._failed(sa, deferred.failure)
                break
            if self.reply is not None:
                self.reply.extend(ConfigAttribute(attr_type, v) for v in deferred.values)
        sa.flush_cp_events()
        return DONE

    def _failed(self, sa: IkeSa, failure: CpFailure) -> None:
        """RFC 7296 §3.15.4: the failure (e.g. INTERNAL_ADDRESS_FAILURE) refuses the CHILD_SA,
        not the IKE SA, so the rest of the reply still goes out (the NAT info above all);
        whatever was handed out is taken back, since no CHILD_SA will use it."""
        sa.child_failure = (failure.notify_type, failure.reason)
        handed_out = set(sa.cp_context().assigned)
        sa.release_cp()
        self.waiting = []
        if self.reply is not None:
            self.reply = [a for a in self.reply if a.type not in handed_out]

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.reply is not None:
            out.append(CP(CfgType.CFG_REPLY, tuple(self.reply)))
