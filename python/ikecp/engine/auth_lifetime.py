"""AUTH_LIFETIME (RFC 4478) in IKE_AUTH: a responder configured to want reauthentication
tells the original initiator when to do it (only an initiator can start a new IKE SA through
its NAT); an initiator reauthenticates ``over_time`` before that and closes the SA at it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..const import NotifyType
from ..message import Notify, Payload
from .state import Role
from .task import DONE, Status, Task

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView


class AuthLifetimeTask(Task):
    __slots__ = ()

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        for n in msg.notifies(NotifyType.AUTH_LIFETIME):
            if len(n.data) == 4:
                sa.set_auth_lifetime(int.from_bytes(n.data, "big"))
                break
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        reauth = sa.settings.ike_lifetime.reauth_time
        if reauth and sa.role is Role.RESPONDER and sa.established:
            out.append(Notify(0, NotifyType.AUTH_LIFETIME, data=int(reauth).to_bytes(4, "big")))
