"""Liveness checks (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request and its empty
answer. Error notifies the peer reports in an INFORMATIONAL request surface as events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import ExchangeType
from ..message import Message, Notify, Payload
from .events import LivenessConfirmed, ProtocolErrorReceived

if TYPE_CHECKING:
    from .sa import IkeSa


class LivenessTask:
    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        return None

    def process_i(self, sa: IkeSa, msg: Message) -> None:
        sa.emit(LivenessConfirmed())

    def process_r(self, sa: IkeSa, msg: Message) -> None:
        for n in msg.find(Notify):
            if n.notify_type < 16384:
                sa.emit(ProtocolErrorReceived(n.notify_type, ExchangeType.INFORMATIONAL))

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        return None
