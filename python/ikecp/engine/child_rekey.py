"""Rekeying a CHILD SA with CREATE_CHILD_SA (RFC 7296 §1.3.3, §2.8): N(REKEY_SA) names the
old SA, a new one is created with ``ChildCreateTask``, the initiator of the rekey deletes the
old one. Simultaneous rekeys of the same SA (§2.8.1): both new SAs are made; the one whose
exchange used the lowest of the four nonces is redundant and its creator deletes it, the
other side deletes the old one. TEMPORARY_FAILURE and CHILD_SA_NOT_FOUND (§2.25) answer
requests that cross ours."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import NotifyType, ProtocolId
from ..errors import RemoteProtocolError
from ..events import ChildSaRekeyed
from ..message import Notify, Payload
from .child_create import ChildCreateTask
from .child_sa import ChildSa, ChildState
from .task import DONE, NEED_MORE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class ChildRekeyTask(Task):
    __slots__ = ("collision", "create", "missing_spi", "old")

    def __init__(self, old: ChildSa | None = None) -> None:
        self.old = old
        self.create = ChildCreateTask(in_auth=False, rekeys=old)
        #: The peer's rekey of the same SA, answered while ours was outstanding.
        self.collision: ChildRekeyTask | None = None
        self.missing_spi = b""

    # --- initiator --------------------------------------------------------------------------

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        old = self.old
        assert old is not None
        if old.state is ChildState.INSTALLED:
            old.state = ChildState.REKEYING
        out.append(Notify(ProtocolId.ESP, NotifyType.REKEY_SA, spi=old.spi_in))
        self.create.build_i(sa, out)

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        if self.create.process_i(sa, msg) is NEED_MORE:
            return NEED_MORE
        old, new, other = self.old, self.create.child, self.collision
        assert old is not None
        passive = other.create.child if other is not None else None
        if new is None:
            failed = self.create.failed
            if passive is not None:  # the peer's rekey went through; it deletes the old SA
                old.state = ChildState.REKEYED
            elif failed == NotifyType.CHILD_SA_NOT_FOUND:
                sa.remove_child(old, "the peer no longer has it")
            elif old in sa.children:
                old.state = ChildState.INSTALLED
                sa.retry_child_rekey(old)
            return DONE
        if other is not None and passive is not None \
                and self.create.lower_nonce() < other.create.lower_nonce():
            # Collision lost: ours is the redundant pair; the peer deletes the old one.
            old.state = ChildState.REKEYED
            sa.delete_children([new], "redundant after a rekey collision")
            return DONE
        sa.emit(ChildSaRekeyed(old.spi_in, old.spi_out, new.spi_in, new.spi_out))
        if passive is not None:
            passive.rekey_at = None  # the peer deletes that one; never rekey it meanwhile
        if old in sa.children:
            old.state = ChildState.REKEYED
            sa.delete_children([old], "rekeyed")
        return DONE

    # --- responder --------------------------------------------------------------------------

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        notify = next(n for n in msg.notifies(NotifyType.REKEY_SA))
        old = sa.child_by_spi_out(notify.spi)
        if old is None:
            self.missing_spi = notify.spi
            return DONE
        if old.state in (ChildState.DELETING, ChildState.REKEYED) or sa.rekeying_ike():
            raise RemoteProtocolError(NotifyType.TEMPORARY_FAILURE,
                                      "that CHILD SA is being deleted or the IKE SA rekeyed")
        self.old = old
        self.create.rekeys = old
        active = sa.tasks.active(ChildRekeyTask)
        if active is not None and active.old is old:
            active.collision = self
        return self.create.process_r(sa, msg)

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.old is None:
            out.append(Notify(ProtocolId.ESP, NotifyType.CHILD_SA_NOT_FOUND,
                              spi=self.missing_spi))
            return
        self.create.build_r(sa, out)
        old, new = self.old, self.create.child
        if new is None:
            return
        sa.emit(ChildSaRekeyed(old.spi_in, old.spi_out, new.spi_in, new.spi_out))
        if old.state is ChildState.INSTALLED:
            old.state = ChildState.REKEYED  # the initiator of the rekey deletes it
        old.rekey_at = None
