"""The shape every task shares and the status it answers with.

A task owns one concern of an exchange (strongSwan libcharon's task model): the initiator
calls ``build_i`` then ``process_i`` on the response; the responder calls ``process_r`` on the
request then ``build_r``. All tasks of an exchange process before any builds, so a later
task may rely on an earlier one's verdict (config only after auth succeeded). Received
messages reach tasks as a ``MessageView`` (payloads indexed by class).

``process_i`` / ``process_r`` / ``resume_r`` return a ``Status`` so the task manager never
has to guess from exceptions or attributes what a task wants. A protocol error the peer must
hear about is still a ``RemoteProtocolError`` (it carries the notify type to answer with).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..message import Payload
    from .sa import IkeSa
    from .view import MessageView


class Status(enum.Enum):
    #: This task's part of the exchange is complete.
    DONE = "done"
    #: Initiator: send the same exchange again, rebuilt (COOKIE, INVALID_KE_PAYLOAD).
    #: Responder: the answer waits for values that arrive later (``resume_r``).
    NEED_MORE = "need more"
    #: Initiator: the response is unacceptable (``reason`` says why). For the unauthenticated
    #: IKE_SA_INIT it is dropped and we keep waiting (§2.4); otherwise the exchange fails.
    FAILED = "failed"


DONE, NEED_MORE, FAILED = Status.DONE, Status.NEED_MORE, Status.FAILED


class Task:
    """Default behaviour: nothing to send, nothing to check. Subclasses override what their
    concern needs."""

    __slots__ = ("reason",)

    def build_i(self, sa: IkeSa, out: list[Payload]) -> None:
        return None

    def process_i(self, sa: IkeSa, msg: MessageView) -> Status:
        return DONE

    def process_r(self, sa: IkeSa, msg: MessageView) -> Status:
        return DONE

    def resume_r(self, sa: IkeSa) -> Status:
        """Called while parked after ``process_r`` said NEED_MORE: NEED_MORE keeps waiting."""
        return DONE

    def build_r(self, sa: IkeSa, out: list[Payload]) -> None:
        return None

    def fail(self, reason: str) -> Status:
        self.reason = reason
        return FAILED
