"""The SeGW's binding registry: who is behind which public address, with which inner IP.

One row per established IKE SA: peer identity, inner IP handed out by CP, the public
IP:port the IKE packets come from (after NAT), the IKE SPIs and CHILD_SA SPIs, and when the
peer was first and last seen. The gateway updates it from engine events (``PeerBinding``
arrives on establishment and again whenever an authenticated request comes from a new address,
i.e. a NAT rebinding) and removes rows on DELETE, failure or expiry.

Stored in SQLite (a file, in WAL mode, committed on every change) so another process — an
operator's policy function, ``ikecp bindings`` — can read it while the gateway runs. Every
change is also appended to the ``history`` table and, optionally, written as one JSON object
per line to an event stream, so a binding that goes away is never lost without a trace. The
line is flushed before the change commits: the stream never misses a committed change.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from .engine.events import PeerBinding

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    spi_r TEXT PRIMARY KEY,
    spi_i TEXT NOT NULL,
    identity TEXT NOT NULL,
    inner_ip TEXT,
    public_ip TEXT NOT NULL,
    public_port INTEGER NOT NULL,
    child_spis TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bindings_inner ON bindings (inner_ip);
CREATE INDEX IF NOT EXISTS bindings_identity ON bindings (identity);
CREATE INDEX IF NOT EXISTS bindings_public ON bindings (public_ip, public_port);
CREATE TABLE IF NOT EXISTS history (
    at REAL NOT NULL,
    event TEXT NOT NULL,
    reason TEXT,
    spi_r TEXT NOT NULL,
    identity TEXT NOT NULL,
    inner_ip TEXT,
    public_ip TEXT NOT NULL,
    public_port INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS esp_counters (
    spi_r TEXT PRIMARY KEY,
    counters TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS owner (
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""

#: A registry whose owner's heartbeat is older than this many seconds has no live SeGW.
STALE_AFTER = 15.0

_COLUMNS = ("spi_r", "spi_i", "identity", "inner_ip", "public_ip", "public_port",
            "child_spis", "first_seen", "last_seen")


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

    @property
    def public(self) -> str:
        host = f"[{self.public_ip}]" if ":" in self.public_ip else self.public_ip
        return f"{host}:{self.public_port}"

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["child_spis"] = list(self.child_spis)
        return d


def _row(r: sqlite3.Row | tuple) -> Binding:
    values = dict(zip(_COLUMNS, r, strict=True))
    spis = str(values["child_spis"])
    values["child_spis"] = tuple(spis.split(",")) if spis else ()
    return Binding(**values)  # type: ignore[arg-type]


class BindingRegistry:
    """The registry on an SQLite database at ``path`` (``":memory:"`` for none).

    ``stream`` receives one JSON line per change (``event`` is up, rebind, update or down).
    ``clock`` gives wall-clock time for first/last seen.
    """

    def __init__(self, path: str | Path = ":memory:", *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._stream = stream
        self._clock = clock

    @classmethod
    def reader(cls, path: str | Path) -> BindingRegistry:
        """Open an existing database read-only (for lookups while a gateway writes it)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"no binding database at {path}")
        self = cls.__new__(cls)
        self.path = str(path)
        self._db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True,
                                   isolation_level=None, check_same_thread=False)
        self._stream = None
        self._clock = time.time
        return self

    # --- changes (the gateway) ---------------------------------------------------------------

    def update(self, b: PeerBinding) -> str:
        """Record a ``PeerBinding`` event; returns "up" (new), "rebind" (public address
        changed) or "update" (same address, e.g. CHILD SPIs)."""
        now = self._clock()
        spi_r = b.spi_r.hex()
        old = self.get(spi_r)
        identity = str(b.peer_id)
        children = ",".join(s.hex() for s in b.child_spis)
        if old is None:
            kind = "up"
        elif (old.public_ip, old.public_port) != (b.public_address, b.public_port):
            kind = "rebind"
        else:
            kind = "update"
        first = now if old is None else old.first_seen
        with self._change():
            self._db.execute(
                "INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (spi_r, b.spi_i.hex(), identity, b.inner_address, b.public_address,
                 b.public_port, children, first, now))
            new = self.get(spi_r)
            assert new is not None
            self._record(kind, new, now, None if old is None else old.public)
        return kind

    def touch(self, spi_r: bytes) -> None:
        """The peer of ``spi_r`` sent an authenticated message: move ``last_seen``."""
        self._db.execute("UPDATE bindings SET last_seen = ? WHERE spi_r = ?",
                         (self._clock(), spi_r.hex()))

    def remove(self, spi_r: bytes | str, reason: str) -> Binding | None:
        """Drop a binding (DELETE, failure, shutdown); the history keeps it."""
        key = spi_r.hex() if isinstance(spi_r, bytes) else spi_r
        old = self.get(key)
        if old is None:
            return None
        with self._change():
            self._db.execute("DELETE FROM bindings WHERE spi_r = ?", (key,))
            self._db.execute("DELETE FROM esp_counters WHERE spi_r = ?", (key,))
            self._record("down", old, self._clock(), reason)
        return old

    def expire(self, idle: float) -> list[Binding]:
        """Remove bindings not seen for ``idle`` seconds."""
        cutoff = self._clock() - idle
        rows = [_row(r) for r in self._db.execute(
            f"SELECT {','.join(_COLUMNS)} FROM bindings WHERE last_seen < ?", (cutoff,))]
        for b in rows:
            self.remove(b.spi_r, "expired")
        return rows

    @contextlib.contextmanager
    def _change(self) -> Iterator[None]:
        """One transaction per change: the row and its history commit together, and the
        event line (``_record``) is flushed before the commit, so a crash in between leaves
        at worst an event the database lacks, never a committed change without its event."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _record(self, event: str, b: Binding, now: float, reason: str | None) -> None:
        self._db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (now, event, reason, b.spi_r, b.identity, b.inner_ip, b.public_ip,
                          b.public_port))
        if self._stream is not None:
            line = {"at": now, "event": event, **b.to_json()}
            if reason is not None:
                line["reason" if event == "down" else "previous"] = reason
            self._stream.write(json.dumps(line) + "\n")
            self._stream.flush()

    # --- ownership (the gateway) -------------------------------------------------------------

    def claim(self, pid: int) -> None:
        """A SeGW (process ``pid``) now owns the rows; readers see it in ``owner``."""
        now = self._clock()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("DELETE FROM owner")
        self._db.execute("INSERT INTO owner VALUES (?, ?, ?)", (pid, now, now))
        self._db.execute("COMMIT")

    def heartbeat(self) -> None:
        self._db.execute("UPDATE owner SET heartbeat = ?", (self._clock(),))

    def release(self) -> None:
        """Clean shutdown: no SeGW owns the (now empty) table any more."""
        self._db.execute("DELETE FROM owner")

    def live(self) -> bool:
        """Whether a SeGW owns the rows: its lock is held (where the platform can tell) and
        its heartbeat is recent. False after a crash, until the next start closes the rows."""
        from .instance_lock import is_held, lock_path

        lock = lock_path(self.path)
        held = is_held(lock) if lock is not None else None
        if held is False:
            return False
        try:
            row = self._db.execute("SELECT heartbeat FROM owner").fetchone()
        except sqlite3.OperationalError:  # written by a version without the owner table
            return bool(held)
        return row is not None and self._clock() - float(row[0]) < STALE_AFTER

    # --- lookups -----------------------------------------------------------------------------

    def _select(self, where: str = "", args: tuple = ()) -> list[Binding]:
        sql = f"SELECT {','.join(_COLUMNS)} FROM bindings {where} ORDER BY first_seen, spi_r"
        return [_row(r) for r in self._db.execute(sql, args)]

    def get(self, spi_r: str) -> Binding | None:
        rows = self._select("WHERE spi_r = ?", (spi_r,))
        return rows[0] if rows else None

    def all(self) -> list[Binding]:
        return self._select()

    def by_inner_ip(self, ip: str) -> list[Binding]:
        return self._select("WHERE inner_ip = ?", (ip,))

    def by_identity(self, identity: str) -> list[Binding]:
        return self._select("WHERE identity = ?", (identity,))

    def by_public(self, ip: str, port: int | None = None) -> list[Binding]:
        if port is None:
            return self._select("WHERE public_ip = ?", (ip,))
        return self._select("WHERE public_ip = ? AND public_port = ?", (ip, port))

    def set_counters(self, spi_r: bytes, counters: dict[str, object]) -> None:
        """The data plane's counters of the binding's CHILD SAs (packets, bytes, drops)."""
        self._db.execute("INSERT OR REPLACE INTO esp_counters VALUES (?, ?, ?)",
                         (spi_r.hex(), json.dumps(counters, sort_keys=True), self._clock()))

    def counters(self, spi_r: str) -> dict[str, object] | None:
        """The last counters written for the binding ``spi_r`` (hex), or None."""
        try:
            row = self._db.execute("SELECT counters FROM esp_counters WHERE spi_r = ?",
                                   (spi_r,)).fetchone()
        except sqlite3.OperationalError:  # a database written before the data plane existed
            return None
        return json.loads(row[0]) if row else None

    def history(self) -> list[tuple[float, str, str | None, str, str, str | None, str, int]]:
        return list(self._db.execute("SELECT * FROM history ORDER BY rowid"))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM bindings").fetchone()[0])

    def close(self) -> None:
        self._db.close()
