"""The shape every task shares, and the two signals a task may raise besides
``RemoteProtocolError``.

A task owns one concern of an exchange (strongSwan libcharon's task model): the initiator
calls ``build_i`` then ``process_i`` on the response; the responder calls ``process_r`` on the
request then ``build_r``. All tasks of an exchange process before any builds, so a later
task may rely on an earlier one's verdict (config only after auth succeeded). Received
messages reach tasks as a ``MessageView`` (payloads indexed by class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..message import Payload
    from .sa import IkeSa
    from .view import MessageView


class Task(Protocol):
    def build_i(self, sa: IkeSa, out: list[Payload]) -> None: ...
    def process_i(self, sa: IkeSa, msg: MessageView) -> None: ...
    def process_r(self, sa: IkeSa, msg: MessageView) -> None: ...
    def build_r(self, sa: IkeSa, out: list[Payload]) -> None: ...


class Retry(Exception):  # noqa: N818 - control flow, not an error
    """The response asks for the same request again with changes (COOKIE, INVALID_KE)."""


class Ignore(Exception):  # noqa: N818 - control flow, not an error
    """An unauthenticated response is not acceptable: drop it and keep waiting (§2.4)."""
