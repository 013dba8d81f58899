"""IKE_SA_INIT: proposal selection, Diffie-Hellman, nonces; INVALID_KE_PAYLOAD and COOKIE
round trips on the initiator (RFC 7296 §1.2, §2.6, §3.4)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import dh
from ..const import NotifyType, ProtocolId
from ..errors import CryptoError, RemoteProtocolError
from ..message import KE, SA, Nonce, Notify, Payload, Proposal
from . import fragments
from .auth import certreq_payloads, record_certreq, record_signature_hashes, signature_hash_notifies
from .keys import derive_ike_keys
from .settings import new_spi
from .task import DONE, NEED_MORE, Status, Task
from .transforms import Suite, ike_offer, select

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView

_MAX_ROUNDS = 4  # COOKIE / INVALID_KE retries before giving up


def check_nonce(nonce: Nonce) -> bytes:
    if not 16 <= len(nonce.data) <= 256:  # §3.9
        raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "nonce length out of range")
    return nonce.data


def accept_ike_proposal(sa: IkeSa, proposals: Sequence[Proposal], ke: KE
                        ) -> tuple[Proposal, Suite, dh.DhPrivate, bytes]:
    """Responder of IKE_SA_INIT or of an IKE rekey: the chosen proposal (the KE's group
    preferred), our DH key pair and the shared secret. INVALID_KE_PAYLOAD names the group we
    want (§1.2, §1.3.2)."""
    chosen = select(ProtocolId.IKE, proposals, sa.settings.ike_proposals, prefer_dh=ke.group)
    if chosen is None:
        raise RemoteProtocolError(NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable proposal")
    proposal, suite = chosen
    if suite.dh != ke.group:
        raise RemoteProtocolError(NotifyType.INVALID_KE_PAYLOAD,
                                  f"KE group {ke.group}, want {suite.dh}",
                                  suite.dh.to_bytes(2, "big"))
    private = dh.generate(suite.dh)
    try:
        secret = private.exchange(ke.data)
    except CryptoError as exc:
        raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "invalid KE value") from exc
    return proposal, suite, private, secret


class SaInitTask(Task):
    __slots__ = ("cookie", "dh", "proposal_number", "rounds")

    def __init__(self) -> None:
        self.cookie: bytes | None = None
        self.rounds = 0
        self.dh: dh.DhPrivate | None = None
        self.proposal_number = 1

    # --- initiator --------------------------------------------------------------------------

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.dh is None:
            group = sa.settings.initial_dh or sa.settings.ike_proposals[0].dh[0]
            self.dh = dh.generate(group)
            sa.nonce_i = os.urandom(sa.settings.nonce_size)
        if self.cookie is not None:
            out.append(Notify(0, NotifyType.COOKIE, data=self.cookie))
        group = self.dh.group
        out.append(SA(ike_offer(tuple(sa.settings.ike_proposals), group)))
        out.append(KE(group, self.dh.public_bytes))
        out.append(Nonce(sa.nonce_i))
        out.extend(signature_hash_notifies(sa))
        fragments.announce(sa, out)

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        cookie = msg.notifies(NotifyType.COOKIE)
        invalid_ke = msg.notifies(NotifyType.INVALID_KE_PAYLOAD)
        if cookie or invalid_ke:
            self.rounds += 1
            if self.rounds > _MAX_ROUNDS:
                raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "too many retries")
            if cookie:
                if not 1 <= len(cookie[0].data) <= 64:
                    return self.fail("bad COOKIE length")
                self.cookie = cookie[0].data
            else:
                self._switch_group(sa, invalid_ke[0].data)
            return NEED_MORE
        for n in msg.find(Notify):
            if n.notify_type < 16384:
                raise RemoteProtocolError(n.notify_type, "peer refused IKE_SA_INIT")
        sa_payload: SA = msg.first(SA)
        if len(sa_payload.proposals) != 1:
            return self.fail("responder must choose exactly one proposal")
        chosen = select(ProtocolId.IKE, sa_payload.proposals, sa.settings.ike_proposals)
        ke: KE = msg.first(KE)
        if chosen is None or self.dh is None or chosen[1].dh != self.dh.group \
                or ke.group != self.dh.group:
            return self.fail("responder chose a proposal we did not offer")
        if msg.spi_r == bytes(8):
            return self.fail("responder SPI is zero")
        try:
            nonce_r = check_nonce(msg.first(Nonce))
            secret = self.dh.exchange(ke.data)
        except (RemoteProtocolError, CryptoError) as exc:
            return self.fail(str(exc))
        sa.suite, sa.spi_r, sa.nonce_r = chosen[1], msg.spi_r, nonce_r
        record_signature_hashes(sa, msg)
        record_certreq(sa, msg)
        fragments.note_peer(sa, msg)
        derive_ike_keys(sa, secret)
        self.dh = None
        return DONE

    def _switch_group(self, sa: IkeSa, data: bytes) -> None:
        group = int.from_bytes(data[:2], "big") if len(data) == 2 else -1
        offered = {g for p in sa.settings.ike_proposals for g in p.dh}
        if group not in offered or (self.dh is not None and group == self.dh.group):
            raise RemoteProtocolError(NotifyType.INVALID_KE_PAYLOAD,
                                      f"peer asked for group {group} we cannot use")
        self.dh = dh.generate(group)

    # --- responder --------------------------------------------------------------------------

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        ke: KE = msg.first(KE)
        sa_payload: SA = msg.first(SA)
        nonce_i = check_nonce(msg.first(Nonce))
        proposal, suite, self.dh, secret = accept_ike_proposal(sa, sa_payload.proposals, ke)
        self.proposal_number = proposal.number
        record_signature_hashes(sa, msg)
        fragments.note_peer(sa, msg)
        sa.suite, sa.nonce_i = suite, nonce_i
        sa.spi_r = new_spi(sa.settings, 8)
        sa.nonce_r = os.urandom(sa.settings.nonce_size)
        derive_ike_keys(sa, secret)
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        assert self.dh is not None
        out.append(SA((Proposal(self.proposal_number, ProtocolId.IKE, b"",
                                sa.suite.transforms()),)))
        out.append(KE(self.dh.group, self.dh.public_bytes))
        out.append(Nonce(sa.nonce_r))
        out.extend(certreq_payloads(sa))  # §1.2: the responder's CERTREQ goes here
        if sa.peer_hashes is not None:  # answer RFC 7427 peers only, as strongSwan does
            out.extend(signature_hash_notifies(sa))
        fragments.announce(sa, out)
        self.dh = None
