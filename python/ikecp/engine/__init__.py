"""The sans-IO IKEv2 engine: ``IkeSa`` plus one task module per concern.

Drive an SA only through ``receive_datagram``, ``datagrams_to_send``, ``next_timer``,
``handle_timer`` and ``next_event``. The I/O layer owns sockets, the clock and the non-ESP
marker (see ``Datagram``).
"""

from .auth import Authenticator, PskAuthenticator
from .events import Event
from .sa import Datagram, IkeSa, Role, State, Stats
from .settings import Identity, RetransmitPolicy, Settings, selector
from .transforms import ChildProposal, IkeProposal

__all__ = [
    "Authenticator",
    "ChildProposal",
    "Datagram",
    "Event",
    "Identity",
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
