"""The seam between the IKE control plane and whatever carries the traffic.

A role (SeGW, FAP) hands each negotiated CHILD SA to a ``DataPlane``: ``install`` when it is
established, ``replace`` when a rekey made a successor (make-before-break: the new SA sends
at once, the old one keeps receiving until ``remove``), ``remove`` when it is deleted, and
``set_peer`` when the peer moved; ``set_address`` gives the FAP its inner address. Two
implementations:

- ``NoDataPlane`` (``dataplane = "none"``): nothing is carried; CHILD SAs are negotiated
  and their keys dropped, as before the data plane existed.
- ``TunDataPlane`` (``dataplane = "tun"``, :mod:`ikecp.dataplane.tun`): userspace ESP in UDP
  on a TUN device, in Rust threads. It owns the NAT-T socket and passes IKE datagrams and
  keepalives up.

A kernel XFRM backend would be a third class with the same five methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..addr import Address, unpack
from ..events import ChildSaEstablished
from ..message import TrafficSelector

#: (protocol, start port, end port, start address, end address)
Selector = tuple[int, int, int, str, str]


class DataplaneUnavailableError(RuntimeError):
    """``dataplane = "tun"`` cannot run here; the message says why in one line."""


def selector(ts: TrafficSelector) -> Selector:
    return (ts.ip_protocol, ts.start_port, ts.end_port, unpack(ts.start_addr),
            unpack(ts.end_addr))


@dataclass(frozen=True)
class ChildSpec:
    """One CHILD SA as a data plane needs it, from this side's point of view."""

    spi_in: int
    spi_out: int
    encr: int
    integ: int
    #: (encryption key incl. salt, integrity key) for what we receive / what we send.
    key_in: tuple[bytes, bytes]
    key_out: tuple[bytes, bytes]
    esn: bool
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    peer: Address

    @classmethod
    def from_event(cls, ev: ChildSaEstablished, *, peer: Address) -> ChildSpec:
        """KEYMAT's first half protects traffic from the initiator of the exchange that made
        the SA (IKE_AUTH or CREATE_CHILD_SA, ``ev.initiator``) to its responder (§2.17)."""
        ours, theirs = (ev.ts_i, ev.ts_r) if ev.initiator else (ev.ts_r, ev.ts_i)
        key_in, key_out = ev.key_in, ev.key_out
        return cls(
            spi_in=int.from_bytes(ev.spi_in, "big"), spi_out=int.from_bytes(ev.spi_out, "big"),
            encr=ev.encr, integ=ev.integ, key_in=key_in, key_out=key_out, esn=bool(ev.esn),
            local_ts=tuple(selector(t) for t in ours),
            remote_ts=tuple(selector(t) for t in theirs), peer=peer)

    def __repr__(self) -> str:  # never the keys
        return (f"ChildSpec(spi_in={self.spi_in:#010x}, spi_out={self.spi_out:#010x}, "
                f"encr={self.encr}, integ={self.integ}, esn={self.esn}, "
                f"local_ts={self.local_ts}, remote_ts={self.remote_ts}, peer={self.peer})")


@dataclass(frozen=True)
class DataPlaneEvent:
    """What the data plane tells the control plane.

    ``kind`` is "rekey" (a soft limit passed: sequence numbers, bytes or packets; ``what``
    says which), "expired" (a hard limit: the SA sends no more) or "peer_moved" (an
    authenticated ESP packet came from ``new``: the NAT rebound).
    """

    kind: str
    spi_in: int
    what: str = ""
    old: Address | None = None
    new: Address | None = None


EventSink = Callable[[DataPlaneEvent], None]


class DataPlane(Protocol):
    name: str

    def set_address(self, address: str) -> None: ...
    def install(self, spec: ChildSpec) -> None: ...
    def replace(self, old_spi_in: int, spec: ChildSpec) -> None: ...
    def remove(self, spi_in: int) -> bool: ...
    def set_peer(self, spi_in: int, peer: Address) -> None: ...
    def counters(self, spi_in: int) -> dict[str, object] | None: ...
    def close(self) -> None: ...


class NoDataPlane:
    """``dataplane = "none"``: CHILD SAs are negotiated, not carried."""

    name = "none"

    def set_address(self, address: str) -> None:
        pass

    def install(self, spec: ChildSpec) -> None:
        pass

    def replace(self, old_spi_in: int, spec: ChildSpec) -> None:
        pass

    def remove(self, spi_in: int) -> bool:
        return False

    def set_peer(self, spi_in: int, peer: Address) -> None:
        pass

    def counters(self, spi_in: int) -> dict[str, object] | None:
        return None

    def close(self) -> None:
        pass
