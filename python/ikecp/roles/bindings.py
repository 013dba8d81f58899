"""The SeGW's binding registry: who is behind which public address, with which inner IP.

One row per established IKE SA: peer identity, inner IP handed out by CP, the public
IP:port the IKE packets come from (after NAT), the IKE SPIs and CHILD_SA SPIs, when the
peer was first and last seen, and the SeGW instance that holds the SA. The gateway updates
it from engine events (``PeerBinding`` arrives on establishment and again whenever an
authenticated request comes from a new address, i.e. a NAT rebinding) and removes rows on
DELETE, failure or expiry.

``SqlBindingStore`` is the SQL shared by two implementations of the ``BindingStore``
Protocol (``ikecp.roles.store``, where the in-memory store of a SeGW built in code lives) on
the same schema: ``BindingRegistry`` on SQLite (a file in WAL mode, the ``ikecp segw``
default: another process — ``ikecp bindings``, an operator's policy function — reads it while
the gateway runs) and ``ikecp.roles.bindings_pg.PgBindingStore`` on PostgreSQL, shared by
several SeGW instances at once. Every change is also appended to the ``history`` table,
published on the change feed (``follow``), and optionally written as one JSON object per line
to an event stream, so a binding that goes away is never lost without a trace.
``open_store`` picks the implementation from the location (``postgresql://...`` or a file
path).

A store opened for an instance (the gateway's) reads and writes that instance's rows only,
so a SeGW closes only its own rows at startup; a store opened without one (``reader``) sees
every instance. Each change commits in one transaction with its history row (``batch``
groups many changes into one: the gateway writes one per loop turn), and its event line is
flushed before that commit: the stream never misses a committed change.

A SeGW owns its instance's rows while it runs: ``claim`` at start, ``heartbeat`` every few
seconds, ``release`` on a clean shutdown (the ``owner`` table, one row per instance), so a
reader can tell live rows from rows a crash left (``live``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ..events import PeerBinding
from .store import Binding, change_line, updated_row

#: The schema of both implementations; ``{real}`` and ``{serial}`` are the dialect's types.
SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (
    instance TEXT NOT NULL,
    spi_r TEXT NOT NULL,
    spi_i TEXT NOT NULL,
    identity TEXT NOT NULL,
    inner_ip TEXT,
    public_ip TEXT NOT NULL,
    public_port INTEGER NOT NULL,
    child_spis TEXT NOT NULL,
    first_seen {real} NOT NULL,
    last_seen {real} NOT NULL,
    PRIMARY KEY (instance, spi_r)
);
CREATE INDEX IF NOT EXISTS bindings_inner ON bindings (inner_ip);
CREATE INDEX IF NOT EXISTS bindings_identity ON bindings (identity);
CREATE INDEX IF NOT EXISTS bindings_public ON bindings (public_ip, public_port);
-- expire() runs every sweep: a range scan, not a pass over every row held
CREATE INDEX IF NOT EXISTS bindings_seen ON bindings (instance, last_seen);
CREATE TABLE IF NOT EXISTS history (
    id {serial},
    at {real} NOT NULL,
    event TEXT NOT NULL,
    reason TEXT,
    spi_r TEXT NOT NULL,
    identity TEXT NOT NULL,
    inner_ip TEXT,
    public_ip TEXT NOT NULL,
    public_port INTEGER NOT NULL,
    instance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS esp_counters (
    instance TEXT NOT NULL,
    spi_r TEXT NOT NULL,
    counters TEXT NOT NULL,
    at {real} NOT NULL,
    PRIMARY KEY (instance, spi_r)
);
CREATE TABLE IF NOT EXISTS owner (
    instance TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    started {real} NOT NULL,
    heartbeat {real} NOT NULL
);
"""

#: A registry whose owner's heartbeat is older than this many seconds has no live SeGW.
STALE_AFTER = 15.0

_COLUMNS = ("spi_r", "spi_i", "identity", "inner_ip", "public_ip", "public_port",
            "child_spis", "first_seen", "last_seen", "instance")
_HISTORY = ("at", "event", "reason", "spi_r", "identity", "inner_ip", "public_ip",
            "public_port", "instance")


def default_instance() -> str:
    """The name a SeGW's rows carry unless ``instance`` is configured: the host name."""
    return socket.gethostname() or "segw"


def _row(r: sqlite3.Row | tuple) -> Binding:
    values = dict(zip(_COLUMNS, r, strict=True))
    spis = str(values["child_spis"])
    values["child_spis"] = tuple(spis.split(",")) if spis else ()
    return Binding(**values)  # type: ignore[arg-type]


def change_json(row: tuple) -> dict[str, Any]:
    """A ``history`` row (``_HISTORY`` order) as the change feed's JSON object."""
    return dict(zip(_HISTORY, row, strict=True))


class SqlBindingStore:
    """The ``BindingStore`` (``ikecp.roles.store``) of both SQL stores: the SQL is shared,
    the dialect is not.

    ``instance`` names this SeGW's rows (None: a reader that sees every instance).
    ``stream`` receives one JSON line per change (``event`` is up, rebind, update, rekey or
    down; a rekey line names the old SPIr in ``previous``).
    ``clock`` gives wall-clock time for first/last seen. Subclasses provide ``_run``,
    ``_rows``, ``_transaction`` and ``follow`` (the change feed: every ``history`` row as a
    ``change_json`` object); SQL is written with ``?``.
    """

    location: str
    instance: str | None
    _stream: TextIO | None
    _clock: Callable[[], float]
    #: The order of ``history`` rows (SQLite has rowid, PostgreSQL the serial id).
    _history_order = "id"

    def _run(self, sql: str, args: tuple = ()) -> None:
        raise NotImplementedError

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def follow(self, poll: float = 0.5) -> Iterator[dict[str, Any]]:
        """Every change from now on, as ``change_json`` objects, until the caller stops."""
        raise NotImplementedError

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """``with store.batch():`` groups the changes made inside into one transaction."""
        return self._transaction()

    def close(self) -> None:
        raise NotImplementedError

    # --- changes (the gateway) ---------------------------------------------------------------

    def _own(self) -> str:
        if self.instance is None:
            raise PermissionError("a reader cannot change bindings")
        return self.instance

    def update(self, b: PeerBinding) -> str:
        """Record a ``PeerBinding`` event; returns "up" (new), "rebind" (public address
        changed) or "update" (same address, e.g. CHILD SPIs)."""
        instance = self._own()
        now = self._clock()
        with self._transaction():
            old = self.get(b.spi_r.hex())
            kind, new = updated_row(old, b, now, instance)
            self._run(
                f"INSERT INTO bindings ({','.join(_COLUMNS)}) VALUES "
                f"({','.join('?' * len(_COLUMNS))}) ON CONFLICT (instance, spi_r) DO UPDATE "
                "SET spi_i = excluded.spi_i, identity = excluded.identity, "
                "inner_ip = excluded.inner_ip, public_ip = excluded.public_ip, "
                "public_port = excluded.public_port, child_spis = excluded.child_spis, "
                "last_seen = excluded.last_seen",
                (new.spi_r, new.spi_i, new.identity, new.inner_ip, new.public_ip,
                 new.public_port, ",".join(new.child_spis), new.first_seen, now, instance))
            self._record(kind, new, now, None if old is None else old.public)
        return kind

    def rekey(self, old_spi_r: bytes, b: PeerBinding) -> bool:
        """The IKE SA of ``old_spi_r`` was rekeyed: the same row carries the new SPIs (and
        CHILD SPIs) from now on, in one statement, so no query ever misses it; the history
        gets a "rekey" entry naming the old SPIr. False if there was no such row."""
        instance = self._own()
        with self._transaction():
            old = self.get(old_spi_r.hex())
            if old is None:
                return False
            now = self._clock()
            self._run(
                "UPDATE bindings SET spi_r = ?, spi_i = ?, child_spis = ?, public_ip = ?, "
                "public_port = ?, last_seen = ? WHERE instance = ? AND spi_r = ?",
                (b.spi_r.hex(), b.spi_i.hex(), ",".join(s.hex() for s in b.child_spis),
                 b.public_address, b.public_port, now, instance, old.spi_r))
            new = self.get(b.spi_r.hex())
            assert new is not None
            self._record("rekey", new, now, old.spi_r)
        return True

    def touch(self, spi_r: bytes) -> None:
        """The peer of ``spi_r`` sent an authenticated message: move ``last_seen``."""
        self._run("UPDATE bindings SET last_seen = ? WHERE instance = ? AND spi_r = ?",
                  (self._clock(), self._own(), spi_r.hex()))

    def remove(self, spi_r: bytes | str, reason: str) -> Binding | None:
        """Drop a binding (DELETE, failure, shutdown); the history keeps it."""
        key = spi_r.hex() if isinstance(spi_r, bytes) else spi_r
        instance = self._own()
        with self._transaction():
            old = self.get(key)
            if old is None:
                return None
            self._run("DELETE FROM bindings WHERE instance = ? AND spi_r = ?", (instance, key))
            self._run("DELETE FROM esp_counters WHERE instance = ? AND spi_r = ?",
                      (instance, key))
            self._record("down", old, self._clock(), reason)
        return old

    def expire(self, idle: float) -> list[Binding]:
        """Remove bindings not seen for ``idle`` seconds."""
        cutoff = self._clock() - idle
        rows = self._select("last_seen < ?", (cutoff,))
        for b in rows:
            self.remove(b.spi_r, "expired")
        return rows

    def _record(self, event: str, b: Binding, now: float, reason: str | None) -> None:
        row = (now, event, reason, b.spi_r, b.identity, b.inner_ip, b.public_ip,
               b.public_port, b.instance)
        self._run(f"INSERT INTO history ({','.join(_HISTORY)}) VALUES "
                  f"({','.join('?' * len(_HISTORY))})", row)
        if self._stream is not None:
            self._stream.write(change_line(event, b, now, reason))
            self._stream.flush()

    # --- ownership (the gateway) -------------------------------------------------------------

    def lock_file(self) -> str | None:
        """The file a SeGW locks to be this store's only writer of its instance (None:
        the store keeps writers apart itself, or there is nothing to share)."""
        return None

    def claim(self, pid: int) -> None:
        """A SeGW (process ``pid``) now owns this instance's rows; readers see it in
        ``owner``."""
        instance, now = self._own(), self._clock()
        with self._transaction():
            self._run("DELETE FROM owner WHERE instance = ?", (instance,))
            self._run("INSERT INTO owner (instance, pid, started, heartbeat) VALUES "
                      "(?, ?, ?, ?)", (instance, pid, now, now))

    def heartbeat(self) -> None:
        self._run("UPDATE owner SET heartbeat = ? WHERE instance = ?",
                  (self._clock(), self._own()))

    def release(self) -> None:
        """Clean shutdown: no SeGW owns this instance's (now empty) rows any more."""
        self._run("DELETE FROM owner WHERE instance = ?", (self._own(),))

    def live(self, instance: str | None = None) -> bool:
        """Whether a SeGW owns the rows of ``instance`` (default: this store's; a reader
        without one asks about any): its heartbeat is recent. False after a crash, until
        that instance's next start closes the rows."""
        name = instance or self.instance
        where, args = ("WHERE instance = ?", (name,)) if name else ("", ())
        (beat,) = self._rows(f"SELECT MAX(heartbeat) FROM owner {where}", args)[0]
        return beat is not None and self._clock() - float(beat) < STALE_AFTER

    # --- lookups -----------------------------------------------------------------------------

    def _select(self, where: str = "", args: tuple = ()) -> list[Binding]:
        conds = [where] if where else []
        if self.instance is not None:
            conds.append("instance = ?")
            args = (*args, self.instance)
        clause = f"WHERE {' AND '.join(conds)}" if conds else ""
        sql = (f"SELECT {','.join(_COLUMNS)} FROM bindings {clause} "
               "ORDER BY first_seen, instance, spi_r")
        return [_row(r) for r in self._rows(sql, args)]

    def get(self, spi_r: str) -> Binding | None:
        rows = self._select("spi_r = ?", (spi_r,))
        return rows[0] if rows else None

    def all(self) -> list[Binding]:
        return self._select()

    def by_inner_ip(self, ip: str) -> list[Binding]:
        return self._select("inner_ip = ?", (ip,))

    def by_identity(self, identity: str) -> list[Binding]:
        return self._select("identity = ?", (identity,))

    def by_public(self, ip: str, port: int | None = None) -> list[Binding]:
        if port is None:
            return self._select("public_ip = ?", (ip,))
        return self._select("public_ip = ? AND public_port = ?", (ip, port))

    def by_instance(self, instance: str) -> list[Binding]:
        return self._select("instance = ?", (instance,))

    def set_counters(self, spi_r: bytes, counters: dict[str, object]) -> None:
        """The data plane's counters of the binding's CHILD SAs (packets, bytes, drops)."""
        self._run("INSERT INTO esp_counters (instance, spi_r, counters, at) VALUES "
                  "(?, ?, ?, ?) ON CONFLICT (instance, spi_r) DO UPDATE SET "
                  "counters = excluded.counters, at = excluded.at",
                  (self._own(), spi_r.hex(), json.dumps(counters, sort_keys=True),
                   self._clock()))

    def counters(self, spi_r: str, instance: str | None = None) -> dict[str, object] | None:
        """The last counters written for the binding ``spi_r`` (hex) of ``instance``
        (default: this store's), or None."""
        rows = self._rows("SELECT counters FROM esp_counters WHERE instance = ? AND spi_r = ?",
                          (instance or self.instance, spi_r))
        return json.loads(rows[0][0]) if rows else None

    def history(self) -> list[tuple[float, str, str | None, str, str, str | None, str, int,
                                    str]]:
        """Every change in order: (at, event, reason, spi_r, identity, inner_ip, public_ip,
        public_port, instance), this instance's only unless a reader."""
        where, args = ("WHERE instance = ?", (self.instance,)) if self.instance else ("", ())
        return [tuple(r) for r in self._rows(  # type: ignore[misc]
            f"SELECT {','.join(_HISTORY)} FROM history {where} ORDER BY {self._history_order}",
            args)]

    def __len__(self) -> int:
        where, args = ("WHERE instance = ?", (self.instance,)) if self.instance else ("", ())
        return int(self._rows(f"SELECT COUNT(*) FROM bindings {where}", args)[0][0])


class BindingRegistry(SqlBindingStore):
    """The store on an SQLite database at ``path`` (``":memory:"`` for none)."""

    _history_order = "rowid"

    def __init__(self, path: str | Path = ":memory:", *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.time, instance: str | None = None) -> None:
        self.location = self.path = str(path)
        self.instance = instance if instance is not None else default_instance()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._db.executescript(SCHEMA.format(real="REAL",
                                             serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        if self._db.execute("SELECT name FROM sqlite_master WHERE name = 'bindings_v1'"
                            ).fetchone():
            self._db.execute(f"INSERT INTO bindings ({','.join(_COLUMNS)}) "
                             f"SELECT {','.join(_COLUMNS[:-1])}, ? FROM bindings_v1",
                             (self.instance,))
            self._db.execute("DROP TABLE bindings_v1")
        self._stream = stream
        self._clock = clock
        self._depth = 0

    def _migrate(self) -> None:
        """A database written before rows named their instance: the old bindings table is
        set aside (its rows are copied with this instance's name once the new one exists)
        and history gains the column."""
        def columns(table: str) -> set[str]:
            return {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}

        if columns("bindings") and "instance" not in columns("bindings"):
            self._db.executescript(
                "DROP INDEX IF EXISTS bindings_inner; DROP INDEX IF EXISTS bindings_identity; "
                "DROP INDEX IF EXISTS bindings_public; "
                "ALTER TABLE bindings RENAME TO bindings_v1;")
        if columns("esp_counters") and "instance" not in columns("esp_counters"):
            self._db.execute("DROP TABLE esp_counters")  # counters only: rewritten as they move
        if columns("owner") and "instance" not in columns("owner"):
            self._db.execute("DROP TABLE owner")  # one owner per file: no instance column
        if columns("history") and "instance" not in columns("history"):
            self._db.execute("ALTER TABLE history ADD COLUMN instance TEXT NOT NULL DEFAULT ''")

    @classmethod
    def reader(cls, path: str | Path) -> BindingRegistry:
        """Open an existing database read-only (for lookups while a gateway writes it)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"no binding database at {path}")
        self = cls.__new__(cls)
        self.location = self.path = str(path)
        self.instance = None
        self._db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True,
                                   isolation_level=None, check_same_thread=False)
        self._stream = None
        self._clock = time.time
        self._depth = 0
        return self

    def _run(self, sql: str, args: tuple = ()) -> None:
        self._db.execute(sql, args)

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (nested calls join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def follow(self, poll: float = 0.5) -> Iterator[dict[str, Any]]:
        """SQLite has no notifications: poll ``history`` for rows past the last one seen."""
        (last,) = self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM history").fetchone()
        while True:
            rows = self._db.execute(f"SELECT rowid, {','.join(_HISTORY)} FROM history "
                                    "WHERE rowid > ? ORDER BY rowid", (last,)).fetchall()
            for r in rows:
                last = r[0]
                yield change_json(r[1:])
            if not rows:
                time.sleep(poll)

    def lock_file(self) -> str | None:
        from .instance_lock import lock_path

        return lock_path(self.path)

    def live(self, instance: str | None = None) -> bool:
        """Also false when no process holds the file's lock (where the platform can tell),
        whatever the heartbeat says."""
        from .instance_lock import is_held

        lock = self.lock_file()
        held = is_held(lock) if lock is not None else None
        if held is False:
            return False
        try:
            return super().live(instance)
        except sqlite3.OperationalError:  # written by a version without the owner table
            return bool(held)

    def close(self) -> None:
        self._db.close()


def is_postgres(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def open_store(location: str, *, instance: str | None = None, stream: TextIO | None = None,
               reader: bool = False) -> SqlBindingStore:
    """The store at ``location``: a ``postgresql://`` URL or an SQLite file. ``reader``:
    read every instance's rows, change nothing (``ikecp bindings``)."""
    if is_postgres(location):
        from .bindings_pg import PgBindingStore

        return PgBindingStore(location, instance=None if reader else
                              (instance or default_instance()), stream=stream)
    if reader:
        return BindingRegistry.reader(location)
    return BindingRegistry(location, stream=stream, instance=instance)
