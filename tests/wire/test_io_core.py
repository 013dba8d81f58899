"""``IoCore`` itself over real loopback UDP: one batch per socket per turn, timers from the
one heap (blocking and inside asyncio), a handler's answers leaving in one batch,
refused datagrams reported without losing the rest, and nothing left on the asyncio loop
after ``close``."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from ikecp.net.core import IoCore
from ikecp.net.udp import open_socket

HOST = "127.0.0.1"


def sender() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.settimeout(5)
    return s


def drain(sock: socket.socket, n: int) -> list[bytes]:
    return [sock.recvfrom(2048)[0] for _ in range(n)]


@pytest.mark.parametrize("batch", [True, False], ids=["batch-socket", "plain-socket"])
def test_one_turn_hands_each_socket_its_whole_batch(backend, batch: bool) -> None:
    core = IoCore()
    calls: list[tuple[str, list[bytes], float]] = []
    a, b = open_socket(HOST, 0, batch=batch), open_socket(HOST, 0, batch=batch)
    core.add(a, lambda tok, got, now: calls.append((tok, [d for d, _ in got], now)), "a")
    core.add(b, lambda tok, got, now: calls.append((tok, [d for d, _ in got], now)), "b")
    tx = sender()
    try:
        for i in range(10):
            tx.sendto(b"a%d" % i, a.getsockname())
            tx.sendto(b"b%d" % i, b.getsockname())
        core.poll(1.0)
        assert sorted(tok for tok, _, _ in calls) == ["a", "b"]  # one call per socket
        for tok, got, _ in calls:
            assert got == [tok.encode() + b"%d" % i for i in range(10)]  # in order
        assert calls[0][2] == calls[1][2]  # one ``now`` per turn
        assert core.stats.wakeups == 1 and core.stats.received == 20
    finally:
        core.close()
        tx.close()


def test_a_socket_gives_at_most_batch_datagrams_per_turn() -> None:
    core = IoCore(batch=4)
    sizes: list[int] = []
    sock = open_socket(HOST, 0)
    core.add(sock, lambda _t, got, _n: sizes.append(len(got)))
    tx = sender()
    try:
        for _ in range(10):
            tx.sendto(b"x", sock.getsockname())
        for _ in range(3):
            core.poll(1.0)
        assert sizes == [4, 4, 2]
    finally:
        core.close()
        tx.close()


def test_timers_fire_in_order_once_and_cancelled_ones_never() -> None:
    core = IoCore()
    fired: list[tuple[str, float]] = []

    def note(name: str, now: float) -> None:
        fired.append((name, now))
        if name == "b":  # a timer may arm another from its callback
            core.call_at(now + 0.01, note, "d")

    t0 = core.clock()
    core.call_at(t0 + 0.06, note, "a")
    core.call_at(t0 + 0.02, note, "b")
    core.cancel(core.call_at(t0 + 0.01, note, "c"))
    assert core.next_deadline() == pytest.approx(t0 + 0.02)
    assert core.run_until(lambda: len(fired) == 3, t0 + 5)
    assert [name for name, _ in fired] == ["b", "d", "a"]
    assert all(now >= t0 + 0.02 for _, now in fired)
    assert core.next_deadline() is None
    assert not core.run_until(lambda: False, core.clock() + 0.05)  # deadline: False
    assert len(fired) == 3
    core.close()


def test_many_cancelled_timers_are_compacted_away() -> None:
    core = IoCore()
    timers = [core.call_at(1e9 + i, lambda *_: None) for i in range(1000)]
    for t in timers[:900]:
        core.cancel(t)
    assert len(core._heap) < 1000  # compacted: cancelled entries do not pile up
    assert core.next_deadline() == 1e9 + 900
    core.close()


@pytest.mark.parametrize("batch", [True, False], ids=["batch-socket", "plain-socket"])
def test_a_handlers_answers_leave_together_when_it_returns(backend, batch: bool) -> None:
    core = IoCore()
    sock = open_socket(HOST, 0, batch=batch)

    def echo(_tok: object, got: list, _now: float) -> None:
        for data, addr in got:
            core.send(sock, data.upper(), addr)
        assert core.stats.sent == 0  # queued, not sent yet

    core.add(sock, echo)
    tx = sender()
    try:
        for i in range(12):
            tx.sendto(b"m%d" % i, sock.getsockname())
        core.poll(1.0)
        assert sorted(drain(tx, 12)) == sorted(b"M%d" % i for i in range(12))
        assert core.stats.sent == 12
        # A batch socket sends the whole batch's answers in one sendmmsg.
        assert core.stats.send_calls == (1 if batch else 12)
    finally:
        core.close()
        tx.close()


@pytest.mark.parametrize("batch", [True, False], ids=["batch-socket", "plain-socket"])
def test_a_refused_datagram_is_reported_and_the_rest_goes(backend, batch: bool) -> None:
    core = IoCore()
    sock = open_socket(HOST, 0, batch=batch)
    errors: list[tuple[object, OSError]] = []
    core.add(sock, lambda *_: None, "token", on_error=lambda tok, exc: errors.append((tok, exc)))
    rx = sender()
    try:
        to, bad = rx.getsockname(), (HOST, 0)  # port 0: the kernel refuses it
        for data, addr in ((b"1", to), (b"x", bad), (b"2", to), (b"3", to)):
            core.send(sock, data, addr)
        core.flush()
        assert drain(rx, 3) == [b"1", b"2", b"3"]
        assert core.stats.sent == 3 and core.stats.send_errors == 1
        assert [tok for tok, _ in errors] == ["token"]
        assert isinstance(errors[0][1], OSError)
    finally:
        core.close()
        rx.close()


def test_remove_sends_what_was_queued_and_stops_reading() -> None:
    core = IoCore()
    sock = open_socket(HOST, 0)
    got: list[bytes] = []
    core.add(sock, lambda _t, batch, _n: got.extend(d for d, _ in batch))
    peer = sender()
    try:
        core.send(sock, b"last words", peer.getsockname())
        core.remove(sock)
        assert drain(peer, 1) == [b"last words"]
        peer.sendto(b"unread", sock.getsockname())
        core.poll(0.05)
        assert got == [] and core.sockets() == []
        assert sock.recvfrom(100)[0] == b"unread"  # still open: the caller's again
    finally:
        sock.close()
        core.close()
        peer.close()


def test_attached_core_serves_inside_asyncio_and_close_leaves_nothing_on_the_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        core = IoCore()
        sock = open_socket(HOST, 0, batch=True)
        got: list[bytes] = []
        fired: list[str] = []

        def echo(_t: object, batch: list, _now: float) -> None:
            for data, addr in batch:
                got.append(data)
                core.send(sock, data, addr)

        core.add(sock, echo)
        core.attach()
        peer = sender()
        peer.setblocking(False)
        try:
            peer.sendto(b"ping", sock.getsockname())
            data = await asyncio.wait_for(loop.sock_recv(peer, 100), 5)
            assert data == b"ping" and got == [b"ping"]
            # The heap's earliest deadline is one loop timer: it fires without traffic.
            core.call_at(core.clock() + 0.02, lambda name, _n: fired.append(name), "t1")
            for _ in range(100):
                if fired:
                    break
                await asyncio.sleep(0.01)
            assert fired == ["t1"]
            core.call_at(core.clock() + 0.03, lambda name, _n: fired.append(name), "late")
            fd = sock.fileno()
            core.close()
            assert not loop.remove_reader(fd)  # no reader left behind
            await asyncio.sleep(0.1)
            assert fired == ["t1"]  # the cancelled loop timer never ran the core
        finally:
            core.close()  # twice is harmless
            peer.close()

    asyncio.run(main())


def test_an_error_in_a_handler_is_logged_and_the_loop_keeps_serving(caplog) -> None:
    async def main() -> list[bytes]:
        core = IoCore()
        sock = open_socket(HOST, 0)
        seen: list[bytes] = []

        def handler(_t: object, batch: list, _now: float) -> None:
            seen.extend(d for d, _ in batch)
            if batch[0][0] == b"boom":
                raise ValueError("handler bug")

        core.add(sock, handler)
        core.attach()
        tx = sender()
        try:
            tx.sendto(b"boom", sock.getsockname())
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            tx.sendto(b"fine", sock.getsockname())
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            core.close()
            tx.close()
        return seen

    with caplog.at_level(logging.ERROR, logger="ikecp.net.core"):
        assert asyncio.run(main()) == [b"boom", b"fine"]
    assert any("error in an I/O turn" in r.message for r in caplog.records)


def test_blocking_wait_is_bounded_by_the_next_timer() -> None:
    """``run_until`` sleeps in the selector only until the heap's next deadline."""
    core = IoCore()
    fired: list[float] = []
    t0 = core.clock()
    core.call_at(t0 + 0.05, lambda _a, now: fired.append(now))
    start = time.monotonic()
    assert core.run_until(lambda: bool(fired), t0 + 5, max_wait=10.0)
    assert time.monotonic() - start < 2.0  # not max_wait
    core.close()


def test_a_wakeup_that_reads_nothing_still_reaches_the_handler() -> None:
    """The TUN data plane's NAT-T socket keeps the ESP it reads and raises events instead; the
    handler must run so the role drains them (a NAT rebinding seen only in ESP was lost)."""
    from ikecp import _reference

    class KeepsEverything(_reference.BatchSocket):
        def recv_batch(self, max_datagrams: int, timeout: float | None = None) -> list:
            super().recv_batch(max_datagrams, timeout)
            return []

    core = IoCore()
    sock = KeepsEverything(HOST, 0)
    calls: list[list] = []
    core.add(sock, lambda _t, batch, _n: calls.append(batch))
    tx = sender()
    try:
        tx.sendto(b"esp", sock.getsockname())
        core.poll(1.0)
        assert calls == [[]]
    finally:
        core.close()
        tx.close()
