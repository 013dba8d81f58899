"""The one writer path of the binding registry: ``BindingFront`` answers as the store
would (kinds, rekeys, removals, expiry) from memory, and its changes reach the store grouped,
one transaction per event-loop turn."""

from __future__ import annotations

import asyncio

from ikecp.engine import Identity
from ikecp.events import PeerBinding
from ikecp.roles.binding_writer import BindingFront, apply
from ikecp.roles.bindings import BindingRegistry


def binding(n: int, port: int = 4500, spi_r: bytes | None = None) -> PeerBinding:
    return PeerBinding(Identity.fqdn(f"fap-{n}.test"), f"10.0.0.{n}", "198.51.100.1", port,
                       n.to_bytes(8, "big"), spi_r or (0x100 + n).to_bytes(8, "big"),
                       (bytes([n, 0, 0, 1]),))


def script(store) -> list[object]:
    """The same changes on any store-like object; what each call answered."""
    out: list[object] = [store.update(binding(1)), store.update(binding(2)),
                         store.update(binding(1, 4600)), store.update(binding(1, 4600))]
    out.append(store.rekey(binding(2).spi_r, binding(2, spi_r=b"\x09" * 8)))
    out.append(store.rekey(b"\x07" * 8, binding(3)))
    store.touch(binding(1).spi_r)
    out.append(store.remove(binding(1).spi_r, "deleted by peer").identity)
    out.append(store.remove(binding(1).spi_r, "again"))
    out.append([b.identity for b in store.expire(-1.0)])  # everything is older than "now + 1"
    store.update(binding(4))
    return out


def view(store: BindingRegistry) -> list[tuple]:
    return [(b.spi_r, b.identity, b.inner_ip, b.public_port, b.child_spis)
            for b in store.all()]


def test_front_answers_and_writes_what_the_store_would() -> None:
    plain, behind = BindingRegistry(instance="a"), BindingRegistry(instance="a")
    front = BindingFront(behind)
    assert script(front) == script(plain) == [
        "up", "up", "rebind", "update", True, False, "fap-1.test", None, ["fap-2.test"]]
    front.flush()
    assert view(behind) == view(plain) and len(front) == 1
    assert [h[1:4] for h in behind.history()] == [h[1:4] for h in plain.history()]


def test_changes_of_one_loop_turn_are_one_transaction() -> None:
    store = BindingRegistry(instance="a")
    transactions = []
    batch = store.batch
    store.batch = lambda: (transactions.append(1), batch())[1]  # type: ignore[method-assign]
    front = BindingFront(store)

    async def main() -> None:
        for n in range(1, 41):
            front.update(binding(n))
        assert len(store) == 0 and len(front) == 40  # not yet written, already answered
        await asyncio.sleep(0)
        assert len(store) == 40 and transactions == [1] and front.batches == 1
        front.remove(binding(1).spi_r, "deleted")
        front.remove(binding(2).spi_r, "deleted")
        await asyncio.sleep(0)
        assert len(store) == 38 and len(transactions) == 2

    asyncio.run(main())


def test_front_starts_from_the_stores_rows_and_a_sink_gets_ops() -> None:
    store = BindingRegistry(instance="a")
    store.update(binding(5))
    front = BindingFront(store)
    assert [b.identity for b in front.all()] == ["fap-5.test"]
    sent: list[list] = []
    worker = BindingFront(sink=sent.append, instance="a")
    worker.update(binding(6))  # no loop running: written at once
    worker.rekey(binding(6).spi_r, binding(6, spi_r=b"\x06" * 8))
    assert [op[0] for ops in sent for op in ops] == ["update", "rekey"]
    apply(store, [op for ops in sent for op in ops])
    assert sorted(b.spi_r for b in store.all()) == sorted([binding(5).spi_r.hex(), "06" * 8])
    assert worker.lock_file() is None
