"""What a SeGW needs of its binding store, and the store it uses when given none.

``BindingStore`` is the Protocol a ``Gateway`` (or anything else that keeps the binding
table: a multi-process supervisor) writes to: the SQLite ``BindingRegistry`` and the
PostgreSQL ``PgBindingStore`` (``ikecp.roles.bindings``) satisfy it, and so does
``MemoryBindingStore`` here, the default of a ``Gateway`` built in code: a dict, no file,
gone with the process. An application may pass any object with these methods (its own
database, a message bus).

One row (``Binding``) per established IKE SA, keyed by our SPIr as hex text. ``update``
says what a ``PeerBinding`` event changed: "up" (new row), "rebind" (the public address
moved) or "update" (same address, e.g. new CHILD SPIs). Every change can also go to an
event stream as one JSON object per line (``change_line``), the same lines for every store.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Protocol, TextIO, runtime_checkable

from ..events import PeerBinding


@dataclass(frozen=True, slots=True)
class Binding:
    """One row. SPIs are hex text; times are Unix seconds."""

    spi_r: str
    spi_i: str
    identity: str
    inner_ip: str | None
    public_ip: str
    public_port: int
    child_spis: tuple[str, ...]
    first_seen: float
    last_seen: float
    instance: str = ""

    @property
    def public(self) -> str:
        host = f"[{self.public_ip}]" if ":" in self.public_ip else self.public_ip
        return f"{host}:{self.public_port}"

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["child_spis"] = list(self.child_spis)
        return d


def change_line(event: str, b: Binding, now: float, reason: str | None) -> str:
    """The event stream's line for one change: ``reason`` is why a row went "down", or the
    previous public address (rebind) or SPIr (rekey)."""
    line = {"at": now, "event": event, **b.to_json()}
    if reason is not None:
        line["reason" if event == "down" else "previous"] = reason
    return json.dumps(line) + "\n"


def change_kind(old: Binding | None, b: PeerBinding) -> str:
    """What a ``PeerBinding`` does to the row ``old``: "up" (new), "rebind" (public address
    changed) or "update" (same address, e.g. CHILD SPIs)."""
    if old is None:
        return "up"
    if (old.public_ip, old.public_port) != (b.public_address, b.public_port):
        return "rebind"
    return "update"


def updated_row(old: Binding | None, b: PeerBinding, now: float, instance: str
                ) -> tuple[str, Binding]:
    """``change_kind`` and the row ``b`` makes of ``old`` (None: there is none)."""
    row = Binding(b.spi_r.hex(), b.spi_i.hex(), str(b.peer_id), b.inner_address,
                  b.public_address, b.public_port, tuple(s.hex() for s in b.child_spis),
                  now if old is None else old.first_seen, now, instance)
    return change_kind(old, b), row


@runtime_checkable
class BindingStore(Protocol):
    """The binding table as a SeGW writes it. Changes name the row by our SPIr."""

    @property
    def instance(self) -> str | None:
        """The SeGW instance whose rows these are (None: a reader of every instance)."""

    def update(self, b: PeerBinding) -> str:
        """Record a ``PeerBinding`` event: "up", "rebind" or "update"."""

    def rekey(self, old_spi_r: bytes, b: PeerBinding) -> bool:
        """The IKE SA of ``old_spi_r`` was rekeyed: the row carries the new SPIs. False if
        there was no such row."""

    def touch(self, spi_r: bytes) -> None:
        """The peer sent something authenticated: move ``last_seen``."""

    def remove(self, spi_r: bytes | str, reason: str) -> Binding | None:
        """Drop a row (DELETE, failure, shutdown); returns it, or None if there was none."""

    def expire(self, idle: float) -> list[Binding]:
        """Remove and return the rows not seen for ``idle`` seconds."""

    def get(self, spi_r: str) -> Binding | None: ...

    def all(self) -> list[Binding]: ...

    def set_counters(self, spi_r: bytes, counters: dict[str, object]) -> None:
        """The data plane's counters of the row's CHILD SAs."""

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """``with store.batch():`` makes the changes inside one transaction."""

    def lock_file(self) -> str | None:
        """A file the SeGW locks to be the only writer of its rows (None: no file)."""

    def claim(self, pid: int) -> None:
        """A SeGW (process ``pid``) now owns the rows."""

    def heartbeat(self) -> None: ...

    def release(self) -> None:
        """Clean shutdown: nobody owns the (now empty) rows."""

    def close(self) -> None: ...

    def __len__(self) -> int: ...


class RowLookups:
    """The read side of a store whose rows live in this process (``_rows``, keyed by SPIr
    hex): the in-memory store and the SeGW's ``BindingFront`` answer lookups the same way."""

    _rows: dict[str, Binding]

    def get(self, spi_r: str) -> Binding | None:
        return self._rows.get(spi_r)

    def all(self) -> list[Binding]:
        return sorted(self._rows.values(), key=lambda b: (b.first_seen, b.spi_r))

    def by_identity(self, identity: str) -> list[Binding]:
        return [b for b in self.all() if b.identity == identity]

    def by_inner_ip(self, ip: str) -> list[Binding]:
        return [b for b in self.all() if b.inner_ip == ip]

    def by_public(self, ip: str, port: int | None = None) -> list[Binding]:
        return [b for b in self.all()
                if b.public_ip == ip and (port is None or b.public_port == port)]


class MemoryBindingStore(RowLookups):
    """A ``BindingStore`` in a dict: nothing written anywhere unless ``stream`` is given.
    ``history`` has the SQL stores' tuples: (at, event, reason, spi_r, identity, inner_ip,
    public_ip, public_port, instance)."""

    def __init__(self, *, instance: str = "", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self._rows: dict[str, Binding] = {}
        self._counters: dict[str, dict[str, object]] = {}
        self._history: list[tuple[float, str, str | None, str, str, str | None, str, int,
                                  str]] = []
        self._stream = stream
        self._clock = clock
        self.owner: int | None = None

    def _record(self, event: str, b: Binding, reason: str | None) -> None:
        now = self._clock()
        self._history.append((now, event, reason, b.spi_r, b.identity, b.inner_ip,
                              b.public_ip, b.public_port, b.instance))
        if self._stream is not None:
            self._stream.write(change_line(event, b, now, reason))
            self._stream.flush()

    def update(self, b: PeerBinding) -> str:
        old = self._rows.get(b.spi_r.hex())
        kind, new = updated_row(old, b, self._clock(), self.instance)
        self._rows[new.spi_r] = new
        self._record(kind, new, None if old is None else old.public)
        return kind

    def rekey(self, old_spi_r: bytes, b: PeerBinding) -> bool:
        old = self._rows.pop(old_spi_r.hex(), None)
        if old is None:
            return False
        new = replace(old, spi_r=b.spi_r.hex(), spi_i=b.spi_i.hex(),
                      child_spis=tuple(s.hex() for s in b.child_spis),
                      public_ip=b.public_address, public_port=b.public_port,
                      last_seen=self._clock())
        self._rows[new.spi_r] = new
        self._record("rekey", new, old.spi_r)
        return True

    def touch(self, spi_r: bytes) -> None:
        key = spi_r.hex()
        old = self._rows.get(key)
        if old is not None:
            self._rows[key] = replace(old, last_seen=self._clock())

    def remove(self, spi_r: bytes | str, reason: str) -> Binding | None:
        key = spi_r.hex() if isinstance(spi_r, bytes) else spi_r
        old = self._rows.pop(key, None)
        self._counters.pop(key, None)
        if old is not None:
            self._record("down", old, reason)
        return old

    def expire(self, idle: float) -> list[Binding]:
        cutoff = self._clock() - idle
        gone = [b for b in self._rows.values() if b.last_seen < cutoff]
        for b in gone:
            self.remove(b.spi_r, "expired")
        return gone

    def set_counters(self, spi_r: bytes, counters: dict[str, object]) -> None:
        self._counters[spi_r.hex()] = dict(counters)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # a dict has no transactions

    def counters(self, spi_r: str) -> dict[str, object] | None:
        return self._counters.get(spi_r)

    def history(self) -> list[tuple[float, str, str | None, str, str, str | None, str, int,
                                    str]]:
        return list(self._history)

    def lock_file(self) -> str | None:
        return None

    def claim(self, pid: int) -> None:
        self.owner = pid

    def heartbeat(self) -> None:
        pass

    def release(self) -> None:
        self.owner = None

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._rows)
