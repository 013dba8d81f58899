"""One binding-store interface, two implementations: every test here runs on SQLite and on
a real PostgreSQL (a throwaway cluster)."""

from __future__ import annotations

import asyncio
import queue
import threading

import pytest
from ikecp.config import SegwConfig
from ikecp.events import PeerBinding
from ikecp.roles.bindings import BindingRegistry, open_store
from ikecp.roles.gateway import Gateway


def binding(n: int, port: int = 4500, ip: str = "100.64.0.1") -> PeerBinding:
    return PeerBinding(f"fap-{n}.example", f"10.99.0.{n}", ip, port, bytes([n]) * 8,
                       bytes([0x80 + n]) * 8, (bytes([n]) * 4,))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_changes_lookups_and_history(store_location) -> None:
    store = open_store(store_location, instance="segw-a")
    try:
        assert store.update(binding(1)) == "up"
        assert store.update(binding(1)) == "update"
        assert store.update(binding(1, port=4501)) == "rebind"
        assert store.update(binding(2, ip="100.64.0.2")) == "up"
        assert len(store) == 2
        (b1,) = store.by_inner_ip("10.99.0.1")
        assert (b1.identity, b1.public, b1.instance) == ("fap-1.example", "100.64.0.1:4501",
                                                          "segw-a")
        assert b1.child_spis == ("01010101",) and b1.spi_r == "81" * 8
        assert [b.identity for b in store.by_public("100.64.0.2")] == ["fap-2.example"]
        assert store.by_public("100.64.0.1", 4500) == []
        assert store.by_identity("fap-2.example")[0].inner_ip == "10.99.0.2"
        gone = store.remove(bytes([0x81]) * 8, "deleted by peer")
        assert gone is not None and gone.identity == "fap-1.example"
        assert store.remove(bytes([0x81]) * 8, "again") is None
        events = [(h[1], h[2], h[8]) for h in store.history()]
        assert events == [("up", None, "segw-a"), ("update", "100.64.0.1:4500", "segw-a"),
                          ("rebind", "100.64.0.1:4500", "segw-a"), ("up", None, "segw-a"),
                          ("down", "deleted by peer", "segw-a")]
    finally:
        store.close()


def test_expiry_and_touch(store_location) -> None:
    clock = Clock()
    if store_location.startswith("postgresql"):
        from ikecp.roles.bindings_pg import PgBindingStore
        store = PgBindingStore(store_location, instance="segw-a", clock=clock)
    else:
        store = BindingRegistry(store_location, instance="segw-a", clock=clock)
    try:
        store.update(binding(1))
        store.update(binding(2))
        clock.now += 100
        store.touch(bytes([0x82]) * 8)
        expired = store.expire(50)
        assert [b.identity for b in expired] == ["fap-1.example"]
        assert [b.identity for b in store.all()] == ["fap-2.example"]
        assert store.history()[-1][1:3] == ("down", "expired")
    finally:
        store.close()


def test_instances_share_a_store_and_see_their_own_rows(store_location) -> None:
    a = open_store(store_location, instance="segw-a")
    b = open_store(store_location, instance="segw-b")
    reader = open_store(store_location, reader=True)
    try:
        a.update(binding(1))
        b.update(binding(1))  # the same SPIs at another instance: a row of its own
        b.update(binding(2))
        assert len(a) == 1 and len(b) == 2 and len(reader) == 3
        assert {(x.identity, x.instance) for x in reader.all()} == {
            ("fap-1.example", "segw-a"), ("fap-1.example", "segw-b"),
            ("fap-2.example", "segw-b")}
        assert [x.instance for x in reader.by_instance("segw-b")] == ["segw-b", "segw-b"]
        a.remove(bytes([0x81]) * 8, "deleted")
        assert [x.instance for x in reader.by_identity("fap-1.example")] == ["segw-b"]
        assert len(reader.history()) == 4 and len(a.history()) == 2
        with pytest.raises(PermissionError):
            reader.update(binding(3))
    finally:
        for s in (a, b, reader):
            s.close()


def test_a_starting_segw_closes_only_its_own_stale_rows(store_location) -> None:
    """Two instances crashed with rows left; instance A restarts: A's rows are closed as
    stale, B's (still running elsewhere) stay."""
    for name, n in (("segw-a", 1), ("segw-b", 2)):
        s = open_store(store_location, instance=name)
        s.update(binding(n))
        s.close()

    async def restart_a() -> None:
        gw = Gateway(SegwConfig(psk="x", port=0, natt_port=0, bindings=store_location,
                                instance="segw-a"))
        await gw.start()
        await gw.stop()

    asyncio.run(restart_a())
    reader = open_store(store_location, reader=True)
    try:
        assert [(x.identity, x.instance) for x in reader.all()] == [("fap-2.example",
                                                                      "segw-b")]
        downs = [(h[2], h[8]) for h in reader.history() if h[1] == "down"]
        assert downs == [("stale at startup", "segw-a")]
    finally:
        reader.close()


def test_follow_delivers_each_change_in_order(store_location) -> None:
    writer = open_store(store_location, instance="segw-a")
    reader = open_store(store_location, reader=True)
    got: queue.Queue = queue.Queue()
    ready = threading.Event()

    def listen() -> None:
        feed = reader.follow(poll=0.05)
        ready.set()
        for change in feed:
            got.put(change)
            if change["event"] == "down":
                return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    import time
    time.sleep(0.5)  # the subscription is in place (LISTEN / the history cursor)
    try:
        writer.update(binding(1))
        writer.update(binding(1, port=4999))
        writer.remove(bytes([0x81]) * 8, "deleted by peer")
        changes = [got.get(timeout=10) for _ in range(3)]
        assert [(c["event"], c["public_port"], c["instance"]) for c in changes] == [
            ("up", 4500, "segw-a"), ("rebind", 4999, "segw-a"), ("down", 4999, "segw-a")]
        assert changes[2]["reason"] == "deleted by peer"
        assert changes[0]["identity"] == "fap-1.example" and changes[0]["spi_r"] == "81" * 8
        t.join(10)
    finally:
        writer.close()


def test_sqlite_database_of_the_previous_schema_is_migrated(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE bindings (spi_r TEXT PRIMARY KEY, spi_i TEXT NOT NULL,
            identity TEXT NOT NULL, inner_ip TEXT, public_ip TEXT NOT NULL,
            public_port INTEGER NOT NULL, child_spis TEXT NOT NULL, first_seen REAL NOT NULL,
            last_seen REAL NOT NULL);
        CREATE INDEX bindings_inner ON bindings (inner_ip);
        CREATE TABLE history (at REAL NOT NULL, event TEXT NOT NULL, reason TEXT,
            spi_r TEXT NOT NULL, identity TEXT NOT NULL, inner_ip TEXT,
            public_ip TEXT NOT NULL, public_port INTEGER NOT NULL);
        INSERT INTO bindings VALUES ('aa', 'bb', 'old-fap', '10.0.0.9', '100.64.0.9', 4500,
            '', 1.0, 2.0);
        INSERT INTO history VALUES (1.0, 'up', NULL, 'aa', 'old-fap', '10.0.0.9',
            '100.64.0.9', 4500);
    """)
    db.commit()
    db.close()
    store = BindingRegistry(path, instance="segw-a")
    try:
        (old,) = store.all()
        assert (old.identity, old.instance) == ("old-fap", "segw-a")
        store.remove("aa", "stale at startup")
        store.update(binding(1))
        assert [h[1] for h in store.history()] == ["down", "up"]  # this instance's
        assert len(BindingRegistry.reader(path).history()) == 3
    finally:
        store.close()


def test_postgres_refuses_a_second_writer_of_one_instance(pg_url) -> None:
    from ikecp.roles.bindings_pg import InstanceInUseError

    first = open_store(pg_url, instance="segw-a")
    try:
        with pytest.raises(InstanceInUseError, match="segw-a"):
            open_store(pg_url, instance="segw-a")
        open_store(pg_url, instance="segw-b").close()  # another name is fine
    finally:
        first.close()
    open_store(pg_url, instance="segw-a").close()  # free again once the first is gone


def test_ike_rekey_keeps_the_row_with_new_spis(store_location) -> None:
    store = open_store(store_location, instance="segw-a")
    try:
        store.update(binding(1))
        old = bytes([0x81]) * 8
        new = PeerBinding("fap-1.example", "10.99.0.1", "100.64.0.1", 4500, b"\x11" * 8,
                          b"\x22" * 8, (b"\x33" * 4,))
        assert store.rekey(old, new)
        (row,) = store.all()
        assert (row.spi_r, row.spi_i, row.child_spis) == ("22" * 8, "11" * 8, ("33" * 4,))
        assert row.inner_ip == "10.99.0.1" and row.instance == "segw-a"
        assert store.history()[-1][1:4] == ("rekey", "81" * 8, "22" * 8)
        assert not store.rekey(old, new)  # the old SPI is gone
    finally:
        store.close()


def test_ownership_is_per_instance(store_location) -> None:
    from ikecp.roles.instance_lock import InstanceLock

    a = open_store(store_location, instance="segw-a")
    reader = open_store(store_location, reader=True)
    lock = InstanceLock(a.lock_file()) if a.lock_file() else None  # SQLite: the file lock
    try:
        if lock is not None:
            lock.acquire()
        a.claim(4242)
        a.heartbeat()
        assert reader.live("segw-a") and a.live()
        if lock is None:  # a shared store: another instance has no owner yet
            assert not reader.live("segw-b")
        a.release()
        assert not reader.live("segw-a")
    finally:
        if lock is not None:
            lock.release()
        a.close()
        reader.close()
