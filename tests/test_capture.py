"""Captures decoded by tshark: strongSwan's exchange as the SeGW's interface sees it."""

from __future__ import annotations

import struct

import pytest
from ikecp.lab import capture, netns, strongswan
from ikecp.testing.facility import require

FIELDS = ["ip.src", "udp.srcport", "ip.dst", "udp.dstport", "isakmp.exchangetype",
          "isakmp.flag_r", "isakmp.notify.msgtype"]
NAT_DETECTION = {"16388", "16389"}  # NAT_DETECTION_SOURCE_IP / _DESTINATION_IP (RFC 7296)


@pytest.mark.peer
@pytest.mark.netns
def test_capture_shows_translated_ports_and_decodes_cleanly(tmp_path):
    for missing in (netns.probe(), strongswan.probe(), capture.probe()):
        require(missing)
    pcap = tmp_path / "segw.pcap"
    with netns.nat_topology() as topo, \
            strongswan.charon(strongswan.segw_responder(), netns=topo.segw) as resp, \
            strongswan.charon(strongswan.fap_initiator(), netns=topo.fap) as init:
        with capture.Capture(pcap, "eth0", netns=topo.segw):
            init.initiate("net")
            resp.wait_for_sa()
        nat = topo.nat_mappings()

    opts = capture.ike_decode_as(natt_ports=[nat[(netns.FAP_ADDR, 4500)][1]],
                                 ike_ports=[nat[(netns.FAP_ADDR, 500)][1]])
    rows = capture.decode(pcap, FIELDS, display_filter="isakmp", options=opts)
    assert rows, "no IKE frames captured"
    by_exchange: dict[str, list[dict]] = {}
    for row in rows:
        by_exchange.setdefault(row["isakmp.exchangetype"][0], []).append(row)
    init_req = next(r for r in by_exchange["34"] if r["isakmp.flag_r"] == ["0"])
    auth_req = next(r for r in by_exchange["35"] if r["isakmp.flag_r"] == ["0"])

    # What the SeGW's interface saw: the router's address and the NAPT's ports, 500 then 4500.
    assert (init_req["ip.src"][0], int(init_req["udp.srcport"][0])) == \
        nat[(netns.FAP_ADDR, 500)]
    assert init_req["udp.dstport"] == ["500"]
    assert set(init_req["isakmp.notify.msgtype"]) >= NAT_DETECTION
    assert (auth_req["ip.src"][0], int(auth_req["udp.srcport"][0])) == \
        nat[(netns.FAP_ADDR, 4500)]
    assert auth_req["udp.dstport"] == ["4500"]  # after the float, with the non-ESP marker
    assert capture.malformed(pcap, options=opts) == 0


@pytest.mark.netns
def test_capture_of_unknown_interface_fails_at_start(tmp_path):
    require(netns.probe())
    require(capture.probe())
    with netns.nat_topology() as topo:
        cap = capture.Capture(tmp_path / "x.pcap", "no-such-if0", netns=topo.segw)
        with pytest.raises(OSError):
            cap.start()


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_frame(sport: int, dport: int, payload: bytes) -> bytes:
    src, dst = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 10])
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                               src, dst))
    ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + bytes(ip) + udp


def test_translated_low_port_needs_decode_as(tmp_path):
    """A NAPT may pick source port 53: tshark then dissects IKE as DNS unless told."""
    require(capture.probe())
    # IKE header (RFC 7296 §3.1): SPIi, SPIr = 0, no payload, v2.0, IKE_SA_INIT, Initiator.
    ike = bytes(range(1, 9)) + bytes(8) + struct.pack("!BBBBII", 0, 0x20, 34, 0x08, 0, 28)
    frame = _udp_frame(53, 500, ike)
    pcap = tmp_path / "low.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    fields = ["udp.srcport", "isakmp.exchangetype"]
    assert capture.decode(pcap, fields, display_filter="isakmp") == []
    rows = capture.decode(pcap, fields, display_filter="isakmp",
                          options=capture.ike_decode_as(ike_ports=[53]))
    assert rows == [{"udp.srcport": ["53"], "isakmp.exchangetype": ["34"]}]
