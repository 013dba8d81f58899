"""The binding store on PostgreSQL, shared by several SeGW instances (psycopg 3).

Same schema, history and change events as the SQLite store (``ikecp.roles.bindings``): each row
names the instance that holds its SA, a SeGW reads and writes only its own rows (so at
startup it closes only its own leftovers), and ``ikecp bindings`` reads them all. Every
history row is also sent with ``NOTIFY ikecp_bindings`` by a trigger, inside the change's
transaction, so a subscriber (``ikecp bindings --follow``, the mobile network's side) gets
it exactly when it commits, as the same JSON object that ``history`` holds.

One connection per store, in autocommit mode; a change is one short transaction. The calls
are synchronous, like SQLite's: each binding change costs a few round trips on the event
loop, which is why the database should be near the SeGW (a Unix socket or the same LAN).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from .bindings import SCHEMA, SqlBindingStore

#: The LISTEN/NOTIFY channel of the change feed.
CHANNEL = "ikecp_bindings"

#: Every history row is published by the server itself, in the inserting transaction, with
#: the field names of ``ikecp.roles.bindings.change_json``: no extra round trip per change, and no
#: writer can add history without the feed seeing it.
_FEED = f"""
CREATE OR REPLACE FUNCTION ikecp_history_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', json_build_object(
        'at', NEW.at, 'event', NEW.event, 'reason', NEW.reason, 'spi_r', NEW.spi_r,
        'identity', NEW.identity, 'inner_ip', NEW.inner_ip, 'public_ip', NEW.public_ip,
        'public_port', NEW.public_port, 'instance', NEW.instance)::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER ikecp_history_notify AFTER INSERT ON history
    FOR EACH ROW EXECUTE FUNCTION ikecp_history_notify();
"""


class InstanceInUseError(OSError):
    """Another SeGW writes the store under the same instance name."""


class PgBindingStore(SqlBindingStore):
    """The store in the database at ``url`` (libpq URL or conninfo); ``instance`` None opens
    a reader that sees every instance's rows."""

    def __init__(self, url: str, *, instance: str | None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        import psycopg

        self.location = url
        self.instance = instance
        self._stream = stream
        self._clock = clock
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:  # reported like any other I/O error
            raise ConnectionError(f"binding store {url}: {exc}".strip()) from None
        if instance is not None:
            # One SeGW per instance name: a session lock, dropped by the server when this
            # connection ends, crash included.
            row = self._db.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                   (f"ikecp instance {instance}",)).fetchone()
            if not (row and row[0]):
                self._db.close()
                raise InstanceInUseError(f"instance {instance!r} of the binding store is in "
                                         "use by another SeGW")
            # Serialize schema creation between SeGWs starting at the same moment.
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(hashtext('ikecp schema'))")
                self._db.execute(SCHEMA.format(real="DOUBLE PRECISION",
                                               serial="BIGSERIAL PRIMARY KEY"))
                self._db.execute(_FEED)

    def _run(self, sql: str, args: tuple = ()) -> None:
        self._db.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._db.execute(sql.replace("?", "%s"), args).fetchall()  # type: ignore[arg-type]

    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        return self._db.transaction()  # nested calls become savepoints

    def follow(self, poll: float = 0.5) -> Iterator[dict[str, Any]]:
        """``LISTEN`` on the change feed: one object per committed change, from now on."""
        import psycopg

        with psycopg.connect(self.location, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            for note in conn.notifies():
                yield json.loads(note.payload)

    def close(self) -> None:
        self._db.close()
