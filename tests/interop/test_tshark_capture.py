"""ikecp FAP <-> ikecp SeGW through the kernel NAPT, captured and decoded by tshark (issue 4).

``capture.Capture`` records the SeGW's link; tshark (Wireshark 4.0) decrypts the SK payloads
with the IKE SA's keys given as an ``ikev2_decryption_table`` UAT line. Wireshark is an independent
implementation: every message must decode with no malformed packet or expert complaint, the
integrity check must pass, and the decrypted CP payloads must show attribute type 23 with the
6 octets of the translated address and port. Wireshark 4.0 labels type 23 "RESERVED TO IANA",
so the number and the bytes are checked, not the name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ikecp import keylog
from ikecp.const import ConfigAttr
from ikecp.cp import nat_info
from ikecp.events import ChildSaEstablished, PeerBinding, PublicAddressLearned, SaDeleted
from ikecp.lab import capture, netns
from ikecp.testing.facility import require
from ikecp_roles import role, wait_bindings
from interop_peers import fap_settings, ikecp_loop
from test_roles_with_strongswan import fap_toml, segw_toml
from test_strongswan_to_segw import segw_settings

pytestmark = [pytest.mark.peer, pytest.mark.netns]

NAT_INFO = ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO

def require_tools() -> None:
    require(netns.probe())
    require(capture.probe())


def decode(path: Path, uat: str, nat: dict[tuple[str, int], tuple[str, int]]) -> list[ET.Element]:
    """tshark's PDML for every IKE frame of the capture, decrypted with ``uat``.

    The NAPT picks the router's source ports: the FAP's 500 becomes a port below 512, where
    tshark has other dissectors (67 shows IKE_SA_INIT as BOOTP, and ``-Y isakmp`` then drops
    it), so both translated ports are named.
    """
    opts = ["-o", f"uat:ikev2_decryption_table:{uat}",
            *capture.ike_decode_as(natt_ports=[nat[(netns.FAP_ADDR, 4500)][1]],
                                   ike_ports=[nat[(netns.FAP_ADDR, 500)][1]])]
    return capture.pdml(path, display_filter="isakmp", options=opts)


def fields(packet: ET.Element, name: str) -> list[ET.Element]:
    return [f for f in packet.iter("field") if f.get("name") == name]


def value(packet: ET.Element, name: str) -> str:
    (f,) = fields(packet, name)
    return f.get("show", "")


def cp_attributes(packet: ET.Element) -> tuple[int, list[tuple[int, bytes]]]:
    """(CFG type, [(attribute type, value bytes)]) of the packet's one decrypted CP payload."""
    cfg_type = int(value(packet, "isakmp.cfg.type"))
    attrs = []
    for attr in fields(packet, "isakmp.cfg.attr"):
        kids = {f.get("name"): f for f in attr.findall("field")}
        raw = kids.get("isakmp.cfg.attr.value")
        data = bytes.fromhex(raw.get("value", "")) if raw is not None else b""
        assert int(kids["isakmp.cfg.attr.length"].get("show", "-1")) == len(data)
        attrs.append((int(kids["isakmp.cfg.attr.type"].get("show", "-1")), data))
    return cfg_type, attrs


@pytest.mark.parametrize(("proposal", "esp"), [
    ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
])
def test_capture_decodes_with_key_log(tmp_path, proposal, esp):
    require_tools()
    pcap = tmp_path / "ike.pcap"
    with netns.nat_topology() as topo:
        with capture.Capture(pcap, "eth0", netns=topo.segw), \
                ikecp_loop(topo, "segw", netns.SEGW_ADDR, responder=segw_settings()) as segw, \
                ikecp_loop(topo, "fap", netns.FAP_ADDR) as fap:
            sa = fap.initiate(fap_settings(proposal, esp, keep_keys=True),
                              (netns.SEGW_ADDR, 500))
            fap.wait_for(lambda evs: any(isinstance(e, ChildSaEstablished) for _, e in evs))
            segw.wait_for(lambda evs: any(isinstance(e, PeerBinding) for _, e in evs))
            nat = topo.nat_mappings()
            public = nat[(netns.FAP_ADDR, 4500)]
            uat = fap.call(lambda: keylog.line(sa))
            fap.call(sa.delete)
            fap.wait_for(lambda evs: any(isinstance(e, SaDeleted) for _, e in evs))
            sent = [w for d, _, _, w in fap.trace if d == "out"]
            received = [w for d, _, _, w in fap.trace if d == "in"]
        (learned,) = fap.events_of(PublicAddressLearned)
        (binding,) = segw.events_of(PeerBinding)

    assert uat is not None
    packets = decode(pcap, uat, nat)
    assert len(packets) == len(sent) + len(received)
    check_capture(packets, public)
    assert (learned.address, learned.port) == public
    assert (binding.public_address, binding.public_port) == public


def test_capture_of_the_programs_decodes_with_their_key_logs(tmp_path):
    """The same with ``ikecp segw --keylog`` and ``ikecp fap --keylog``: both write the one
    line that decrypts the whole conversation."""
    require_tools()
    pcap, db = tmp_path / "ike.pcap", tmp_path / "bindings.sqlite"
    keys = {"segw": tmp_path / "segw.keys", "fap": tmp_path / "fap.keys"}
    with netns.nat_topology() as topo, \
            capture.Capture(pcap, "eth0", netns=topo.segw), \
            role(topo, "segw", "segw", segw_toml(tmp_path), tmp_path,
                 "--keylog", str(keys["segw"])) as segw:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        with role(topo, "fap", "fap", fap_toml(), tmp_path, "--json",
                  "--keylog", str(keys["fap"])) as fap:
            status = fap.wait_status(lambda s: s["state"] == "established")
            nat = topo.nat_mappings()
            public = nat[(netns.FAP_ADDR, 4500)]
            (b,) = wait_bindings(db, lambda rows: len(rows) == 1)
            assert fap.stop() == 0
        wait_bindings(db, lambda rows: rows == [])
    assert (status["public_ip"], status["public_port"]) == public
    assert (b["public_ip"], b["public_port"]) == public
    lines = {k: p.read_text().splitlines() for k, p in keys.items()}
    assert lines["segw"] == lines["fap"] and len(lines["fap"]) == 1
    assert oct(keys["fap"].stat().st_mode & 0o777) == "0o600"
    check_capture(decode(pcap, lines["fap"][0], nat), public)


def check_capture(packets: list[ET.Element], public: tuple[str, int]) -> None:
    """SA_INIT, AUTH, INFORMATIONAL (delete), both ways, all decoded without complaint;
    CP payloads carry attribute 23 as the FAP asked and the SeGW answered. A retransmission
    (a loaded machine) is checked like the rest and then set aside."""
    messages: dict[tuple[str, ...], ET.Element] = {}
    for p in packets:
        key = tuple(value(p, f) for f in ("ip.src", "isakmp.exchangetype", "isakmp.messageid",
                                          "isakmp.flag_r"))
        messages.setdefault(key, p)
    unique = list(messages.values())
    exchanges = [int(value(p, "isakmp.exchangetype")) for p in unique]
    assert exchanges == [34, 34, 35, 35, 37, 37]

    for p in packets:
        problems = [f.get("showname") for f in p.iter("field")
                    if (f.get("name") or "").startswith(("_ws.malformed", "_ws.expert"))]
        problems += [pr.get("name") for pr in p.iter("proto")
                     if (pr.get("name") or "").startswith("_ws.malformed")]
        assert problems == [], problems
        if int(value(p, "isakmp.exchangetype")) != 34:
            assert fields(p, "isakmp.enc.decrypted"), "SK payload not decrypted"
            (icd,) = fields(p, "isakmp.enc.icd")
            assert icd.get("showname", "").endswith("[correct]")

    # IKE_AUTH request: CFG_REQUEST asks for 23 with an empty value.
    req_type, req_attrs = cp_attributes(unique[2])
    assert req_type == 1 and (NAT_INFO, b"") in req_attrs
    # IKE_AUTH response: CFG_REPLY carries exactly one 23 with the translated address:port.
    reply_type, reply_attrs = cp_attributes(unique[3])
    assert reply_type == 2
    nat_values = [v for t, v in reply_attrs if t == NAT_INFO]
    assert nat_values == [nat_info.encode(*public)]
    assert public[0] == netns.RTR_OUTSIDE_ADDR
    # ... which is the source the SeGW saw on the wire.
    assert (value(unique[2], "ip.src"), int(value(unique[2], "udp.srcport"))) == public
