"""``ChildSa``: what an IKE SA remembers of each of its CHILD SAs (no keys: those went to
the data plane in ``ChildSaEstablished``), and the lifecycle states a rekey moves it through."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..message import TrafficSelector
    from .transforms import Suite


class ChildState(enum.Enum):
    INSTALLED = "installed"
    REKEYING = "rekeying"    # our CREATE_CHILD_SA rekeying it is outstanding
    REKEYED = "rekeyed"      # replaced; waits for its DELETE (ours or the peer's)
    DELETING = "deleting"    # our DELETE for it is outstanding


@dataclass(slots=True)
class ChildSa:
    spi_in: bytes
    spi_out: bytes
    suite: Suite
    #: Our side's and the peer's traffic selectors (whoever initiated its creation).
    ts_local: tuple[TrafficSelector, ...]
    ts_remote: tuple[TrafficSelector, ...]
    state: ChildState = ChildState.INSTALLED
    #: When to start a rekey, and when to delete the SA if none succeeded (None: never).
    rekey_at: float | None = None
    expire_at: float | None = None

    @property
    def spis(self) -> tuple[bytes, bytes]:
        return self.spi_in, self.spi_out
