"""Pure-Python twin of the native ``BatchSocket``: the same batches, one system call each.

The native class moves whole batches with ``recvmmsg``/``sendmmsg`` with the GIL released;
this one loops over ``recvfrom``/``sendto`` on a non-blocking socket and waits with
``select``. Same constructor, methods, results and exception classes, so the differential
tests can hold them to each other and platforms without the native class still work.
"""

from __future__ import annotations

import errno
import math
import operator
import select
import socket
import time
from collections.abc import Iterable
from functools import lru_cache
from types import TracebackType

#: Most datagrams one ``recv_batch`` call returns (the native class's scratch bound).
MAX_BATCH = 256
#: Receive buffer size: room for any UDP payload (65,507 octets over IPv4, 65,527 over IPv6).
_MAX_DATAGRAM = 65_535


@lru_cache(maxsize=1024)
def _family_of(host: str) -> int:
    """AF_INET or AF_INET6 for a numeric address; ValueError for anything else (no DNS)."""
    if not isinstance(host, str):
        raise TypeError(f"host must be str, not {type(host).__name__}")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    raise ValueError(f"{host!r} is not a numeric IP address")


def _closed() -> OSError:
    return OSError(errno.EBADF, "BatchSocket is closed")


class BatchSocket:
    """UDP socket with batched receive and send; owns its descriptor (see ``close``)."""

    MAX_BATCH = MAX_BATCH

    def __init__(self, host: str, port: int) -> None:
        family = _family_of(host)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:  # one family per socket, as the native class
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._family = family

    def fileno(self) -> int:
        """The descriptor for readiness polling (-1 once closed); still owned by this object."""
        return self._sock.fileno()

    def getsockname(self) -> tuple[str, int]:
        if self._sock.fileno() < 0:
            raise _closed()
        host, port = self._sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Closes the socket; later calls raise ``OSError(EBADF)``. Closing twice is harmless."""
        self._sock.close()

    def __enter__(self) -> BatchSocket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def recv_batch(self, max_datagrams: int,
                   timeout: float | None = None) -> list[tuple[bytes, tuple[str, int]]]:
        """Up to ``max_datagrams`` datagrams with their (host, port) sources, waiting at most
        ``timeout`` seconds (None: forever) for the first; [] on timeout."""
        count = operator.index(max_datagrams)
        if not 1 <= count <= MAX_BATCH:
            raise ValueError(f"max_datagrams must be in 1..={MAX_BATCH}")
        deadline = _deadline(timeout)
        sock = self._sock
        if sock.fileno() < 0:
            raise _closed()
        out: list[tuple[bytes, tuple[str, int]]] = []
        while True:
            try:
                data, src = sock.recvfrom(_MAX_DATAGRAM)
            except BlockingIOError:
                if out:
                    return out
                if deadline is None:
                    select.select([sock], [], [])
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return out
                select.select([sock], [], [], left)
                continue
            out.append((data, (src[0], src[1])))
            if len(out) == count:
                return out

    def send_batch(self, datagrams: Iterable[tuple[bytes, tuple[str, int]]]) -> int:
        """Sends each (data, (host, port)) to its own destination, in order; returns how many
        were sent. Every address is checked before anything is sent. If the kernel refuses
        datagram k, the first k are sent and k is returned; if it refuses the first, OSError."""
        sock = self._sock
        if sock.fileno() < 0:
            raise _closed()
        batch = list(datagrams)
        for _data, (host, port) in batch:
            if _family_of(host) != self._family:
                raise ValueError(f"{host!r} is not of the socket's address family")
            if not 0 <= operator.index(port) <= 0xFFFF:
                raise OverflowError("port must be 0-65535")
        sent = 0
        for data, addr in batch:
            while True:
                try:
                    sock.sendto(data, addr)
                    break
                except BlockingIOError:
                    select.select([], [sock], [])
                except OSError:
                    if sent:
                        return sent
                    raise
            sent += 1
        return sent


def _deadline(timeout: float | None) -> float | None:
    """A timeout in seconds as a ``time.monotonic`` deadline; None or infinity: forever."""
    if timeout is None:
        return None
    if isinstance(timeout, (str, bytes, bytearray)):  # float() would parse these
        raise TypeError("timeout must be a number or None")
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError("timeout must be a non-negative number or None")
    if math.isinf(t):
        return None
    return time.monotonic() + t
