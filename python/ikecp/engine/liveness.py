"""Liveness checks (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request and its empty
answer. Error notifies the peer reports in an INFORMATIONAL request surface as events; an
AUTHENTICATION_FAILED there (§2.21.2) ends the SA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import ExchangeType, NotifyType
from ..message import Notify, Payload
from .events import LivenessConfirmed, ProtocolErrorReceived, SaFailed

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class LivenessTask:
    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        return None

    def process_i(self, sa: IkeSa, msg: MessageView) -> None:
        sa.emit(LivenessConfirmed())

    def process_r(self, sa: IkeSa, msg: MessageView) -> None:
        for n in msg.find(Notify):
            if n.notify_type < 16384:
                sa.emit(ProtocolErrorReceived(n.notify_type, ExchangeType.INFORMATIONAL))
            if n.notify_type == NotifyType.AUTHENTICATION_FAILED:
                sa.close_after_response(SaFailed("peer rejected our authentication",
                                                 n.notify_type))

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        return None
