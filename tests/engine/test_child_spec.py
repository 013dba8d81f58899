"""The seam between the engine and the data plane: a negotiated CHILD SA becomes two
``ChildSpec``s (one per side) whose keys, SPIs and selectors fit each other, and the ESP
transforms keyed from them carry packets both ways."""

from __future__ import annotations

import pytest
from engine_pair import Pair, fap_settings, segw_settings
from ikecp.dataplane import ChildSpec, NoDataPlane
from ikecp.engine import ChildProposal
from ikecp.events import ChildSaEstablished


@pytest.mark.parametrize("esp", ["aes256gcm16", "aes128gcm16", "chacha20poly1305",
                                 "aes256-sha256", "aes128-sha512"])
def test_both_sides_fit_and_carry_packets(backend, esp):
    kw = {"child_proposals": (ChildProposal.parse(esp),)}
    pair = Pair(backend, fap_settings(**kw), segw_settings(**kw)).run()
    (ci,) = pair.events("i", ChildSaEstablished)
    (cr,) = pair.events("r", ChildSaEstablished)
    fap = ChildSpec.from_event(ci, peer=("198.51.100.10", 4500))
    segw = ChildSpec.from_event(cr, peer=("198.51.100.1", 40001))
    assert (fap.spi_in, fap.spi_out) == (segw.spi_out, segw.spi_in)
    assert fap.key_out == segw.key_in and fap.key_in == segw.key_out
    assert fap.key_in != fap.key_out
    assert fap.local_ts == segw.remote_ts and fap.remote_ts == segw.local_ts
    assert "key" not in repr(fap).replace("key_", "")  # repr never shows keys
    assert fap.key_out[0].hex() not in repr(fap)
    # Keyed as the data plane keys them, the two sides understand each other.
    up = backend.EspTransform(fap.encr, *fap.key_out[:1], fap.integ, fap.key_out[1])
    down = backend.EspTransform(segw.encr, *segw.key_in[:1], segw.integ, segw.key_in[1])
    packet = bytes.fromhex("4500001c0000400040110000646400 02c63364c8".replace(" ", ""))
    wire = up.seal(fap.spi_out, 1, 4, packet + bytes(8), esn=fap.esn)
    assert down.open(wire, seq_hi=0 if segw.esn else None) == (4, packet + bytes(8))


def test_no_data_plane_carries_nothing():
    plane = NoDataPlane()
    assert plane.name == "none"
    assert plane.remove(1) is False
    assert plane.counters(1) is None


class _Recorder:
    """A data plane that only remembers what is installed."""

    name = "recorder"

    def __init__(self) -> None:
        self.specs: dict[int, ChildSpec] = {}

    def set_address(self, address: str) -> None:
        pass

    def install(self, spec: ChildSpec) -> None:
        self.specs[spec.spi_in] = spec

    def replace(self, old_spi_in: int, spec: ChildSpec) -> None:
        self.specs.pop(old_spi_in, None)
        self.specs[spec.spi_in] = spec

    def remove(self, spi_in: int) -> bool:
        return self.specs.pop(spi_in, None) is not None

    def set_peer(self, spi_in: int, peer) -> None:
        pass

    def counters(self, spi_in: int):
        return None

    def close(self) -> None:
        pass


def test_data_plane_follows_child_and_ike_rekeys_started_by_either_side(backend):
    """After CHILD and IKE rekeys started by the SeGW and by the FAP, each side's data plane
    holds exactly the one current CHILD SA, keyed to fit the other side's."""
    from ikecp.dataplane.children import ChildTracker

    pair = Pair(backend, fap_settings(), segw_settings()).run()
    planes = {"i": _Recorder(), "r": _Recorder()}
    trackers = {s: ChildTracker(planes[s]) for s in "ir"}
    fed = 0

    def feed() -> None:
        nonlocal fed
        for side, sa, ev in pair.trail[fed:]:
            trackers[side].on_event(sa, ev)
        fed = len(pair.trail)

    # The last CHILD SA is made by a rekey the SeGW starts: keys by the exchange's roles.
    for step in (lambda: None, lambda: pair.i.rekey_child(), lambda: pair.i.rekey(),
                 lambda: pair.r.rekey_child(), lambda: pair.r.rekey()):
        step()
        pair.run()
        feed()
    ((fap,), (segw,)) = planes["i"].specs.values(), planes["r"].specs.values()
    (child_i,), (_,) = pair.i.children, pair.r.children
    assert (fap.spi_in, fap.spi_out) == (int.from_bytes(child_i.spi_in, "big"),
                                         int.from_bytes(child_i.spi_out, "big"))
    assert (fap.spi_in, fap.spi_out) == (segw.spi_out, segw.spi_in)
    assert fap.key_out == segw.key_in and fap.key_in == segw.key_out
    assert fap.local_ts == segw.remote_ts and fap.remote_ts == segw.local_ts
