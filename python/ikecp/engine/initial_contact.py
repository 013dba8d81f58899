"""N(INITIAL_CONTACT) in IKE_AUTH (RFC 7296 §2.4).

The initiator sends it when ``Settings.initial_contact`` says this is its first IKE SA since
it started (a rebooted FAP): every older IKE SA the responder holds for the same identity is
dead. The responder reports it only once the peer has authenticated, so a claimed identity
alone can never make a gateway tear down someone else's SAs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import NotifyType
from ..events import InitialContact
from ..message import Notify, Payload
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class InitialContactTask(Task):
    __slots__ = ("received",)

    def __init__(self) -> None:
        self.received = False

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        if sa.settings.initial_contact:
            out.append(Notify(0, NotifyType.INITIAL_CONTACT))

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        self.received = bool(msg.notifies(NotifyType.INITIAL_CONTACT))
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        # Runs after AuthTask.build_r: the SA is established only if the peer proved its id.
        if self.received and sa.established and sa.peer_id is not None:
            sa.emit(InitialContact(sa.peer_id))
