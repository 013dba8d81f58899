"""The userspace relay carrying a real IKEv2 exchange: strongSwan on both sides, relay in rtr.

The relay is the only path between the namespaces (rtr neither forwards nor translates), so
what the responder sees of the initiator is exactly the relay's mapping table, and a rebind
in the relay is a NAT rebinding for a real peer.
"""

from __future__ import annotations

import pytest
from ikecp.lab import netns, strongswan
from ikecp.net.relay import relay_in_thread
from ikecp.testing.facility import require

pytestmark = [pytest.mark.peer, pytest.mark.netns]


@pytest.mark.parametrize("mobike", [False, True], ids=["no-mobike", "mobike"])
def test_strongswan_through_relay_and_rebinding(mobike):
    require(netns.probe())
    require(strongswan.probe())
    fap_4500 = (netns.FAP_ADDR, 4500)
    routes = [((netns.RTR_INSIDE_ADDR, 500), (netns.SEGW_ADDR, 500)),
              ((netns.RTR_INSIDE_ADDR, 4500), (netns.SEGW_ADDR, 4500))]
    resp_cfg = strongswan.segw_responder(mobike=mobike)
    # The FAP talks to the relay's inside address, as to a port-forwarding home router.
    init_cfg = strongswan.fap_initiator(remote_addrs=netns.RTR_INSIDE_ADDR, mobike=mobike)
    with netns.nat_topology(kernel_nat=False) as topo, \
            relay_in_thread(routes, outside_host=netns.RTR_OUTSIDE_ADDR,
                            thread_setup=lambda: netns.enter(topo.rtr)) as relay, \
            strongswan.charon(resp_cfg, netns=topo.segw) as resp, \
            strongswan.charon(init_cfg, netns=topo.fap) as init:
        init.initiate("net")
        r, i = resp.wait_for_sa(), init.wait_for_sa()
        assert r.nat_remote and i.nat_local
        table = relay.mappings()
        # One outside port per inside source port: 500 for IKE_SA_INIT, 4500 after the float.
        assert set(table) == {(netns.FAP_ADDR, 500), fap_4500}
        assert table[(netns.FAP_ADDR, 500)] != table[fap_4500]
        assert (r.remote_host, r.remote_port) == table[fap_4500]

        new = relay.rebind(fap_4500)
        assert new != table[fap_4500]
        init.swanctl("--rekey", "--child", "net")  # an authenticated request from the new port
        resp.wait_for_log(rf"received packet: from {netns.RTR_OUTSIDE_ADDR}\[{new[1]}\]")
        r = resp.wait_for_sa()
        if mobike:
            # Seen with strongSwan 5.9.8: with MOBIKE negotiated it answers the new port but
            # keeps the old endpoint, waiting for the initiator's UPDATE_SA_ADDRESSES.
            assert (r.remote_host, r.remote_port) == table[fap_4500]
        else:
            # RFC 7296 §2.23: the responder follows the NAT to the new port.
            assert (r.remote_host, r.remote_port) == new
        c = relay.counters()
        assert c.rebinds == 1 and c.dropped == 0 and c.socket_errors == 0
        assert init.wait_for_sa().children  # the rekeyed CHILD_SA is there
