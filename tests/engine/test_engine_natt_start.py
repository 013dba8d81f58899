"""IKE_SA_INIT on the NAT-T port (RFC 7296 §2.23: an initiator may use 4500 from the start;
RFC 3948 §2.2: every IKE message there carries the non-ESP marker).

Interop finding: strongSwan, reauthenticating after its IKE rekey was refused, starts the new
IKE_SA on 4500. The responder answered IKE_SA_INIT and IKE_AUTH without the marker, so the
peer took them for ESP and the new SA hung until a retransmission happened to get the cached
reply with the marker.
"""

from __future__ import annotations

import pytest
from engine_pair import INITIATOR_ADDR, RESPONDER_ADDR, Pair, fap_settings, segw_settings
from ikecp.const import NON_ESP_MARKER
from ikecp.engine import IkeSa

NATT = 4500


@pytest.mark.parametrize("nat", [True, False])
def test_every_message_on_the_natt_port_carries_the_marker(backend, nat) -> None:
    pair = Pair(backend, fap_settings(), segw_settings(), nat=nat,
                i_addr=(INITIATOR_ADDR[0], NATT), r_addr=(RESPONDER_ADDR[0], NATT)).run()
    assert pair.i.established and pair.r.established
    assert pair.log
    for f in pair.log:
        assert f.datagram.local_port == NATT
        assert f.datagram.remote[1] == NATT or (nat and not f.to_responder)
        assert f.datagram.encapsulated and f.wire.startswith(NON_ESP_MARKER)


def test_responder_made_for_port_500_answers_on_the_port_the_request_came_to(backend) -> None:
    fap = IkeSa.initiator(fap_settings(), (INITIATOR_ADDR[0], NATT), (RESPONDER_ADDR[0], NATT),
                          backend=backend)
    (request,) = fap.datagrams_to_send(0.0)
    assert request.encapsulated
    segw = IkeSa.responder(segw_settings(), RESPONDER_ADDR, backend=backend)
    segw.receive_datagram(request.data, (INITIATOR_ADDR[0], NATT), 0.0, local_port=NATT)
    (reply,) = segw.datagrams_to_send(0.0)
    assert reply.local_port == NATT and reply.encapsulated
