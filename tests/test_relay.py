"""The userspace NAPT relay with real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from ikecp.net.relay import Impairment, NatRelay, Route, relay_in_thread
from ikecp.testing.facility import require

LO = "127.0.0.1"


def udp(host: str = LO, family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((host, 0))
    s.settimeout(2.0)
    return s


@pytest.fixture
def socks() -> Iterator[Callable[..., socket.socket]]:
    made: list[socket.socket] = []

    def make(host: str = LO, family: int = socket.AF_INET) -> socket.socket:
        s = udp(host, family)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def addr(s: socket.socket) -> tuple[str, int]:
    a = s.getsockname()
    return (a[0], a[1])


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_translation_replies_and_two_ports_per_fap(socks):
    seg500, seg4500 = socks(), socks()
    fap500, fap4500 = socks("127.0.0.2"), socks("127.0.0.2")
    routes = [((LO, 0), addr(seg500)), ((LO, 0), addr(seg4500))]
    with relay_in_thread(routes) as r:
        l500, l4500 = r.listen_addrs
        fap500.sendto(b"init", l500)
        data, seen500 = seg500.recvfrom(100)
        assert data == b"init"
        fap4500.sendto(b"\0\0\0\0auth", l4500)
        data, seen4500 = seg4500.recvfrom(100)
        assert data == b"\0\0\0\0auth"

        table = r.mappings()
        assert table == {addr(fap500): seen500, addr(fap4500): seen4500}
        # A real NAPT: each inside source port gets its own outside port.
        assert seen500[0] == LO and seen4500[0] == LO
        assert seen500[1] != seen4500[1]
        assert seen500[1] != addr(fap500)[1]

        # Replies come back to the inside source, from the address it sent to.
        seg500.sendto(b"resp", seen500)
        assert fap500.recvfrom(100) == (b"resp", l500)
        seg4500.sendto(b"resp2", seen4500)
        assert fap4500.recvfrom(100) == (b"resp2", l4500)

        # Endpoint-independent mapping: same inside source toward the other target, same port.
        fap500.sendto(b"x", l4500)
        assert seg4500.recvfrom(100) == (b"x", seen500)
        seg4500.sendto(b"y", seen500)
        assert fap500.recvfrom(100) == (b"y", l4500)

        rows = r.mapping_rows()
        assert {row.inside: row.outside for row in rows} == table
        assert all(row.last_used >= row.created for row in rows)
        c = r.counters()
        assert (c.received_up, c.sent_up, c.received_down, c.sent_down) == (3, 3, 3, 3)
        assert c.mappings_created == 2


def test_only_targets_may_answer(socks):
    seg, fap, stranger = socks(), socks(), socks()
    with relay_in_thread([((LO, 0), addr(seg))]) as r:
        fap.sendto(b"a", r.listen_addrs[0])
        _, outside = seg.recvfrom(10)
        stranger.sendto(b"intruder", outside)
        seg.sendto(b"ok", outside)
        assert fap.recvfrom(100)[0] == b"ok"
        wait_until(lambda: r.counters().filtered == 1)
        fap.settimeout(0.2)
        with pytest.raises(TimeoutError):
            fap.recvfrom(100)


def test_idle_timeout_expires_mapping(socks):
    seg, fap = socks(), socks()
    with relay_in_thread([((LO, 0), addr(seg))], idle_timeout=0.3) as r:
        fap.sendto(b"a", r.listen_addrs[0])
        _, outside = seg.recvfrom(10)
        assert r.mappings() == {addr(fap): outside}
        wait_until(lambda: r.counters().mappings_expired == 1, timeout=2.0)
        assert r.mappings() == {}
        # The old outside port is closed: replies to it go nowhere.
        seg.sendto(b"late", outside)
        fap.settimeout(0.2)
        with pytest.raises(TimeoutError):
            fap.recvfrom(100)
        # Traffic makes a fresh mapping.
        fap.settimeout(2.0)
        fap.sendto(b"b", r.listen_addrs[0])
        _, again = seg.recvfrom(10)
        assert r.mappings() == {addr(fap): again}
        assert r.counters().mappings_created == 2


def test_traffic_keeps_mapping_alive(socks):
    seg, fap = socks(), socks()
    with relay_in_thread([((LO, 0), addr(seg))], idle_timeout=0.4) as r:
        fap.sendto(b"a", r.listen_addrs[0])
        _, outside = seg.recvfrom(10)
        for _ in range(6):  # 0.6 s of keepalives, each well inside the timeout
            time.sleep(0.1)
            seg.sendto(b"\xff", outside)
            assert fap.recvfrom(10)[0] == b"\xff"
        assert r.mappings() == {addr(fap): outside}
        assert r.counters().mappings_expired == 0


def test_rebind_moves_mapping_to_new_port(socks):
    seg, fap = socks(), socks()
    with relay_in_thread([((LO, 0), addr(seg))]) as r:
        fap.sendto(b"a", r.listen_addrs[0])
        _, old = seg.recvfrom(10)
        new = r.rebind(addr(fap))
        assert new != old and new[0] == LO
        assert r.mappings() == {addr(fap): new}
        fap.sendto(b"b", r.listen_addrs[0])
        assert seg.recvfrom(10) == (b"b", new)
        seg.sendto(b"to-old", old)
        seg.sendto(b"to-new", new)
        assert fap.recvfrom(100)[0] == b"to-new"
        fap.settimeout(0.2)
        with pytest.raises(TimeoutError):
            fap.recvfrom(100)
        assert r.counters().rebinds == 1
        with pytest.raises(KeyError):
            r.rebind(("127.0.0.9", 9))


def test_mapping_table_is_bounded(socks):
    seg = socks()
    faps = [socks() for _ in range(3)]
    with relay_in_thread([((LO, 0), addr(seg))], max_mappings=2) as r:
        for f in faps:
            f.sendto(b"hi", r.listen_addrs[0])
        assert seg.recvfrom(10)[0] == b"hi"
        assert seg.recvfrom(10)[0] == b"hi"
        wait_until(lambda: r.counters().refused == 1)
        assert set(r.mappings()) == {addr(faps[0]), addr(faps[1])}


def test_hostile_sizes_pass_through_without_harm(socks):
    seg, fap = socks(), socks()
    big = bytes(range(256)) * 255 + b"\x01" * 227  # 65507: the largest IPv4 UDP payload
    assert len(big) == 65507
    with relay_in_thread([((LO, 0), addr(seg))]) as r:
        listen = r.listen_addrs[0]
        fap.sendto(b"", listen)
        data, outside = seg.recvfrom(70000)
        assert data == b""
        fap.sendto(big, listen)
        assert seg.recvfrom(70000) == (big, outside)
        seg.sendto(big, outside)
        assert fap.recvfrom(70000) == (big, listen)
        seg.sendto(b"", outside)
        assert fap.recvfrom(70000) == (b"", listen)
        fap.sendto(b"still alive", listen)
        assert seg.recvfrom(100)[0] == b"still alive"
        assert r.running


def run_impaired(socks, imp: Impairment, n: int = 1000) -> tuple[object, list[int]]:
    """Send ``n`` numbered datagrams through an impaired relay; return counters and arrivals."""
    seg, fap = socks(), socks()
    with relay_in_thread([((LO, 0), addr(seg))], impairment=imp) as r:
        listen = r.listen_addrs[0]
        got: list[int] = []
        sent = 0
        for burst in range(0, n, 50):  # bursts small enough for the socket buffers
            for i in range(burst, min(burst + 50, n)):
                fap.sendto(struct.pack("!I", i), listen)
                sent += 1
            wait_until(lambda s=sent: r.counters().received_up == s)
        # Everything the relay sent must arrive (held ones after reorder_hold).
        wait_until(lambda: r.counters().sent_up == r.counters().received_up
                   - r.counters().dropped + r.counters().duplicated)
        c = r.counters()
        seg.settimeout(1.0)
        while len(got) < c.sent_up:
            got.append(struct.unpack("!I", seg.recvfrom(16)[0])[0])
        seg.settimeout(0.1)
        with pytest.raises(TimeoutError):
            seg.recvfrom(16)
        return c, got


def test_impairment_fractions_for_fixed_seed(socks):
    n = 1000
    imp = Impairment(drop=0.1, duplicate=0.05, reorder=0.1, seed=7, reorder_hold=0.02)
    c, got = run_impaired(socks, imp, n)
    assert c.received_up == n
    # Within ±3 sigma of the binomial for n=1000.
    assert 70 <= c.dropped <= 130
    assert 25 <= c.duplicated <= 75
    assert 60 <= c.reordered <= 130
    distinct = set(got)
    assert len(distinct) == n - c.dropped
    assert len(got) == n - c.dropped + c.duplicated
    # Each reordered datagram arrives after a later one; nothing else is out of order.
    late, highest = set(), -1
    for seq in got:
        if seq < highest:
            late.add(seq)
        highest = max(highest, seq)
    assert len(late) == c.reordered

    # Same seed, same decisions: the same datagrams are lost.
    c2, got2 = run_impaired(socks, imp, n)
    assert (c2.dropped, c2.duplicated, c2.reordered) == (c.dropped, c.duplicated, c.reordered)
    assert set(got2) == distinct
    # Another seed, other decisions.
    _, got3 = run_impaired(socks, Impairment(drop=0.1, seed=8), n)
    assert set(got3) != distinct


def test_impairment_validation():
    with pytest.raises(ValueError):
        Impairment(drop=1.5)
    with pytest.raises(ValueError):
        NatRelay([])
    with pytest.raises(ValueError):
        NatRelay([((LO, 0), (LO, 9)), ((LO, 0), (LO, 9))])


def test_lifetime_stops_relay_by_itself(socks):
    seg, fap = socks(), socks()
    with relay_in_thread([((LO, 0), addr(seg))], lifetime=0.3) as r:
        listen = r.listen_addrs[0]
        fap.sendto(b"a", listen)
        assert seg.recvfrom(10)[0] == b"a"
        wait_until(lambda: not r.running, timeout=3.0)
        assert r.mappings() == {}
        fap.sendto(b"b", listen)
        seg.settimeout(0.2)
        with pytest.raises(TimeoutError):
            seg.recvfrom(10)


def test_asyncio_api_and_ipv6(socks):
    require(None if socket.has_ipv6 else "no IPv6 on this host")
    try:
        seg, fap = socks("::1", socket.AF_INET6), socks("::1", socket.AF_INET6)
    except OSError as exc:
        require(f"::1 unavailable: {exc}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        relay = NatRelay([Route(("::1", 0), addr(seg))], outside_host="::1")
        async with relay:
            await loop.run_in_executor(None, fap.sendto, b"v6", relay.listen_addrs[0])
            data, outside = await loop.run_in_executor(None, seg.recvfrom, 10)
            assert data == b"v6"
            assert relay.mappings() == {addr(fap): (outside[0], outside[1])}
            await loop.run_in_executor(None, seg.sendto, b"back", outside)
            data, frm = await loop.run_in_executor(None, fap.recvfrom, 10)
            assert data == b"back" and frm[:2] == relay.listen_addrs[0]
        assert not relay.running
        short = NatRelay([Route(("::1", 0), addr(seg))], outside_host="::1", lifetime=0.2)
        await short.start()
        await asyncio.wait_for(short.wait_stopped(), 3.0)  # stops by itself
        assert not short.running

    asyncio.run(main())


def test_thread_setup_runs_on_relay_thread_and_failure_is_reported(socks):
    seg, fap = socks(), socks()
    seen = []
    with relay_in_thread([((LO, 0), addr(seg))],
                         thread_setup=lambda: seen.append(threading.current_thread().name)) as r:
        fap.sendto(b"a", r.listen_addrs[0])
        assert seg.recvfrom(10)[0] == b"a"
    assert seen == ["ikecp-relay"]

    def broken() -> None:
        raise PermissionError("setns refused")

    with pytest.raises(RuntimeError, match="setup failed") as err, \
            relay_in_thread([((LO, 0), addr(seg))], thread_setup=broken):
        pass
    assert isinstance(err.value.__cause__, PermissionError)


def test_many_faps_get_distinct_outside_ports(socks):
    seg = socks()
    faps = [socks() for _ in range(100)]
    with relay_in_thread([((LO, 0), addr(seg))]) as r:
        for i, f in enumerate(faps):
            f.sendto(struct.pack("!I", i), r.listen_addrs[0])
        seen = {}
        for _ in faps:
            data, outside = seg.recvfrom(10)
            seen[struct.unpack("!I", data)[0]] = outside
        table = r.mappings()
        assert len(set(table.values())) == len(faps)
        assert {table[addr(f)] for f in faps} == set(seen.values())
        assert all(seen[i] == table[addr(f)] for i, f in enumerate(faps))
        for i in range(len(faps)):  # each reply reaches its own FAP only
            seg.sendto(struct.pack("!I", i), seen[i])
        for i, f in enumerate(faps):
            assert struct.unpack("!I", f.recvfrom(10)[0])[0] == i
