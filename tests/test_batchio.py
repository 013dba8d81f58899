"""BatchSocket on real loopback UDP, both backends: batches, families, sizes, destinations,
timeouts, closed sockets, and the native class against its pure-Python twin."""

from __future__ import annotations

import errno
import selectors
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from ikecp._backend import load

NATIVE = load("native")
PYTHON = load("python")
HOSTS = ("127.0.0.1", "::1")

Datagram = tuple[bytes, tuple[str, int]]


@pytest.fixture(params=("python", "native"))
def io(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


@pytest.fixture
def sockets() -> Iterator[Callable[[ModuleType, str], object]]:
    """A factory for BatchSockets on port 0, all closed at teardown."""
    made: list = []

    def make(backend: ModuleType, host: str):
        s = backend.BatchSocket(host, 0)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def recv_n(sock, n: int, per_call: int = 64, within: float = 2.0) -> list[Datagram]:
    """Receives exactly n datagrams (in calls of at most per_call) or fails after `within`."""
    got: list[Datagram] = []
    deadline = time.monotonic() + within
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {n} datagrams arrived"
        batch = sock.recv_batch(min(per_call, n - len(got)), left)
        assert len(batch) <= per_call
        got.extend(batch)
    return got


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("count", [1, 2, 7, 33, 64])
@pytest.mark.parametrize("rx_name", ["python", "native"])
def test_batches_arrive_in_order_with_sources(io, sockets, host, count, rx_name):
    tx, rx = sockets(io, host), sockets(load(rx_name), host)
    out = [(bytes([i]) * (1 + 37 * i), rx.getsockname()) for i in range(count)]
    assert tx.send_batch(out) == count
    got = recv_n(rx, count)
    assert got == [(data, tx.getsockname()) for data, _ in out]
    assert tx.getsockname()[0] == host


@pytest.mark.parametrize(("host", "largest"), [("127.0.0.1", 65_507), ("::1", 65_527)])
def test_sizes_from_empty_to_the_largest_udp_payload(io, sockets, host, largest):
    tx, rx = sockets(io, host), sockets(io, host)
    sizes = [0, 1, 2, 576, 1500, 9000, 32_768, largest - 1, largest]
    for size in sizes:  # one at a time: a batch of 64 KiB datagrams would overrun rcvbuf
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert tx.send_batch([(data, rx.getsockname())]) == 1
        assert recv_n(rx, 1, per_call=4) == [(data, tx.getsockname())]


def test_oversized_datagram_ends_the_batch(io, sockets):
    tx, rx = sockets(io, "127.0.0.1"), sockets(io, "127.0.0.1")
    to = rx.getsockname()
    assert tx.send_batch([(b"a", to), (b"b", to), (bytes(65_508), to), (b"c", to)]) == 2
    assert [d for d, _ in recv_n(rx, 2)] == [b"a", b"b"]
    with pytest.raises(OSError) as err:
        tx.send_batch([(bytes(65_508), to)])
    assert err.value.errno == errno.EMSGSIZE
    assert rx.recv_batch(4, 0.05) == []


@pytest.mark.parametrize("host", HOSTS)
def test_each_datagram_goes_to_its_own_destination(io, sockets, host):
    tx = sockets(io, host)
    rxs = [sockets(io, host) for _ in range(3)]
    out = [(f"{i}->{i % 3}".encode(), rxs[i % 3].getsockname()) for i in range(30)]
    assert tx.send_batch(out) == 30
    for k, rx in enumerate(rxs):
        got = recv_n(rx, 10, per_call=16)
        assert got == [(f"{i}->{k}".encode(), tx.getsockname()) for i in range(k, 30, 3)]
        assert rx.recv_batch(16, 0) == []


def test_max_datagrams_caps_each_call(io, sockets):
    tx, rx = sockets(io, "127.0.0.1"), sockets(io, "127.0.0.1")
    assert tx.send_batch([(bytes([i]), rx.getsockname()) for i in range(10)]) == 10
    time.sleep(0.01)
    sizes = [len(rx.recv_batch(3, 1.0)) for _ in range(4)]
    assert sizes == [3, 3, 3, 1]


@pytest.mark.parametrize("timeout", [0.0, 0.05, 0.2])
def test_timeout_returns_empty_in_time(io, sockets, timeout):
    rx = sockets(io, "::1")
    start = time.monotonic()
    assert rx.recv_batch(8, timeout) == []
    elapsed = time.monotonic() - start
    assert timeout * 0.9 <= elapsed < timeout + 0.5


def test_blocking_receive_releases_the_gil(io, sockets):
    """A receiver waiting with no timeout lets this thread run and send it a datagram."""
    tx, rx = sockets(io, "127.0.0.1"), sockets(io, "127.0.0.1")
    result: list = []
    waiter = threading.Thread(target=lambda: result.extend(rx.recv_batch(4)))
    waiter.start()
    time.sleep(0.05)
    assert tx.send_batch([(b"wake", rx.getsockname())]) == 1
    waiter.join(2.0)
    assert not waiter.is_alive()
    assert result == [(b"wake", tx.getsockname())]


def test_fileno_works_with_selectors(io, sockets):
    tx, rx = sockets(io, "127.0.0.1"), sockets(io, "127.0.0.1")
    with selectors.DefaultSelector() as sel:
        sel.register(rx.fileno(), selectors.EVENT_READ)
        assert sel.select(0) == []
        tx.send_batch([(b"x", rx.getsockname())])
        assert len(sel.select(1.0)) == 1
    assert rx.recv_batch(1, 0) == [(b"x", tx.getsockname())]


def test_closed_socket_raises_ebadf(io):
    s = io.BatchSocket("127.0.0.1", 0)
    assert s.fileno() >= 0
    with s:
        pass
    assert s.fileno() == -1
    s.close()  # twice is harmless
    calls = [lambda: s.recv_batch(1, 0), lambda: s.send_batch([(b"x", ("127.0.0.1", 9))]),
             s.getsockname]
    for call in calls:
        with pytest.raises(OSError, match="closed") as err:
            call()
        assert err.value.errno == errno.EBADF


def test_bind_conflict_is_oserror(io, sockets):
    first = sockets(io, "127.0.0.1")
    with pytest.raises(OSError) as err:
        io.BatchSocket("127.0.0.1", first.getsockname()[1])
    assert err.value.errno == errno.EADDRINUSE


def test_ipv6_wildcard_is_ipv6_only(io, sockets):
    """Each socket is one family: "::" and "0.0.0.0" can hold the same port number."""
    port = sockets(io, "::").getsockname()[1]
    v4 = io.BatchSocket("0.0.0.0", port)
    try:
        assert v4.getsockname() == ("0.0.0.0", port)
    finally:
        v4.close()


def outcome(fn: Callable[[], object]) -> tuple:
    """What a call did, comparable across backends."""
    try:
        return ("ok", fn())
    except OSError as exc:
        return ("err", type(exc).__name__, exc.errno)
    except Exception as exc:  # the class is what gets compared
        return ("err", type(exc).__name__)


@pytest.mark.parametrize(
    ("max_datagrams", "timeout"),
    [(0, 0), (257, 0), (-1, 0), (10**30, 0), ("3", 0), (2.0, 0), (1, -1.0), (1, float("nan")),
     (1, "soon"), (1, 0.0), (1, 0), (256, 0), (True, 0)],
)
def test_recv_arguments_checked_alike(sockets, max_datagrams, timeout):
    results = [outcome(lambda b=b: sockets(b, "127.0.0.1").recv_batch(max_datagrams, timeout))
               for b in (NATIVE, PYTHON)]
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("host", "port"),
    [("localhost", 0), ("127.0.0.01", 0), ("fe80::1%lo", 0), ("::1", 0), (1, 0),
     ("127.0.0.1", 70_000), ("127.0.0.1", -1), ("127.0.0.1", "500"), ("203.0.113.1", 0)],
)
def test_constructor_arguments_checked_alike(host, port):
    results = []
    for b in (NATIVE, PYTHON):
        res = outcome(lambda b=b: b.BatchSocket(host, port))
        if res[0] == "ok":
            res[1].close()
            res = ("ok",)
        results.append(res)
    assert results[0] == results[1]
    assert results[0][0] == ("ok" if host == "::1" else "err")


@pytest.mark.parametrize(
    "bad",
    [("localhost", 9), ("::1", 9), ("127.0.0.1", 70_000), ("127.0.0.1", "9"), (b"127.0.0.1", 9)],
)
def test_bad_destination_sends_nothing_alike(sockets, bad):
    """A bad address anywhere in the batch is rejected before any datagram leaves."""
    results = []
    for b in (NATIVE, PYTHON):
        tx, rx = sockets(b, "127.0.0.1"), sockets(b, "127.0.0.1")
        to = rx.getsockname()
        results.append(outcome(lambda tx=tx, to=to: tx.send_batch(
            [(b"first", to), (b"bad", bad), (b"last", to)])))
        assert rx.recv_batch(4, 0.02) == []
    assert results[0] == results[1]
    assert results[0][0] == "err"


def test_refused_first_datagram_raises_alike(sockets):
    results = [outcome(lambda b=b: sockets(b, "127.0.0.1").send_batch([(b"x", ("127.0.0.1", 0))]))
               for b in (NATIVE, PYTHON)]
    assert results[0] == results[1]
    assert results[0][0] == "err"


@pytest.mark.parametrize("host", HOSTS)
def test_native_and_python_give_equal_results(sockets, host):
    """The same script through each backend: the same datagrams, counts and empty batches."""
    def script(backend: ModuleType) -> list:
        a, b, c = (sockets(backend, host) for _ in range(3))
        names = {a.getsockname(): "a", b.getsockname(): "b", c.getsockname(): "c"}
        log: list = []
        out = [(bytes([i]) * (i * 1000 + 1), (b if i % 2 else c).getsockname())
               for i in range(20)]
        log.append(a.send_batch(out))
        log.append(b.send_batch([(b"back", a.getsockname())] * 5))
        time.sleep(0.02)
        for sock in (a, b, c, a):
            log.append([(d, names[src]) for d, src in sock.recv_batch(8, 0.2)])
        log.append([(d, names[src]) for d, src in c.recv_batch(8, 0)])
        return log

    native, python = script(NATIVE), script(PYTHON)
    assert native == python
    assert native[0] == 20
    assert [len(batch) for batch in native[2:]] == [5, 8, 8, 0, 2]


class _AlarmError(Exception):
    pass


def test_signal_handler_exception_interrupts_a_wait(io, sockets):
    """A signal whose handler raises ends a blocking receive with that exception."""
    rx = sockets(io, "127.0.0.1")

    def handler(signum, frame):
        raise _AlarmError

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        with pytest.raises(_AlarmError):
            rx.recv_batch(4, 5.0)
        assert time.monotonic() - start < 2.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_quiet_signal_does_not_cut_the_timeout_short(io, sockets):
    """A signal whose handler returns resumes the wait with the same deadline (PEP 475)."""
    rx = sockets(io, "127.0.0.1")
    seen: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.03)
        start = time.monotonic()
        assert rx.recv_batch(4, 0.2) == []
        elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen == [signal.SIGALRM]
    assert 0.18 <= elapsed < 1.0


def test_native_one_receiver_many_senders(sockets):
    """Natively, a second concurrent receiver is refused; sending while one waits works."""
    rx, tx = sockets(NATIVE, "127.0.0.1"), sockets(NATIVE, "127.0.0.1")
    result: list = []
    waiter = threading.Thread(target=lambda: result.extend(rx.recv_batch(4, 2.0)))
    waiter.start()
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="another thread is receiving"):
        rx.recv_batch(1, 0)
    assert rx.send_batch([(b"self", rx.getsockname())]) == 1
    waiter.join(2.0)
    assert result == [(b"self", rx.getsockname())]
    assert tx.recv_batch(1, 0) == []
