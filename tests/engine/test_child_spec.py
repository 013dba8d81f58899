"""The seam between the engine and the data plane: a negotiated CHILD SA becomes two
``ChildSpec``s (one per side) whose keys, SPIs and selectors fit each other, and the ESP
transforms keyed from them carry packets both ways."""

from __future__ import annotations

import pytest
from engine_pair import Pair, fap_settings, segw_settings
from ikecp.dataplane import ChildSpec, NoDataPlane
from ikecp.engine import ChildProposal
from ikecp.engine.events import ChildSaEstablished


@pytest.mark.parametrize("esp", ["aes256gcm16", "aes128gcm16", "chacha20poly1305",
                                 "aes256-sha256", "aes128-sha512"])
def test_both_sides_fit_and_carry_packets(backend, esp):
    kw = {"child_proposals": (ChildProposal.parse(esp),)}
    pair = Pair(backend, fap_settings(**kw), segw_settings(**kw)).run()
    (ci,) = pair.events("i", ChildSaEstablished)
    (cr,) = pair.events("r", ChildSaEstablished)
    fap = ChildSpec.from_event(ci, initiator=True, peer=("198.51.100.10", 4500))
    segw = ChildSpec.from_event(cr, initiator=False, peer=("198.51.100.1", 40001))
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
