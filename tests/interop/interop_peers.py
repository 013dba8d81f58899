"""Shared pieces of the interop tests: topology + strongSwan + ikecp on real UDP sockets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ikecp.const import ConfigAttr
from ikecp.cp import CpRegistry, NatInfoHandler, RequestHandler
from ikecp.engine import ChildProposal, Identity, IkeProposal, PskAuthenticator, Settings
from ikecp.engine.settings import RetransmitPolicy
from ikecp.lab import netns, strongswan
from ikecp.lab.responder import UdpIkeLoop, bind_sockets
from ikecp.testing.facility import require

PSK = "ikecp-interop-psk-0123456789abcdef"
FAP_ID = "fap.interop.test"
SEGW_ID = "segw.interop.test"
SS_POOL = "100.64.128.0/24"
IKECP_POOL = "100.65.0.0/24"
#: Short retransmission so a lost packet costs seconds, not minutes.
FAST_RETRANSMIT = RetransmitPolicy(timeout=0.5, backoff=2.0, tries=3)


def require_peers() -> None:
    require(netns.probe())
    require(strongswan.probe())


def fap_registry() -> CpRegistry:
    """The femtocell's CP: a virtual IPv4 address and the NAT-info attribute (type 23)."""
    return (CpRegistry()
            .add_handler(RequestHandler(ConfigAttr.INTERNAL_IP4_ADDRESS))
            .add_handler(NatInfoHandler()))


def fap_settings(proposal: str, esp: str, **kw: object) -> Settings:
    kw.setdefault("auth", PskAuthenticator(PSK.encode()))
    return Settings(
        local_id=Identity.fqdn(FAP_ID), remote_id=Identity.fqdn(SEGW_ID),
        ike_proposals=(IkeProposal.parse(proposal),),
        child_proposals=(ChildProposal.parse(esp),),
        cp=fap_registry(), retransmit=FAST_RETRANSMIT, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def ikecp_loop(topo: netns.NatTopology, role: str, ip: str, *,
               responder: Settings | None = None) -> Iterator[UdpIkeLoop]:
    """ikecp on UDP 500/4500 inside ``role``'s namespace, for the duration of the block."""
    socks = bind_sockets(ip, factory=lambda: topo.socket(role))
    loop = UdpIkeLoop(socks, ip, responder=responder)
    with loop:
        yield loop
