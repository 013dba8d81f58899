"""NAT detection in IKE_SA_INIT (RFC 7296 §2.23): NAT_DETECTION_SOURCE_IP /
DESTINATION_IP hashes on both sides, and the fake source hash that forces encapsulation."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

from .. import addr as _addr
from ..const import NotifyType
from ..message import Notify, Payload
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView

_ZERO_SPI = bytes(8)
#: A gateway sees the same few local addresses and many repeated NAT addresses: parse each
#: text address once (invalid ones raise and are not cached).
_pack = lru_cache(maxsize=4096)(_addr.pack)


def _hash(sa: IkeSa, spi_r: bytes, addr: tuple[str, int]) -> bytes:
    return sa.backend.nat_detection_hash(sa.spi_i, spi_r, _pack(addr[0]), addr[1])


class NatDetectionTask(Task):
    __slots__ = ("peer_supports",)

    def __init__(self) -> None:
        self.peer_supports = False

    def _build(self, sa: IkeSa, spi_r: bytes, out: list[Payload]) -> None:
        src = os.urandom(20) if sa.settings.force_encap else _hash(sa, spi_r, sa.local)
        out.append(Notify(0, NotifyType.NAT_DETECTION_SOURCE_IP, data=src))
        out.append(Notify(0, NotifyType.NAT_DETECTION_DESTINATION_IP,
                          data=_hash(sa, spi_r, sa.remote)))

    def _process(self, sa: IkeSa, spi_r: bytes, msg: MessageView) -> None:
        srcs = msg.notifies(NotifyType.NAT_DETECTION_SOURCE_IP)
        dsts = msg.notifies(NotifyType.NAT_DETECTION_DESTINATION_IP)
        self.peer_supports = bool(srcs and dsts)
        if not self.peer_supports:
            sa.set_nat(sa.settings.force_encap, False, supported=False)
            return
        remote_hash = _hash(sa, spi_r, sa.remote)
        remote_behind = all(n.data != remote_hash for n in srcs)
        local_hash = _hash(sa, spi_r, sa.local)
        local_behind = all(n.data != local_hash for n in dsts)
        sa.set_nat(local_behind or sa.settings.force_encap, remote_behind, supported=True)

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        self._build(sa, _ZERO_SPI, out)

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        self._process(sa, msg.spi_r, msg)
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        self._process(sa, _ZERO_SPI, msg)
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        if self.peer_supports:
            self._build(sa, sa.spi_r, out)
