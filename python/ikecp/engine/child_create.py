"""A CHILD SA, the first one in IKE_AUTH or another with CREATE_CHILD_SA (RFC 7296 §1.3,
§2.9, §2.17): ESP proposal, traffic selector narrowing, in CREATE_CHILD_SA fresh nonces and
an optional KE for perfect forward secrecy (INVALID_KE_PAYLOAD asks for another group); the
KEYMAT goes to the application in ``ChildSaEstablished``. ``child_rekey`` reuses it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import dh
from ..const import ConfigAttr, NotifyType, ProtocolId, TsType
from ..errors import CryptoError, RemoteProtocolError
from ..events import ChildSaEstablished, ChildSaFailed
from ..message import KE, SA, Nonce, Notify, Payload, Proposal, TrafficSelector, TSi, TSr
from .auth import CHILD_ERRORS
from .child_sa import ChildSa
from .settings import new_spi
from .task import DONE, NEED_MORE, Status, Task
from .transforms import Suite, child_offer, sa_proposals, select

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


def _intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    if a.ts_type != b.ts_type:
        return None
    if a.ip_protocol and b.ip_protocol and a.ip_protocol != b.ip_protocol:
        return None
    start_port, end_port = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    start, end = max(a.start_addr, b.start_addr), min(a.end_addr, b.end_addr)
    if start_port > end_port or start > end:
        return None
    ts = TrafficSelector(a.ts_type, a.ip_protocol or b.ip_protocol, start_port, end_port,
                         start, end)
    # A CHILD SA keeps its selectors for its lifetime: share an equal existing object.
    return b if ts == b else a if ts == a else ts


def narrow(offered: Sequence[TrafficSelector], allowed: Sequence[TrafficSelector]
           ) -> tuple[TrafficSelector, ...]:
    """Every non-empty intersection of an offered selector with an allowed one (§2.9)."""
    out = []
    for o in offered:
        for a in allowed:
            ts = _intersect(o, a)
            if ts is not None and ts not in out:
                out.append(ts)
    if len(out) == 1 and len(allowed) == 1 and out[0] is allowed[0] \
            and isinstance(allowed, tuple):
        return allowed  # the common case: exactly what we allow, no new tuple per SA
    return tuple(out)


def _host(addr: bytes) -> TrafficSelector:
    ts_type = TsType.IPV4_ADDR_RANGE if len(addr) == 4 else TsType.IPV6_ADDR_RANGE
    return TrafficSelector(ts_type, 0, 0, 65535, addr, addr)


class ChildCreateTask(Task):
    """One CHILD SA. ``in_auth``: the first one, keyed from IKE_SA_INIT's nonces; otherwise a
    CREATE_CHILD_SA with nonces (and, when the proposals carry a DH group, a KE) of its own.
    ``child`` holds the result; a refusal is reported as ``ChildSaFailed`` and ``failed``."""

    __slots__ = ("child", "dh", "error", "failed", "in_auth", "nonce_i", "nonce_r",
                 "proposal_number", "rekeys", "secret", "spi_in", "spi_out", "suite", "ts")

    def __init__(self, in_auth: bool = True, rekeys: ChildSa | None = None) -> None:
        self.in_auth = in_auth
        self.rekeys = rekeys      # the CHILD SA a rekey replaces: its selectors are reused
        self.spi_in = b""
        self.suite: Suite | None = None
        self.ts: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]] = ((), ())
        self.error: tuple[int, str] | None = None
        self.failed: int | None = None
        self.proposal_number = 1
        self.spi_out = b""
        self.nonce_i = self.nonce_r = b""
        self.dh: dh.DhPrivate | None = None
        self.secret = b""
        self.child: ChildSa | None = None

    def _keys(self, sa: IkeSa, suite: Suite) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        ek, ik = suite.encr_key_len, suite.integ_key_len
        if self.in_auth:
            km = sa.backend.child_keymat(sa.suite.prf, sa.sk_d, sa.nonce_i, sa.nonce_r,
                                         2 * (ek + ik))
        else:
            km = sa.backend.child_keymat(sa.suite.prf, sa.sk_d, self.nonce_i, self.nonce_r,
                                         2 * (ek + ik), self.secret)
        return (km[:ek], km[ek:ek + ik]), (km[ek + ik:2 * ek + ik], km[2 * ek + ik:])

    def _established(self, sa: IkeSa, spi_out: bytes, initiator: bool) -> None:
        assert self.suite is not None
        i_to_r, r_to_i = self._keys(sa, self.suite)
        s = self.suite
        self.secret = b""
        ts_local, ts_remote = self.ts if initiator else self.ts[::-1]
        self.child = child = ChildSa(self.spi_in, spi_out, s, ts_local, ts_remote)
        sa.add_child(child)
        if sa.wants(ChildSaEstablished):
            sa.emit(ChildSaEstablished(
                spi_in=self.spi_in, spi_out=spi_out, encr=s.encr,
                encr_key_bits=s.encr_key_bits, integ=s.integ, esn=s.esn, ts_i=self.ts[0],
                ts_r=self.ts[1], key_i_to_r=i_to_r, key_r_to_i=r_to_i,
                encapsulated=sa.encapsulated, initiator=initiator,
                rekeys=self.rekeys.spi_in if self.rekeys is not None else None,
            ))

    def _refused(self, sa: IkeSa, notify_type: int, reason: str) -> Status:
        self.failed = notify_type
        sa.emit(ChildSaFailed(notify_type, reason))
        return DONE

    def lower_nonce(self) -> bytes:
        """The lower of this exchange's two nonces: the loser of a rekey collision is the
        exchange with the lowest nonce (§2.8.1)."""
        return min(self.nonce_i, self.nonce_r)

    # --- initiator --------------------------------------------------------------------------

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        self.spi_in = new_spi(sa.settings, 4)
        proposals = tuple(sa.settings.child_proposals)
        pfs = not self.in_auth and any(p.dh for p in proposals)
        out.append(SA(sa_proposals(ProtocolId.ESP, child_offer(proposals, pfs), self.spi_in)))
        if not self.in_auth:
            self.nonce_i = os.urandom(sa.settings.nonce_size)
            out.append(Nonce(self.nonce_i))
            if pfs:
                if self.dh is None:
                    self.dh = dh.generate(next(g for p in proposals for g in p.dh))
                out.append(KE(self.dh.group, self.dh.public_bytes))
        old = self.rekeys
        out.append(TSi(old.ts_local if old is not None else sa.settings.local_ts))
        out.append(TSr(old.ts_remote if old is not None else sa.settings.remote_ts))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        for n in msg.find(Notify):
            if n.notify_type == NotifyType.INVALID_KE_PAYLOAD and self.dh is not None:
                return self._switch_group(sa, n.data)
            if n.notify_type in CHILD_ERRORS or (not self.in_auth and n.notify_type < 16384):
                return self._refused(sa, n.notify_type, "peer refused the CHILD_SA")
        sa_payload, tsi, tsr = msg.first(SA), msg.first(TSi), msg.first(TSr)
        if sa_payload is None or tsi is None or tsr is None:
            return self._refused(sa, NotifyType.INVALID_SYNTAX, "SA or TS payloads missing")
        chosen = select(ProtocolId.ESP, sa_payload.proposals, sa.settings.child_proposals,
                        pfs=not self.in_auth)
        prop = sa_payload.proposals[0] if len(sa_payload.proposals) == 1 else None
        if chosen is None or prop is None or len(prop.spi) != 4:
            return self._refused(sa, NotifyType.NO_PROPOSAL_CHOSEN, "unacceptable ESP reply")
        ts_i = narrow(tsi.selectors, sa.settings.local_ts)
        ts_r = narrow(tsr.selectors, sa.settings.remote_ts)
        if not ts_i or not ts_r:
            return self._refused(sa, NotifyType.TS_UNACCEPTABLE, "selectors outside ours")
        if not self.in_auth:
            nonce = msg.first(Nonce)
            if nonce is None or not 16 <= len(nonce.data) <= 256:
                return self._refused(sa, NotifyType.INVALID_SYNTAX, "bad or missing Nr")
            self.nonce_r = nonce.data
            group = chosen[1].dh
            if (group and (self.dh is None or group != self.dh.group)) or \
                    (not group and self.dh is not None):
                return self._refused(sa, NotifyType.NO_PROPOSAL_CHOSEN, "PFS group mismatch")
            if self.dh is not None:
                ke = msg.first(KE)
                try:
                    if ke is None or ke.group != self.dh.group:
                        raise CryptoError("KE payload missing or of another group")
                    self.secret = self.dh.exchange(ke.data)
                except CryptoError as exc:
                    return self._refused(sa, NotifyType.INVALID_SYNTAX, str(exc))
                self.dh = None
        self.suite, self.ts = chosen[1], (ts_i, ts_r)
        self._established(sa, prop.spi, True)
        return DONE

    def _switch_group(self, sa: IkeSa, data: bytes) -> Status:
        """INVALID_KE_PAYLOAD: send the request again with the group the peer wants, once."""
        group = int.from_bytes(data[:2], "big") if len(data) == 2 else -1
        offered = {g for p in sa.settings.child_proposals for g in p.dh}
        if group not in offered or self.dh is None or group == self.dh.group or self.failed:
            return self._refused(sa, NotifyType.INVALID_KE_PAYLOAD,
                                 f"peer asked for group {group} we cannot use")
        self.failed = NotifyType.INVALID_KE_PAYLOAD  # marks the one retry as used
        self.dh = dh.generate(group)
        return NEED_MORE

    # --- responder --------------------------------------------------------------------------

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        if sa.child_failure is not None and self.in_auth:
            self.error = sa.child_failure
            return DONE
        if not self.in_auth and sa.rekeying_ike():
            raise RemoteProtocolError(NotifyType.TEMPORARY_FAILURE, "rekeying the IKE SA")
        sa_payload, tsi, tsr = msg.first(SA), msg.first(TSi), msg.first(TSr)
        if sa_payload is None and self.in_auth:
            return DONE  # no CHILD_SA wanted (e.g. childless IKE SA)
        if tsi is None or tsr is None:
            self.error = (NotifyType.TS_UNACCEPTABLE, "TSi/TSr missing")
            return DONE
        ke: KE | None = None if self.in_auth else msg.first(KE)
        chosen = select(ProtocolId.ESP, sa_payload.proposals, sa.settings.child_proposals,
                        prefer_dh=ke.group if ke is not None else None, pfs=not self.in_auth)
        if chosen is None or len(chosen[0].spi) != 4:
            self.error = (NotifyType.NO_PROPOSAL_CHOSEN, "no acceptable ESP proposal")
            return DONE
        allowed_i: Sequence[TrafficSelector] = sa.settings.remote_ts
        inner = sa.cp_context().assigned.get(ConfigAttr.INTERNAL_IP4_ADDRESS)
        if inner:
            allowed_i = narrow([_host(inner[0])], allowed_i)
        ts_i = narrow(tsi.selectors, allowed_i)
        ts_r = narrow(tsr.selectors, sa.settings.local_ts)
        if not ts_i or not ts_r:
            self.error = (NotifyType.TS_UNACCEPTABLE, "no traffic selectors in common")
            return DONE
        suite = chosen[1]
        if not self.in_auth:
            nonce = msg.first(Nonce)
            if not 16 <= len(nonce.data) <= 256:
                raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, "nonce length")
            self.nonce_i = nonce.data
            if suite.dh:
                if ke is None or ke.group != suite.dh:
                    # §1.3: name the group we want; the initiator retries with it.
                    raise RemoteProtocolError(NotifyType.INVALID_KE_PAYLOAD,
                                              f"KE group {ke.group if ke else None}, "
                                              f"want {suite.dh}",
                                              suite.dh.to_bytes(2, "big"))
                self.dh = dh.generate(suite.dh)
                try:
                    self.secret = self.dh.exchange(ke.data)
                except CryptoError as exc:
                    raise RemoteProtocolError(NotifyType.INVALID_SYNTAX,
                                              "invalid KE value") from exc
            self.nonce_r = os.urandom(sa.settings.nonce_size)
        self.spi_in = new_spi(sa.settings, 4)
        self.proposal_number = chosen[0].number
        self.suite, self.ts = suite, (ts_i, ts_r)
        self.spi_out = chosen[0].spi
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.error is not None:
            out.append(Notify(0, self.error[0]))
            self.failed = self.error[0]
            sa.emit(ChildSaFailed(*self.error))
            return
        if self.suite is None:
            return
        out.append(SA((Proposal(self.proposal_number, ProtocolId.ESP, self.spi_in,
                                self.suite.transforms(esn=True)),)))
        if not self.in_auth:
            out.append(Nonce(self.nonce_r))
            if self.dh is not None:
                out.append(KE(self.dh.group, self.dh.public_bytes))
                self.dh = None
        out.append(TSi(self.ts[0]))
        out.append(TSr(self.ts[1]))
        self._established(sa, self.spi_out, False)
