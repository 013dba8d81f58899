"""Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18): new SPIs, nonces and a
fresh Diffie-Hellman exchange; SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr). The new IKE
SA is a new ``IkeSa`` that takes the CHILD SAs over; the initiator of the rekey deletes the
old one. Simultaneous rekeys (§2.8.2): the new IKE SA made by the exchange with the lowest
nonce is redundant and its creator deletes it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import dh
from ..const import NotifyType, ProtocolId
from ..errors import CryptoError, RemoteProtocolError
from ..events import ProtocolErrorReceived
from ..message import KE, SA, Nonce, Notify, Payload, Proposal
from .sa_init import accept_ike_proposal, check_nonce
from .settings import new_spi
from .task import DONE, NEED_MORE, Status, Task
from .transforms import Suite, ike_offer, select

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class IkeRekeyTask(Task):
    __slots__ = ("collision", "dh", "new", "nonce_i", "nonce_r", "proposal_number", "retried",
                 "spi", "suite")

    def __init__(self) -> None:
        self.dh: dh.DhPrivate | None = None
        self.spi = b""  # our SPI in the new IKE SA, drawn when the exchange starts
        self.nonce_i = self.nonce_r = b""
        self.suite: Suite | None = None
        self.proposal_number = 1
        self.new: IkeSa | None = None
        #: The peer's rekey of this IKE SA, answered while ours was outstanding.
        self.collision: IkeRekeyTask | None = None
        self.retried = False

    def lower_nonce(self) -> bytes:
        return min(self.nonce_i, self.nonce_r)

    # --- initiator --------------------------------------------------------------------------

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.dh is None:
            self.dh = dh.generate(sa.suite.dh)
        self.spi = self.spi or new_spi(sa.settings, 8)
        self.nonce_i = os.urandom(sa.settings.nonce_size)
        offer = ike_offer(tuple(sa.settings.ike_proposals), self.dh.group)
        out.append(SA(tuple(Proposal(p.number, p.protocol_id, self.spi, p.transforms)
                            for p in offer)))
        out.append(Nonce(self.nonce_i))
        out.append(KE(self.dh.group, self.dh.public_bytes))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        for n in msg.find(Notify):
            if n.notify_type >= 16384:
                continue
            if n.notify_type == NotifyType.INVALID_KE_PAYLOAD and not self.retried:
                group = int.from_bytes(n.data[:2], "big") if len(n.data) == 2 else -1
                if any(group in p.dh for p in sa.settings.ike_proposals):
                    self.retried = True
                    self.dh = dh.generate(group)
                    return NEED_MORE
            sa.emit(ProtocolErrorReceived(n.notify_type, msg.message.exchange))
            return self._not_rekeyed(sa)
        sa_payload: SA | None = msg.first(SA)
        ke: KE | None = msg.first(KE)
        assert self.dh is not None
        offered = sa_payload.proposals if sa_payload is not None else ()
        chosen = select(ProtocolId.IKE, offered, sa.settings.ike_proposals)
        if chosen is None or len(offered) != 1 or len(chosen[0].spi) != 8 \
                or chosen[1].dh != self.dh.group or ke is None or ke.group != self.dh.group:
            raise RemoteProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "unacceptable IKE rekey")
        self.nonce_r = check_nonce(msg.first(Nonce))
        try:
            secret = self.dh.exchange(ke.data)
        except CryptoError as exc:
            raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "invalid KE value") from exc
        self.dh = None
        new = self.new = sa.successor(True, self.spi, chosen[0].spi, chosen[1], self.nonce_i,
                                      self.nonce_r, secret)
        other = self.collision
        if other is not None and other.new is not None:
            if self.lower_nonce() < other.lower_nonce():
                # Collision lost: ours is redundant; the peer deletes the old IKE SA.
                sa.hand_over(other.new, delete_old=False)
                sa.adopt_redundant(new, delete=True)
                return DONE
            sa.adopt_redundant(other.new)  # the peer deletes that one
        sa.hand_over(new, delete_old=True)
        return DONE

    def _not_rekeyed(self, sa: IkeSa) -> Status:
        other = self.collision
        if other is not None and other.new is not None:
            sa.hand_over(other.new, delete_old=False)  # the peer's rekey stands
        else:
            sa.retry_ike_rekey()
        return DONE

    # --- responder --------------------------------------------------------------------------

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        if sa.tasks.busy_creating():
            raise RemoteProtocolError(NotifyType.TEMPORARY_FAILURE,
                                      "a CREATE_CHILD_SA of ours is outstanding")
        sa_payload: SA = msg.first(SA)
        ke: KE | None = msg.first(KE)
        if ke is None:
            raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "KE missing in IKE rekey")
        proposal, suite, self.dh, secret = accept_ike_proposal(sa, sa_payload.proposals, ke)
        if len(proposal.spi) != 8:
            raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "IKE SPI must be 8 octets")
        self.nonce_i = check_nonce(msg.first(Nonce))
        self.nonce_r = os.urandom(sa.settings.nonce_size)
        self.spi = new_spi(sa.settings, 8)
        self.suite, self.proposal_number = suite, proposal.number
        self.new = sa.successor(False, proposal.spi, self.spi, suite, self.nonce_i,
                                self.nonce_r, secret)
        active = sa.tasks.active(IkeRekeyTask)
        if active is not None:
            active.collision = self  # settled when our own response arrives
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        assert self.dh is not None and self.suite is not None and self.new is not None
        out.append(SA((Proposal(self.proposal_number, ProtocolId.IKE, self.spi,
                                self.suite.transforms()),)))
        out.append(Nonce(self.nonce_r))
        out.append(KE(self.dh.group, self.dh.public_bytes))
        self.dh = None
        if sa.tasks.active(IkeRekeyTask) is None:
            sa.hand_over(self.new, delete_old=False)  # the initiator deletes the old one
