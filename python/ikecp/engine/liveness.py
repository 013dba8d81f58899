"""Liveness checks (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request and its empty
answer. Error notifies the peer reports in an INFORMATIONAL request surface as events; an
AUTHENTICATION_FAILED there (§2.21.2) ends the SA."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import ExchangeType, NotifyType
from ..events import LivenessConfirmed, ProtocolErrorReceived, SaFailed
from ..message import Notify
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class LivenessTask(Task):
    __slots__ = ()

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        sa.emit(LivenessConfirmed())
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        for n in msg.find(Notify):
            if n.notify_type < 16384:
                sa.emit(ProtocolErrorReceived(n.notify_type, ExchangeType.INFORMATIONAL))
            if n.notify_type == NotifyType.AUTHENTICATION_FAILED:
                sa.close_after_response(SaFailed("peer rejected our authentication",
                                                 n.notify_type))
        return DONE
