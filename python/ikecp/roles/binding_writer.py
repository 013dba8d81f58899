"""One writer for the binding registry: changes grouped per event-loop turn.

A SeGW process records what happens to its SAs through a ``BindingFront``. The front keeps
the process's own rows in memory, so every answer the gateway needs at once (was this a NAT
rebinding, which rows expired, what did a DELETE remove) costs no database round trip, and
queues each change as an op. Once per loop turn the queue goes to a sink in one piece:

- a single-process SeGW applies it to its store in one transaction (``apply``), instead of
  one transaction per event;
- a worker of a multi-process SeGW (``ikecp.roles.workers``) sends it to the supervisor, the
  store's only writer, which applies what all workers sent in one transaction.

The store (SQLite or PostgreSQL) stays the record that ``ikecp bindings``, the history and the
event stream show; a crash loses at most the changes of the loop turn that was running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..events import PeerBinding
from .store import Binding, BindingStore, RowLookups, change_kind

log = logging.getLogger("ikecp.bindings")

#: One change: ("update", PeerBinding) | ("rekey", old SPIr, PeerBinding) |
#: ("touch", SPIr) | ("remove", SPIr hex, reason) | ("counters", SPIr, counters).
Op = tuple[Any, ...]
Sink = Callable[[list[Op]], None]


def apply(store: BindingStore, ops: Iterable[Op]) -> None:
    """Write ``ops`` to ``store`` in order, in one transaction."""
    with store.batch():
        for op in ops:
            kind = op[0]
            if kind == "update":
                store.update(op[1])
            elif kind == "rekey":
                if not store.rekey(op[1], op[2]):
                    store.update(op[2])
            elif kind == "touch":
                store.touch(op[1])
            elif kind == "remove":
                store.remove(op[1], op[2])
            elif kind == "counters":
                store.set_counters(op[1], op[2])
            else:
                raise ValueError(f"unknown binding op {kind!r}")


def _row(b: PeerBinding, first: float, now: float, instance: str) -> Binding:
    return Binding(b.spi_r.hex(), b.spi_i.hex(), str(b.peer_id), b.inner_address,
                   b.public_address, b.public_port, tuple(s.hex() for s in b.child_spis),
                   first, now, instance)


class BindingFront(RowLookups):
    """What the gateway calls instead of the store: the same change and lookup methods,
    answered from this process's rows in memory, each change queued for ``sink``.

    ``store``: the store to write to (single process); its rows of this instance are loaded
    at once, and ``sink`` defaults to ``apply`` on it. Without a store (a worker), ``sink``
    is required and claiming, heartbeats and locks are the sink's owner's business.
    """

    def __init__(self, store: BindingStore | None = None, *, sink: Sink | None = None,
                 instance: str = "", clock: Callable[[], float] = time.time) -> None:
        if sink is None:
            if store is None:
                raise ValueError("a BindingFront needs a store or a sink")
            sink = self._write
        self.store = store
        self.instance = store.instance if store is not None and store.instance else instance
        self._sink = sink
        self._clock = clock
        self._rows: dict[str, Binding] = {}
        if store is not None:
            self._rows = {b.spi_r: b for b in store.all()}
        self._ops: list[Op] = []
        self._scheduled = False
        self.batches = 0  # flushes that wrote something (tests and metrics read it)

    # --- the queue ---------------------------------------------------------------------------

    def _queue(self, op: Op) -> None:
        self._ops.append(op)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing to group with
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand the queued changes to the sink now (normally once per loop turn)."""
        self._scheduled = False
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        self.batches += 1
        self._sink(ops)

    def _write(self, ops: list[Op]) -> None:
        assert self.store is not None
        try:
            apply(self.store, ops)
        except Exception:
            log.exception("binding registry: %d changes not written", len(ops))

    # --- changes -----------------------------------------------------------------------------

    def update(self, b: PeerBinding) -> str:
        """As ``BindingStore.update``: "up", "rebind" or "update"."""
        now = self._clock()
        key = b.spi_r.hex()
        old = self._rows.get(key)
        kind = change_kind(old, b)
        self._rows[key] = _row(b, now if old is None else old.first_seen, now, self.instance)
        self._queue(("update", b))
        return kind

    def rekey(self, old_spi_r: bytes, b: PeerBinding) -> bool:
        old = self._rows.pop(old_spi_r.hex(), None)
        if old is None:
            return False
        self._rows[b.spi_r.hex()] = _row(b, old.first_seen, self._clock(), self.instance)
        self._queue(("rekey", old_spi_r, b))
        return True

    def touch(self, spi_r: bytes) -> None:
        key = spi_r.hex()
        old = self._rows.get(key)
        if old is not None:
            self._rows[key] = dataclasses.replace(old, last_seen=self._clock())
            self._queue(("touch", spi_r))

    def remove(self, spi_r: bytes | str, reason: str) -> Binding | None:
        key = spi_r.hex() if isinstance(spi_r, bytes) else spi_r
        old = self._rows.pop(key, None)
        if old is not None:
            self._queue(("remove", key, reason))
        return old

    def expire(self, idle: float) -> list[Binding]:
        cutoff = self._clock() - idle
        gone = [b for b in self._rows.values() if b.last_seen < cutoff]
        for b in gone:
            self.remove(b.spi_r, "expired")
        return gone

    def set_counters(self, spi_r: bytes, counters: dict[str, object]) -> None:
        self._queue(("counters", spi_r, counters))

    # --- ownership: the store's, when this process writes it ---------------------------------

    def lock_file(self) -> str | None:
        return self.store.lock_file() if self.store is not None else None

    def claim(self, pid: int) -> None:
        if self.store is not None:
            self.flush()
            self.store.claim(pid)

    def heartbeat(self) -> None:
        if self.store is not None:
            self.store.heartbeat()

    def release(self) -> None:
        self.flush()
        if self.store is not None:
            self.store.release()

    def close(self) -> None:
        self.flush()
        if self.store is not None:
            self.store.close()

    # --- lookups: this process's rows ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def __getattr__(self, name: str) -> Any:
        """Anything else (history, counters, live, follow, location) is the store's, read
        after the queue is written."""
        store = self.__dict__.get("store")
        if store is None or name.startswith("_"):
            raise AttributeError(name)
        self.flush()
        return getattr(store, name)
