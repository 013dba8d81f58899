"""The first CHILD_SA in IKE_AUTH (RFC 7296 §1.3, §2.9, §2.17): ESP proposal, traffic
selector narrowing, KEYMAT handed to the application in ``ChildSaEstablished``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..const import ConfigAttr, NotifyType, ProtocolId, TsType
from ..message import SA, Notify, Payload, Proposal, TrafficSelector, TSi, TSr
from .auth import CHILD_ERRORS
from .events import ChildSaEstablished, ChildSaFailed
from .task import DONE, Status, Task
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
    return TrafficSelector(a.ts_type, a.ip_protocol or b.ip_protocol, start_port, end_port,
                           start, end)


def narrow(offered: Sequence[TrafficSelector], allowed: Sequence[TrafficSelector]
           ) -> tuple[TrafficSelector, ...]:
    """Every non-empty intersection of an offered selector with an allowed one (§2.9)."""
    out = []
    for o in offered:
        for a in allowed:
            ts = _intersect(o, a)
            if ts is not None and ts not in out:
                out.append(ts)
    return tuple(out)


def _host(addr: bytes) -> TrafficSelector:
    ts_type = TsType.IPV4_ADDR_RANGE if len(addr) == 4 else TsType.IPV6_ADDR_RANGE
    return TrafficSelector(ts_type, 0, 0, 65535, addr, addr)


class ChildCreateTask(Task):
    def __init__(self) -> None:
        self.spi_in = b""
        self.suite: Suite | None = None
        self.ts: tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]] = ((), ())
        self.error: tuple[int, str] | None = None
        self.proposal_number = 1
        self.spi_out = b""

    def _keys(self, sa: IkeSa, suite: Suite) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        ek, ik = suite.encr_key_len, suite.integ_key_len
        km = sa.backend.child_keymat(sa.suite.prf, sa.sk_d, sa.nonce_i, sa.nonce_r,
                                     2 * (ek + ik))
        return (km[:ek], km[ek:ek + ik]), (km[ek + ik:2 * ek + ik], km[2 * ek + ik:])

    def _established(self, sa: IkeSa, spi_out: bytes) -> None:
        assert self.suite is not None
        i_to_r, r_to_i = self._keys(sa, self.suite)
        s = self.suite
        sa.child_spis = (self.spi_in, spi_out)
        sa.emit(ChildSaEstablished(
            spi_in=self.spi_in, spi_out=spi_out, encr=s.encr, encr_key_bits=s.encr_key_bits,
            integ=s.integ, esn=s.esn, ts_i=self.ts[0], ts_r=self.ts[1],
            key_i_to_r=i_to_r, key_r_to_i=r_to_i, encapsulated=sa.encapsulated,
        ))

    # --- initiator --------------------------------------------------------------------------

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        self.spi_in = os.urandom(4)
        out.append(SA(sa_proposals(ProtocolId.ESP, child_offer(tuple(sa.settings.child_proposals)),
                                   self.spi_in)))
        out.append(TSi(sa.settings.local_ts))
        out.append(TSr(sa.settings.remote_ts))

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        for n in msg.find(Notify):
            if n.notify_type in CHILD_ERRORS:
                sa.emit(ChildSaFailed(n.notify_type, "peer refused the CHILD_SA"))
                return DONE
        sa_payload, tsi, tsr = msg.first(SA), msg.first(TSi), msg.first(TSr)
        if sa_payload is None or tsi is None or tsr is None:
            sa.emit(ChildSaFailed(NotifyType.INVALID_SYNTAX, "SA or TS payloads missing"))
            return DONE
        chosen = select(ProtocolId.ESP, sa_payload.proposals, sa.settings.child_proposals)
        prop = sa_payload.proposals[0] if len(sa_payload.proposals) == 1 else None
        if chosen is None or prop is None or len(prop.spi) != 4:
            sa.emit(ChildSaFailed(NotifyType.NO_PROPOSAL_CHOSEN, "unacceptable ESP reply"))
            return DONE
        ts_i = narrow(tsi.selectors, sa.settings.local_ts)
        ts_r = narrow(tsr.selectors, sa.settings.remote_ts)
        if not ts_i or not ts_r:
            sa.emit(ChildSaFailed(NotifyType.TS_UNACCEPTABLE, "selectors outside ours"))
            return DONE
        self.suite, self.ts = chosen[1], (ts_i, ts_r)
        self._established(sa, prop.spi)
        return DONE

    # --- responder --------------------------------------------------------------------------

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        if sa.child_failure is not None:
            self.error = sa.child_failure
            return DONE
        sa_payload, tsi, tsr = msg.first(SA), msg.first(TSi), msg.first(TSr)
        if sa_payload is None:
            return DONE  # no CHILD_SA wanted (e.g. childless IKE SA)
        if tsi is None or tsr is None:
            self.error = (NotifyType.TS_UNACCEPTABLE, "TSi/TSr missing")
            return DONE
        chosen = select(ProtocolId.ESP, sa_payload.proposals, sa.settings.child_proposals)
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
        self.spi_in = os.urandom(4)
        self.proposal_number = chosen[0].number
        self.suite, self.ts = chosen[1], (ts_i, ts_r)
        self.spi_out = chosen[0].spi
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.error is not None:
            out.append(Notify(0, self.error[0]))
            sa.emit(ChildSaFailed(*self.error))
            return
        if self.suite is None:
            return
        out.append(SA((Proposal(self.proposal_number, ProtocolId.ESP, self.spi_in,
                                self.suite.transforms(esn=True)),)))
        out.append(TSi(self.ts[0]))
        out.append(TSr(self.ts[1]))
        self._established(sa, self.spi_out)

