"""``ChildTracker``: turns a role's engine events into calls on its ``DataPlane``.

Both roles need the same bookkeeping: which IKE SA owns which installed CHILD SA (to remove
them with it, to follow the peer when it moves, and to find the IKE SA when the data plane
saw an authenticated ESP packet from a new address).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from ..const import ConfigAttr
from ..events import (
    ChildSaClosed,
    ChildSaDeleted,
    ChildSaEstablished,
    ConfigReceived,
    Event,
    IkeSaRekeyed,
    RemoteAddressChanged,
    SaDeleted,
    SaFailed,
)
from . import ChildSpec, DataPlane, NoDataPlane

if TYPE_CHECKING:
    from ..engine import IkeSa

log = logging.getLogger("ikecp.dataplane")
#: The event types ``on_event`` acts on.
_TRACKED: frozenset[type] = frozenset({
    ChildSaEstablished, ConfigReceived, RemoteAddressChanged, ChildSaClosed, IkeSaRekeyed,
    ChildSaDeleted, SaDeleted, SaFailed})


class ChildTracker:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self._owner: dict[int, IkeSa] = {}            # spi_in -> IKE SA
        self._by_sa: dict[int, list[ChildSpec]] = {}  # id(IKE SA) -> its CHILD SAs

    @property
    def interest(self) -> frozenset[type]:
        """The event types it needs to see (``Settings.events``): none without a data
        plane."""
        return frozenset() if type(self.plane) is NoDataPlane else _TRACKED

    def owner(self, spi_in: int) -> IkeSa | None:
        return self._owner.get(spi_in)

    def children(self, sa: IkeSa) -> list[ChildSpec]:
        return list(self._by_sa.get(id(sa), ()))

    def counters(self, sa: IkeSa) -> dict[str, object]:
        """Counters of ``sa``'s CHILD SAs summed, with their SPIs (empty with no data plane)."""
        total: dict[str, object] = {}
        for spec in self.children(sa):
            c = self.plane.counters(spec.spi_in)
            if c is None:
                continue
            for k, v in c.items():
                if isinstance(v, int):
                    total[k] = int(total.get(k, 0)) + v  # type: ignore[call-overload]
        return total

    def on_event(self, sa: IkeSa, ev: Event) -> None:
        if type(self.plane) is NoDataPlane:
            return  # nothing carries CHILD SAs: keeping their specs would only cost memory
        if isinstance(ev, ChildSaEstablished):
            spec = ChildSpec.from_event(ev, peer=sa.remote)
            self.plane.install(spec)
            self._owner[spec.spi_in] = sa
            self._by_sa.setdefault(id(sa), []).append(spec)
        elif isinstance(ev, ConfigReceived):
            for attr in ev.attributes:
                if attr.type == ConfigAttr.INTERNAL_IP4_ADDRESS and len(attr.value) == 4:
                    self.plane.set_address(str(ipaddress.IPv4Address(attr.value)))
        elif isinstance(ev, RemoteAddressChanged):
            for spec in self.children(sa):
                self.plane.set_peer(spec.spi_in, ev.new)
        elif isinstance(ev, ChildSaClosed):  # deleted, replaced by a rekey or expired
            gone_in = int.from_bytes(ev.spi_in, "big")
            for spec in self.children(sa):
                if spec.spi_in == gone_in:
                    self._remove(sa, spec)
        elif isinstance(ev, IkeSaRekeyed):  # the CHILD SAs now belong to the new IKE SA
            moved = self._by_sa.pop(id(sa), [])
            if moved:
                self._by_sa[id(ev.sa)] = moved
                for spec in moved:
                    self._owner[spec.spi_in] = ev.sa  # type: ignore[assignment]
        elif isinstance(ev, ChildSaDeleted):
            gone = {int.from_bytes(s, "big") for s in ev.spis}
            for spec in self.children(sa):
                if spec.spi_out in gone:
                    self._remove(sa, spec)
        elif isinstance(ev, (SaDeleted, SaFailed)):
            for spec in self.children(sa):
                self._remove(sa, spec)

    def _remove(self, sa: IkeSa, spec: ChildSpec) -> None:
        self.plane.remove(spec.spi_in)
        self._owner.pop(spec.spi_in, None)
        left = [s for s in self._by_sa.get(id(sa), ()) if s.spi_in != spec.spi_in]
        if left:
            self._by_sa[id(sa)] = left
        else:
            self._by_sa.pop(id(sa), None)
