"""A received message as the tasks see it: payloads indexed by class once, so the dozen
``first``/``find`` lookups of an exchange do not each walk the payload chain."""

from __future__ import annotations

from typing import cast

from ..message import Message, Notify, Payload


class MessageView:
    """Read-only ``Message`` stand-in offering what tasks use: ``first``, ``find``,
    ``notifies``, ``payloads`` and the header fields."""

    __slots__ = ("_by_class", "_by_notify", "message")

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
        self._by_notify: dict[int, list[Notify]] | None = None  # built on first use

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
        """The notifies of one type, in message order (the list is shared: read it only).
        Tasks ask a dozen times per exchange: the notifies are indexed by type once."""
        by_notify = self._by_notify
        if by_notify is None:
            by_notify = self._by_notify = {}
            for n in cast("list[Notify]", self._by_class.get(Notify) or ()):
                same = by_notify.get(n.notify_type)
                if same is None:
                    by_notify[n.notify_type] = [n]
                else:
                    same.append(n)
        return by_notify.get(int(notify_type)) or []
