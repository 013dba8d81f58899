"""INFORMATIONAL DELETE (RFC 7296 §1.4.1): deleting the IKE SA, answering the peer's delete
of the IKE SA or of CHILD_SAs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import ProtocolId
from ..message import Delete, Payload
from .events import ChildSaDeleted, SaDeleted
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class DeleteTask(Task):
    __slots__ = ("child_spis", "ike")

    def __init__(self) -> None:
        self.ike = False
        self.child_spis: tuple[bytes, ...] = ()

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        out.append(Delete(ProtocolId.IKE, 0))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        sa.close(SaDeleted(by_peer=False))
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        spis: list[bytes] = []
        for d in msg.find(Delete):
            if d.protocol_id == ProtocolId.IKE:
                self.ike = True
            elif d.protocol_id == ProtocolId.ESP:
                spis.extend(d.spis)
        if not self.ike and spis:
            self.child_spis = tuple(spis)
            sa.emit(ChildSaDeleted(self.child_spis))
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.ike:
            sa.close_after_response(SaDeleted(by_peer=True))
        elif sa.child_spis and sa.child_spis[1] in self.child_spis:
            # Answer with our inbound SPI of the pair the peer deleted (§1.4.1).
            out.append(Delete(ProtocolId.ESP, 4, (sa.child_spis[0],)))
            sa.child_spis = None
