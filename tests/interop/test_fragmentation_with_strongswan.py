"""IKE fragmentation (RFC 7383) against strongSwan through the kernel NAPT, both directions.

Both sides authenticate with an RSA-4096 certificate under two RSA-4096 intermediates (a
chain of over 3 KB sent in CERT payloads), so each IKE_AUTH message is over 4 KB: more than
a home NAPT that drops IP fragments lets through in one UDP datagram. strongSwan runs with
``fragmentation = force`` and its default ``fragment_size`` (1280); ikecp with its defaults
(``yes``, 1280). strongSwan's log must show that it split its own IKE_AUTH message into SKF
fragments and reassembled ours, and every IKE datagram on the wire must fit a 1280-octet IP
packet. The router drops every IP fragment before its NAT sees it, as the home NAPTs this
is for do: with fragmentation off, IKE_AUTH is lost there.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from ikecp import pki
from ikecp._backend import backend
from ikecp.engine import FragmentPolicy, RetransmitPolicy
from ikecp.engine.cert_auth import CertAuthenticator
from ikecp.events import ChildSaEstablished, IkeSaEstablished, SaFailed
from ikecp.lab import netns, strongswan
from ikecp.lab.ca import CertAuthority
from ikecp.message import SKF
from ikecp_roles import role, wait_bindings
from interop_peers import FAP_ID, IKECP_POOL, SEGW_ID, fap_settings, ikecp_loop, require_peers
from test_fap_to_strongswan import SEGW, segw_config
from test_strongswan_to_segw import fap_config, segw_settings

pytestmark = [pytest.mark.peer, pytest.mark.netns]

X25519 = "aes256gcm16-prfsha256-x25519"
#: AEAD (the SKF header is associated data) and AES-CBC + HMAC (the ICV covers it).
SUITES = pytest.mark.parametrize(("proposal", "esp"), [
    (X25519, "aes256gcm16"), ("aes256-sha256-modp2048", "aes256-sha256")])
IP_UDP = 28  # IPv4 and UDP headers: what a 1280-octet IP packet leaves for IKE
SPLIT = re.compile(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments")
REASSEMBLED = re.compile(r"received fragment #(\d+) of (\d+), "
                         r"reassembled fragmented IKE message \((\d+) bytes\)")


@functools.cache
def _issued():
    """Root → two RSA-4096 intermediates → RSA-4096 leaves for both identities (RSA-4096
    keys take seconds to make: once per run)."""
    root = CertAuthority("ikecp interop root CA")
    sub = root.intermediate("ikecp interop RSA-4096 sub-CA", key_type="rsa4096")
    femto = sub.intermediate("ikecp interop RSA-4096 femto CA", key_type="rsa4096")
    return root, sub, femto, femto.issue([FAP_ID], key_type="rsa4096"), \
        femto.issue([SEGW_ID], key_type="rsa4096")


def big_chain(tmp_path: Path):
    """The chain as PEM files for strongSwan, and the trust store and credentials for
    ikecp."""
    root, sub, femto, fap, segw = _issued()
    sent = [fap.cert, *fap.chain]
    assert len(sent) == 3 and sum(len(c.public_bytes(Encoding.DER)) for c in sent) > 3000
    files = {"ca.pem": root.cert_pem, "sub.pem": sub.cert_pem, "femto.pem": femto.cert_pem,
             "fap.pem": fap.cert_pem, "fap.key": fap.key_pem,
             "segw.pem": segw.cert_pem, "segw.key": segw.key_pem}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return pki.TrustStore([root.cert]), fap, segw


INTERMEDIATES = ("sub.pem", "femto.pem")

#: In the router, before conntrack reassembles them (priority -400): count and drop every
#: IPv4 fragment (More Fragments set or a non-zero offset).
DROP_IP_FRAGMENTS = """table ip nofrag {
    chain pre {
        type filter hook prerouting priority -450; policy accept;
        ip frag-off & 0x3fff != 0 counter drop
    }
}
"""


def drop_ip_fragments(topo) -> None:
    topo.run_cmd("rtr", ["nft", "-f", "-"], input_text=DROP_IP_FRAGMENTS)


def ip_fragments_dropped(topo) -> int:
    listing = topo.run_cmd("rtr", ["nft", "list", "table", "ip", "nofrag"])
    found = re.search(r"counter packets (\d+)", listing)
    assert found, listing
    return int(found[1])


def skf_datagrams(loop, direction: str) -> list[bytes]:
    """The IKE messages (non-ESP marker removed) that ``loop`` sent or received as SKF."""
    out = []
    for d, port, _, wire in loop.trace:
        if d != direction:
            continue
        data = wire[4:] if port == 4500 or (d == "out" and wire[:4] == bytes(4)) else wire
        try:
            msg = backend.decode_message(data)
        except ValueError:
            continue
        if msg.payloads and isinstance(msg.payloads[-1], SKF):
            out.append(data)
    return out


def check_both_up(ss, ss_sa, spi_i: bytes, loop) -> None:
    """strongSwan holds our IKE SA with its CHILD SA installed, and the chain and the
    fragments went as they should."""
    assert bytes.fromhex(ss_sa.raw["initiator-spi"]) == spi_i
    (child,) = ss_sa.children.values()
    assert child["state"] == "INSTALLED", ss.log_tail()
    log = ss.log()
    check_chain_sent(log)
    check_wire_and_log(loop, log)


def check_chain_sent(log: str) -> None:
    """Both intermediates went each way."""
    for name in ("sub-CA", "femto CA"):
        assert re.search(rf'sending issuer cert ".*RSA-4096 {name}"', log), log
        assert re.search(rf'received issuer cert ".*RSA-4096 {name}"', log), log


def check_wire_and_log(loop, log: str) -> None:
    # strongSwan split its IKE_AUTH (> 3 KB) and we received every fragment of it.
    (size, count), = {(int(m[1]), int(m[2])) for m in SPLIT.finditer(log)}
    assert size > 4000 and count >= 4, log
    assert len(skf_datagrams(loop, "in")) == count
    # We split ours, and strongSwan put it back together.
    reassembled = REASSEMBLED.search(log)
    assert reassembled, log
    ours = skf_datagrams(loop, "out")
    assert int(reassembled[2]) == len(ours) >= 4 and int(reassembled[3]) > 4000
    assert re.search(r"(generating|parsed) IKE_AUTH (request|response) 1 \[ EF\(1/\d+\) \]",
                     log), log
    # Every IKE datagram, both ways, fits a 1280-octet IPv4 packet (marker included).
    assert max(len(w) for _, _, _, w in loop.trace) + IP_UDP <= 1280


@SUITES
def test_strongswan_fap_fragments_to_ikecp_segw(tmp_path, proposal, esp):
    require_peers()
    trust, _, segw_cert = big_chain(tmp_path)
    fap = dataclasses.replace(
        fap_config(proposal, esp, psk=None, cert=tmp_path / "fap.pem",
                   key=tmp_path / "fap.key", cacert=tmp_path / "ca.pem"),
        extra_cacerts=tuple(tmp_path / n for n in INTERMEDIATES),
        conn_extra={"fragmentation": "force"})
    segw = segw_settings(auth=CertAuthenticator(segw_cert.credential, trust))
    with netns.nat_topology() as topo, \
            ikecp_loop(topo, "segw", netns.SEGW_ADDR, responder=segw) as loop, \
            strongswan.charon(fap, netns=topo.fap) as ss:
        drop_ip_fragments(topo)
        out = ss.initiate("net")
        assert "initiate completed successfully" in out, ss.log_tail()
        i = ss.wait_for_sa()
        loop.wait_for(lambda evs: any(isinstance(e, ChildSaEstablished) for _, e in evs),
                      timeout=10)
        assert loop.events_of(SaFailed) == []
        (est,) = loop.events_of(IkeSaEstablished)
        check_both_up(ss, i, est.spi_i, loop)
        assert ip_fragments_dropped(topo) == 0


@SUITES
def test_ikecp_fap_fragments_to_strongswan_segw(tmp_path, proposal, esp):
    require_peers()
    trust, fap_cert, _ = big_chain(tmp_path)
    segw = dataclasses.replace(
        segw_config(proposal, esp), psk=None, cert=tmp_path / "segw.pem",
        key=tmp_path / "segw.key", cacert=tmp_path / "ca.pem",
        extra_cacerts=tuple(tmp_path / n for n in INTERMEDIATES),
        conn_extra={"fragmentation": "force"})
    with netns.nat_topology() as topo, strongswan.charon(segw, netns=topo.segw) as ss, \
            ikecp_loop(topo, "fap", netns.FAP_ADDR) as loop:
        drop_ip_fragments(topo)
        sa = loop.initiate(fap_settings(proposal, esp,
                                        auth=CertAuthenticator(fap_cert.credential, trust)),
                           SEGW)

        def up(evs):
            if any(isinstance(e, SaFailed) for _, e in evs):
                raise AssertionError(f"ikecp FAP failed: {evs}\n{ss.log_tail()}")
            return any(isinstance(e, ChildSaEstablished) for _, e in evs)

        loop.wait_for(up, timeout=15)
        assert sa.peer_fragmentation
        check_both_up(ss, ss.wait_for_sa(), sa.spi_i, loop)
        assert ip_fragments_dropped(topo) == 0


def test_without_fragmentation_ike_auth_is_lost_in_the_napt(tmp_path):
    """The control: ``fragmentation = no`` on the ikecp FAP sends its 4.5 KB IKE_AUTH as one
    UDP datagram; the kernel splits it into IP fragments, the router drops them, and every
    retransmission meets the same fate until the FAP gives up."""
    require_peers()
    trust, fap_cert, _ = big_chain(tmp_path)
    segw = dataclasses.replace(
        segw_config(X25519, "aes256gcm16"), psk=None, cert=tmp_path / "segw.pem",
        key=tmp_path / "segw.key", cacert=tmp_path / "ca.pem",
        extra_cacerts=tuple(tmp_path / n for n in INTERMEDIATES))
    with netns.nat_topology() as topo, strongswan.charon(segw, netns=topo.segw) as ss, \
            ikecp_loop(topo, "fap", netns.FAP_ADDR) as loop:
        drop_ip_fragments(topo)
        fap = fap_settings(X25519, "aes256gcm16",
                           auth=CertAuthenticator(fap_cert.credential, trust),
                           fragmentation=FragmentPolicy("no"))
        # Give up soon: each try costs ~1 s of test time and fails the same way.
        fap = dataclasses.replace(fap, retransmit=RetransmitPolicy(0.3, 2.0, tries=2))
        sa = loop.initiate(fap, SEGW)
        (failed,) = loop.wait_for(
            lambda evs: [e for _, e in evs if isinstance(e, SaFailed)] or None, timeout=15)
        assert "retransmission limit" in failed.reason
        assert not sa.peer_fragmentation and skf_datagrams(loop, "out") == []
        # The first transmission and every retransmission, each in IP fragments.
        assert ip_fragments_dropped(topo) >= 2 * (1 + sa.settings.retransmit.tries)
        assert "IKE_AUTH request" not in ss.log()


def test_strongswan_fap_to_the_segw_program_with_a_small_fragment_size(tmp_path):
    """The ``ikecp segw`` program with ``fragment_size = 576`` in its TOML: its IKE_AUTH
    response reaches strongSwan in more, smaller fragments than 1280 would make, through the
    router that drops IP fragments; the binding registry gets the FAP's row."""
    require_peers()
    big_chain(tmp_path)
    (tmp_path / "segw-chain.pem").write_bytes(b"".join(
        (tmp_path / n).read_bytes() for n in ("segw.pem", "femto.pem", "sub.pem")))
    db = tmp_path / "bindings.sqlite"
    segw_toml = {"identity": SEGW_ID, "listen": netns.SEGW_ADDR, "pool": IKECP_POOL,
                 "bindings": str(db), "dpd": 0, "cert": str(tmp_path / "segw-chain.pem"),
                 "key": str(tmp_path / "segw.key"), "ca": [str(tmp_path / "ca.pem")],
                 "fragmentation": "yes", "fragment_size": 576}
    fap = dataclasses.replace(
        fap_config(X25519, "aes256gcm16", psk=None, cert=tmp_path / "fap.pem",
                   key=tmp_path / "fap.key", cacert=tmp_path / "ca.pem"),
        extra_cacerts=tuple(tmp_path / n for n in INTERMEDIATES),
        conn_extra={"fragmentation": "force"})
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", segw_toml, tmp_path) as segw, \
            strongswan.charon(fap, netns=topo.fap) as ss:
        drop_ip_fragments(topo)
        segw.wait_line(lambda line: line.startswith("SeGW "))
        out = ss.initiate("net")
        assert "initiate completed successfully" in out, ss.log_tail()
        (row,) = wait_bindings(db, lambda rows: len(rows) == 1)
        assert row["identity"] == FAP_ID
        log = ss.log()
        check_chain_sent(log)
        got = REASSEMBLED.search(log)
        assert got, log
        # 4.4 KB in pieces of at most 576 - 20 - 8 - 4 octets of IKE message: 9 or more.
        assert int(got[2]) >= 9 and int(got[3]) > 4000
        assert ip_fragments_dropped(topo) == 0
