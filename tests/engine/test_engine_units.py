"""Unit tests of the engine's pure helpers: proposal strings, selection, selector narrowing."""

from __future__ import annotations

import pytest
from ikecp import addr
from ikecp.const import DhGroup, EncrId, IntegId, PrfId, ProtocolId
from ikecp.engine import ChildProposal, IkeProposal, selector
from ikecp.engine.child_create import narrow
from ikecp.engine.transforms import encr_key_bytes, ike_offer, select


def test_parse_ike_proposal():
    p = IkeProposal.parse("aes256gcm16-prfsha384-x25519-ecp256")
    assert p.encryption == ((EncrId.AES_GCM_16, 256),) and p.integrity == ()
    assert p.prf == (PrfId.HMAC_SHA2_384,) and p.dh == (DhGroup.CURVE25519, DhGroup.ECP_256)
    q = IkeProposal.parse("aes128-sha256-modp2048")  # PRF follows integrity
    assert q.prf == (PrfId.HMAC_SHA2_256,) and q.integrity == (IntegId.HMAC_SHA2_256_128,)


@pytest.mark.parametrize("text", ["", "aes256gcm16-x25519", "aes256-prfsha256-x25519",
                                  "aes256gcm16-sha256-prfsha256-x25519", "aes256-sha256",
                                  "blowfish-sha256-x25519", "aes256-sha256-modp1024"])
def test_parse_rejects_incomplete_or_unknown(text):
    with pytest.raises(ValueError):
        IkeProposal.parse(text)


def test_parse_child_proposal():
    assert ChildProposal.parse("aes256gcm16").integrity == ()
    assert ChildProposal.parse("aes128-sha1-esn").esn == (1,)
    with pytest.raises(ValueError):
        ChildProposal.parse("aes256gcm16-sha256")


def test_key_sizes_include_the_salt():
    assert encr_key_bytes(EncrId.AES_GCM_16, 256) == 36
    assert encr_key_bytes(EncrId.AES_GCM_16, 128) == 20
    assert encr_key_bytes(EncrId.CHACHA20_POLY1305, None) == 36
    assert encr_key_bytes(EncrId.AES_CBC, 256) == 32


def test_select_keeps_initiator_order_and_prefers_ke_group():
    offer = ike_offer((IkeProposal.parse("aes128gcm16-prfsha256-ecp256-x25519"),
                       IkeProposal.parse("aes256-sha384-x25519")), DhGroup.CURVE25519)
    local = (IkeProposal.parse("aes256-sha384-x25519"),
             IkeProposal.parse("aes128gcm16-prfsha256-x25519-ecp256"))
    prop, suite = select(ProtocolId.IKE, offer, local, prefer_dh=DhGroup.CURVE25519)
    assert prop.number == 1 and suite.encr == EncrId.AES_GCM_16 and suite.dh == 31
    _, suite = select(ProtocolId.IKE, offer, local, prefer_dh=DhGroup.ECP_256)
    assert suite.dh == DhGroup.ECP_256
    assert select(ProtocolId.IKE, offer, (IkeProposal.parse("aes256gcm16-prfsha512-x25519"),)
                  ) is None
    assert select(ProtocolId.ESP, offer, local) is None  # wrong protocol


def test_narrowing():
    wide, net = selector("0.0.0.0/0"), selector("10.0.0.0/8", protocol=17, ports=(500, 500))
    assert narrow([wide], [net]) == (net,)
    assert narrow([selector("192.168.0.0/16")], [net]) == ()
    assert narrow([selector("::/0")], [wide]) == ()
    tcp = selector("10.1.0.0/16", protocol=6)
    assert narrow([tcp], [net]) == ()  # TCP vs UDP


def test_addr_helpers():
    assert addr.pack("198.51.100.1") == bytes([198, 51, 100, 1])
    assert addr.unpack(addr.pack("fd00::1")) == "fd00::1"
    for bad in ("300.1.1.1", "example.net", ""):
        with pytest.raises(ValueError):
            addr.pack(bad)
    with pytest.raises(ValueError):
        addr.unpack(b"\x01\x02\x03")
