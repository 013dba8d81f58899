"""A received message as the tasks see it: payloads indexed by class once, so the dozen
``first``/``find`` lookups of an exchange do not each walk the payload chain."""

from __future__ import annotations

from typing import cast

from ..message import Message, Notify, Payload


class MessageView:
    """Read-only ``Message`` stand-in offering what tasks use: ``first``, ``find``,
    ``notifies``, ``payloads`` and the header fields."""

    __slots__ = ("_by_class", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        by_class: dict[type, list[Payload]] = {}
        for p in message.payloads:
            same = by_class.get(type(p))
            if same is None:
                by_class[type(p)] = [p]
            else:
                same.append(p)
        self._by_class = by_class

    @property
    def payloads(self) -> tuple[Payload, ...]:
        return self.message.payloads

    @property
    def spi_r(self) -> bytes:
        return self.message.spi_r

    def first(self, cls: type):
        same = self._by_class.get(cls)
        return same[0] if same else None

    def find(self, cls: type) -> list:
        return self._by_class.get(cls) or []

    def notifies(self, notify_type: int) -> list[Notify]:
        found = cast("list[Notify]", self._by_class.get(Notify) or [])
        return [n for n in found if n.notify_type == notify_type]
