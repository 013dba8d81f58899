"""INFORMATIONAL DELETE (RFC 7296 §1.4.1): deleting the IKE SA or some of its CHILD SAs,
answering the peer's delete of either."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import ProtocolId
from ..events import ChildSaDeleted, SaDeleted
from ..message import Delete, Payload
from .child_sa import ChildSa, ChildState
from .state import State
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class DeleteTask(Task):
    """Without ``children`` the IKE SA (and with it every CHILD SA); with them, those."""

    __slots__ = ("answer", "children", "ike")

    def __init__(self, children: list[ChildSa] | None = None) -> None:
        self.ike = False
        self.children = children
        self.answer: list[bytes] = []

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.children is None:
            out.append(Delete(ProtocolId.IKE, 0))
            return
        for child in self.children:
            child.state = ChildState.DELETING
        out.append(Delete(ProtocolId.ESP, 4, tuple(c.spi_in for c in self.children)))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        if self.children is None:
            sa.close(SaDeleted(by_peer=False, replaced=sa.state is State.REPLACED))
            return DONE
        for child in self.children:
            sa.remove_child(child, "deleted")
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        spis: list[bytes] = []
        for d in msg.find(Delete):
            if d.protocol_id == ProtocolId.IKE:
                self.ike = True
            elif d.protocol_id == ProtocolId.ESP:
                spis.extend(d.spis)
        if self.ike or not spis:
            return DONE
        # Only our CHILD SAs count: the peer lists its inbound SPIs, our outbound ones
        # (§1.4.1). SPIs we do not know are answered with nothing and reported to no one.
        known = [c for c in (sa.child_by_spi_out(spi) for spi in spis) if c is not None]
        if known:
            sa.emit(ChildSaDeleted(tuple(c.spi_out for c in known)))
        for child in known:
            if child.state is not ChildState.DELETING:
                # Answer with our inbound SPI of each pair the peer deleted; one we are
                # deleting ourselves is left out of the answer.
                self.answer.append(child.spi_in)
            sa.remove_child(child, "deleted by peer")
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.ike:
            sa.close_after_response(SaDeleted(by_peer=True, replaced=sa.state is State.REPLACED))
        elif self.answer:
            out.append(Delete(ProtocolId.ESP, 4, tuple(self.answer)))
