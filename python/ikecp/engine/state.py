"""The states of an IKE SA and every transition between them, in one table."""

from __future__ import annotations

import enum

from ..errors import LocalProtocolError


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class State(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash runs Python code

    IDLE = "idle"                # responder waiting for IKE_SA_INIT
    INIT = "init"                # IKE_SA_INIT in progress (initiator)
    AUTH = "auth"                # keys derived, IKE_AUTH in progress
    ESTABLISHED = "established"
    CLOSED = "closed"


class Trigger(enum.Enum):
    __hash__ = object.__hash__

    START = "start"                    # an initiator sends IKE_SA_INIT
    INIT_ANSWERED = "init answered"    # a responder sent its IKE_SA_INIT response
    INIT_DONE = "init done"            # an initiator processed the IKE_SA_INIT response
    AUTHENTICATED = "authenticated"    # IKE_AUTH proved the peer, either role


#: (state, what happened) -> next state. ``close()`` leads from any state to CLOSED.
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.IDLE, Trigger.START): State.INIT,
    (State.IDLE, Trigger.INIT_ANSWERED): State.AUTH,
    (State.INIT, Trigger.INIT_DONE): State.AUTH,
    (State.AUTH, Trigger.AUTHENTICATED): State.ESTABLISHED,
}


def next_state(state: State, trigger: Trigger) -> State:
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise LocalProtocolError(f"{trigger.value} is not possible in state "
                                 f"{state.value}") from None
