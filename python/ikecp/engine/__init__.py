"""The sans-IO IKEv2 engine: ``IkeSa`` plus one task module per concern.

Drive an SA only through ``receive_datagram``, ``datagrams_to_send``, ``next_timer``,
``handle_timer`` and ``next_event``; it never reads a clock or touches a socket::

    sa = IkeSa.initiator(settings, local=("100.64.0.2", 500), remote=("198.51.100.10", 500))
    for d in sa.datagrams_to_send(now):        # Datagram(data, local_port, remote, ...)
        sockets[d.local_port].sendto(d.wire(), d.remote)
    ...
    sa.receive_datagram(ike_message, source_addr, now, local_port=arrival_port)
    while (event := sa.next_event()) is not None:
        handle(event)                          # frozen dataclasses, ikecp.events

Who does what with UDP/4500: the I/O layer owns the non-ESP marker. It strips the marker
(``ikecp.framing.classify``) before ``receive_datagram`` and adds it on send when
``Datagram.encapsulated`` (``Datagram.wire()``); the engine says which local port to send
from (500, or the NAT-T port after the float) and follows the peer's address on every
authenticated request. Layout: ``sa.py`` (state, keys, addresses, timers), ``state.py``
(the state transition table), ``task_manager.py`` (message IDs, retransmission, reply cache,
the tasks of each exchange; tasks answer with a ``task.Status``), ``rules.py`` (payloads per
exchange), ``sa_init.py``, ``nat_detection.py``,
``auth.py``, ``auth_lifetime.py`` (RFC 4478), ``ike_config.py`` (CP via ``ikecp.cp``),
``child_create.py``, ``child_rekey.py``, ``ike_rekey.py`` (CREATE_CHILD_SA), ``child_sa.py``
(what an IKE SA keeps of each CHILD SA), ``delete.py``, ``liveness.py``,
``initial_contact.py`` (N(INITIAL_CONTACT) in IKE_AUTH), ``config_push.py`` (CFG_SET/CFG_ACK
in INFORMATIONAL); ``fragments.py`` (RFC 7383: SKF split and bounded reassembly);
``cert_auth.py`` plugs ``ikecp.pki`` into the ``Authenticator`` seam.
"""

from ..events import Event
from .auth import Authenticator, PskAuthenticator
from .fragments import FragmentPolicy
from .sa import Datagram, IkeSa, Role, State, Stats
from .settings import ChildLifetime, Identity, IkeLifetime, RetransmitPolicy, Settings, selector
from .transforms import ChildProposal, IkeProposal

__all__ = [
    "Authenticator",
    "ChildLifetime",
    "ChildProposal",
    "Datagram",
    "Event",
    "FragmentPolicy",
    "Identity",
    "IkeLifetime",
    "IkeProposal",
    "IkeSa",
    "PskAuthenticator",
    "RetransmitPolicy",
    "Role",
    "Settings",
    "State",
    "Stats",
    "selector",
]
