"""The ``BindingStore`` Protocol: the in-memory store (a SeGW's default in code) and the
SQLite store behave alike, change by change, down to the event-stream lines."""

from __future__ import annotations

import io
import json

import pytest
from ikecp.events import PeerBinding
from ikecp.roles.bindings import BindingRegistry
from ikecp.roles.bindings_pg import PgBindingStore
from ikecp.roles.store import BindingStore, MemoryBindingStore


def binding(n: int, port: int = 4500, spi: int = 0x80) -> PeerBinding:
    return PeerBinding(f"fap-{n}.example", f"10.99.0.{n}", "100.64.0.1", port, bytes([n]) * 8,
                       bytes([spi + n]) * 8, (bytes([n]) * 4,))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(kind: str, stream: io.StringIO, clock: Clock) -> MemoryBindingStore | BindingRegistry:
    if kind == "memory":
        return MemoryBindingStore(instance="segw-a", stream=stream, clock=clock)
    return BindingRegistry(":memory:", instance="segw-a", stream=stream, clock=clock)


def test_every_store_satisfies_the_protocol() -> None:
    assert isinstance(MemoryBindingStore(), BindingStore)
    assert isinstance(BindingRegistry(), BindingStore)
    assert all(hasattr(PgBindingStore, name) for name in
               ("update", "rekey", "touch", "remove", "expire", "get", "all", "set_counters",
                "lock_file", "claim", "heartbeat", "release", "close", "__len__"))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_changes_history_and_stream(kind: str) -> None:
    stream, clock = io.StringIO(), Clock()
    store = make(kind, stream, clock)
    assert store.update(binding(1)) == "up"
    clock.now += 1
    assert store.update(binding(1)) == "update"
    assert store.update(binding(1, port=4501)) == "rebind"
    assert store.update(binding(2)) == "up"
    assert store.rekey(bytes([0x81]) * 8, binding(1, port=4501, spi=0x90))
    assert not store.rekey(bytes([0x81]) * 8, binding(1))
    row = store.get("91" * 8)
    assert row is not None and (row.identity, row.public, row.first_seen, row.inner_ip) == (
        "fap-1.example", "100.64.0.1:4501", 1_000_000.0, "10.99.0.1")
    assert len(store) == 2
    clock.now += 100
    store.touch(bytes([0x82]) * 8)
    assert [b.identity for b in store.expire(50)] == ["fap-1.example"]
    assert store.remove(bytes([0x82]) * 8, "deleted by peer").identity == "fap-2.example"
    assert store.remove(bytes([0x82]) * 8, "again") is None
    assert len(store) == 0 and store.all() == []
    assert [(h[1], h[2]) for h in store.history()] == [
        ("up", None), ("update", "100.64.0.1:4500"), ("rebind", "100.64.0.1:4500"),
        ("up", None), ("rekey", "81" * 8), ("down", "expired"), ("down", "deleted by peer")]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["event"], x.get("reason"), x.get("previous")) for x in lines] == [
        ("up", None, None), ("update", None, "100.64.0.1:4500"),
        ("rebind", None, "100.64.0.1:4500"), ("up", None, None), ("rekey", None, "81" * 8),
        ("down", "expired", None), ("down", "deleted by peer", None)]
    store.close()


def test_memory_and_sqlite_write_the_same_lines() -> None:
    out = {}
    for kind in ("memory", "sqlite"):
        stream, clock = io.StringIO(), Clock()
        store = make(kind, stream, clock)
        store.update(binding(3))
        store.update(binding(3, port=4600))
        store.remove(bytes([0x83]) * 8, "shutdown")
        out[kind] = stream.getvalue()
    assert out["memory"] == out["sqlite"] and out["memory"].count("\n") == 3
