"""After a SeGW restart its FAPs' SAs are gone: the SeGW answers their next request with an
unprotected INVALID_IKE_SPI (RFC 7296 §2.21.4), and the FAP takes it as the hint the RFC
describes: it changes no state itself, but retransmits its request at once instead of after
its backoff, so the SA is found dead after its usual number of tries within seconds, and a
forged hint cannot hurt a live SA."""

from __future__ import annotations

from ikecp.engine import RetransmitPolicy
from ikecp.events import SaFailed
from ikecp.message import Message, Notify
from ikecp.roles.dispatch import Dispatcher
from test_dispatch import FAP_IP, SEGW_IP, Wire, pair, segw_settings

POLICY = RetransmitPolicy(timeout=1.0, backoff=2.0, tries=5)  # 63 s of backoff in all


def test_fap_finds_its_sa_dead_within_seconds_after_a_segw_restart(backend) -> None:
    wire, sas = pair(1, fap_kw={"retransmit": POLICY})
    sa = sas[0]
    assert sa.established
    # The SeGW restarts: a new dispatcher that knows no SA.
    restarted = Dispatcher(segw_settings(), SEGW_IP)
    wire = Wire(wire.fap, restarted)
    wire.now = 100.0
    wire.fap.events()
    sa.check_liveness()
    wire.fap.update(sa, wire.now)
    wire.pump()
    wire.advance(4.0)
    assert sa.closed, "still waiting for the retransmission backoff"
    failed = [e for _, e in wire.fap.events() if isinstance(e, SaFailed)]
    assert len(failed) == 1 and "retransmission limit" in failed[0].reason
    assert restarted.stats.invalid_spi_sent == POLICY.tries + 1


def test_forged_invalid_spi_does_not_hurt_a_live_sa(backend) -> None:
    wire, sas = pair(1, fap_kw={"retransmit": POLICY})
    sa = sas[0]
    sa.check_liveness()
    wire.fap.update(sa, wire.now)
    (request,) = wire.fap.datagrams_to_send()
    # A forger who saw the request answers first; the real answer follows.
    msg = backend.decode_message(request.data)
    forged = Message(msg.spi_i, msg.spi_r, msg.exchange, 0x20, msg.message_id,
                     (Notify(0, 4),))
    for _ in range(10):
        wire.fap.receive(backend.encode_message(forged), 500, (SEGW_IP, 500), wire.now)
    assert sa.established
    wire.segw.receive(request.wire(), 500, (FAP_IP, request.local_port), wire.now)
    wire.pump()
    wire.advance(120.0)
    assert sa.established
