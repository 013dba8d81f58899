"""Hostile IKE traffic for tests and ``benches/hostile.py``: the datagrams a SeGW must shrug
off cheaply, and a flood that replays one IKE_SA_INIT (with a COOKIE when the responder asks
for one) from thousands of source ports of one host. Loopback only: every socket here is
bound to a 127.0.0.0/8 address and sends to the responder given, which must be on loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import socket
import struct
import time
from dataclasses import dataclass, replace

from ikecp.cp import CpRegistry
from ikecp.engine import Identity, PskAuthenticator, Settings
from ikecp.message import Notify, VendorId
from ikecp.roles.dispatch import Dispatcher

#: The IKE header of an INFORMATIONAL request from the initiator, message ID 7: what an old
#: FAP sends to a restarted SeGW (its SPIs are unknown there).
_INFO_REQUEST = struct.pack("!BBBBI", 46, 0x20, 37, 0x08, 7)


def initiator_settings(psk: bytes = b"hostile traffic") -> Settings:
    """A plain initiator: its IKE_SA_INIT is what a real FAP sends."""
    return Settings(local_id=Identity.fqdn("hostile.test"), auth=PskAuthenticator(psk),
                    cp=CpRegistry())


def fresh_init(source: str = "127.0.0.66", target: tuple[str, int] = ("127.0.0.1", 500)
               ) -> tuple[Dispatcher, bytes]:
    """A new IKE_SA_INIT request (new SPIi, nonce, KE) and the dispatcher that made it."""
    d = Dispatcher(None, source)
    d.connect(initiator_settings(), target, 0.0, local=(source, 500))
    return d, d.datagrams_to_send()[0].data


def with_payloads(init: bytes, extra: list, backend: object) -> bytes:
    """``init`` with ``extra`` payloads appended (re-encoded, lengths right)."""
    msg = backend.decode_message(init)  # type: ignore[attr-defined]
    return backend.encode_message(  # type: ignore[attr-defined]
        replace(msg, payloads=(*msg.payloads, *extra)))


def oversized_init(backend: object, size: int = 60_000) -> bytes:
    """A valid IKE_SA_INIT grown to ``size`` octets by one Vendor ID payload."""
    init = fresh_init()[1]
    return with_payloads(init, [VendorId(b"\x00" * (size - len(init) - 4))], backend)


def many_notify_init(backend: object, count: int = 8163) -> bytes:
    """A valid IKE_SA_INIT followed by ``count`` empty status notifies (8,163 fit 64 KiB)."""
    return with_payloads(fresh_init()[1], [Notify(0, 40000)] * count, backend)


def unknown_spi_request() -> bytes:
    """An INFORMATIONAL request with random SPIs and an SK payload of 64 random octets."""
    body = struct.pack("!BBH", 0, 0, 68) + os.urandom(64)
    return os.urandom(16) + _INFO_REQUEST + struct.pack("!I", 28 + len(body)) + body


def bad_icv(request: bytes) -> bytes:
    """``request`` (an SK-protected message) with its last ICV octet flipped."""
    return request[:-1] + bytes((request[-1] ^ 0x01,))


@dataclass
class FloodResult:
    sent: int = 0
    ports: int = 0
    cookie: bool = False    # the replayed request carries a COOKIE the responder gave out
    seconds: float = 0.0


class CookieReplayFlood:
    """One host (``source``) asks ``target`` for IKE_SA_INITs until it is asked for a COOKIE
    (at most ``prime`` tries), then replays that one request, cookie included, from ``ports``
    source ports, round after round. Without a COOKIE demand it replays a plain request."""

    def __init__(self, target: tuple[str, int], source: str = "127.0.0.66", *,
                 ports: int = 2000, prime: int = 40) -> None:
        for host in (target[0], source):
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError(f"{host}: loopback only")
        self.target, self.source, self.ports, self.prime = target, source, ports, prime
        self.result = FloodResult()
        self.replay = b""

    def start(self) -> None:
        """Get the datagram to replay (blocks at most ~2 s per try)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.source, 0))
            sock.settimeout(2.0)
            local = (self.source, sock.getsockname()[1])
            d = Dispatcher(None, self.source)
            for _ in range(self.prime):
                d.connect(initiator_settings(), self.target, 0.0, local=local)
                (first,) = d.datagrams_to_send()
                self.replay = first.data
                sock.sendto(first.data, self.target)
                try:
                    answer = sock.recv(65535)
                except TimeoutError:
                    continue
                d.receive(answer, local[1], self.target, 0.0)
                again = d.datagrams_to_send()
                if again and again[0].data[18] == 34:  # IKE_SA_INIT again: with the cookie
                    self.replay, self.result.cookie = again[0].data, True
                    return

    def run(self, seconds: float, rate: float = 5000.0, max_datagrams: int = 1_000_000
            ) -> FloodResult:
        """Replay for ``seconds`` at about ``rate`` datagrams/s (bounded by both limits)."""
        assert self.replay, "start() first"
        socks = []
        sel = selectors.DefaultSelector()
        try:
            for _ in range(self.ports):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.bind((self.source, 0))
                sel.register(s, selectors.EVENT_READ)
                socks.append(s)
            self.result.ports = len(socks)
            start = time.monotonic()
            end, sent, i = start + seconds, 0, 0
            while sent < max_datagrams:
                now = time.monotonic()
                if now >= end:
                    break
                due = int((now - start) * rate) - sent
                for _ in range(min(due, 512)):
                    try:
                        socks[i].sendto(self.replay, self.target)
                        sent += 1
                    except OSError:
                        pass
                    i = (i + 1) % len(socks)
                for key, _ in sel.select(0):  # read and forget the answers
                    with contextlib.suppress(OSError):
                        key.fileobj.recv(65535)  # type: ignore[union-attr]
                time.sleep(0.002)
            self.result.sent += sent
            self.result.seconds = time.monotonic() - start
            return self.result
        finally:
            sel.close()
            for s in socks:
                s.close()


__all__ = ["CookieReplayFlood", "FloodResult", "bad_icv", "fresh_init", "initiator_settings",
           "many_notify_init", "oversized_init", "unknown_spi_request", "with_payloads"]
