"""Steer IKE and ESP datagrams to the worker that owns their SA, in the kernel.

Several worker processes can share the IKE port (500) and the NAT-T port (4500) with
``SO_REUSEPORT``. The kernel then picks a socket per datagram by a hash of the 4-tuple, which
breaks when a NAT rebinds or the initiator floats from 500 to 4500: the next message of an SA
lands on a worker that does not hold it. A classic-BPF program attached with
``SO_ATTACH_REUSEPORT_CBPF`` picks the socket from the datagram instead:

- Each worker allocates its SPIs (IKE responder SPIs and inbound ESP SPIs) with its index in
  the first (most significant) byte: ``tag_spi``.
- IKE message: the first byte of the SPI the SeGW allocated, modulo the worker count. That
  is the responder SPI when the sender is the SA's original initiator (the I flag, RFC 7296
  §3.1) and the initiator SPI otherwise: an IKE SA that the SeGW itself started by rekeying
  (§2.18) carries the SeGW's SPI as SPIi. An IKE_SA_INIT request has a zero responder SPI;
  it goes by the initiator's SPI, so its retransmissions and COOKIE retry reach the same
  worker, which then hands out a responder SPI carrying its own index, and every later
  message follows it.
- On the NAT-T port a datagram starting with four zero bytes (the non-ESP marker, RFC 3948)
  carries IKE after the marker; anything else is ESP, whose first four bytes are the SPI.
- Anything shorter than the header it claims to be (NAT keepalives, junk) returns an index
  past the group, so the kernel falls back to its hash: junk is spread, not piled on one worker.

The program returns an index into the reuseport group, which is the order the sockets joined
it; worker *i*'s socket must be the *i*-th bound. The kernel runs the program with the UDP
payload at offset 0.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

#: ``SO_ATTACH_REUSEPORT_CBPF`` from <asm-generic/socket.h> (Python's socket module lacks it).
SO_ATTACH_REUSEPORT_CBPF = 51
#: Program result the kernel treats as "no choice": it falls back to its 4-tuple hash.
NO_CHOICE = 0xFFFF_FFFF
#: IKE header length (RFC 7296 §3.1); responder SPI at offset 8, flags at 19.
_IKE_HEADER = 28
_FLAGS, _INITIATOR = 19, 0x08
#: ESP header (SPI + sequence number) that must precede any ESP payload.
_ESP_HEADER = 8
MAX_WORKERS = 256

# Classic BPF opcodes (<linux/filter.h>).
_LD_W_ABS, _LD_B_ABS, _LD_W_LEN = 0x20, 0x30, 0x80
_JEQ_K, _JGE_K, _JSET_K = 0x15, 0x35, 0x45
_MOD_K = 0x94
_RET_K, _RET_A = 0x06, 0x16

Insn = tuple[int, int, int, int]  # code, jt, jf, k


class _Asm:
    """A forward-only assembler: jumps name labels, resolved to relative offsets."""

    def __init__(self) -> None:
        self._code: list[tuple[int, str | None, str | None, int]] = []
        self._labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def op(self, code: int, k: int = 0, jt: str | None = None, jf: str | None = None) -> None:
        self._code.append((code, jt, jf, k))

    def assemble(self) -> list[Insn]:
        out = []
        for pc, (code, jt, jf, k) in enumerate(self._code):
            offs = [0 if lab is None else self._labels[lab] - pc - 1 for lab in (jt, jf)]
            if any(not 0 <= o < 256 for o in offs):
                raise ValueError("cBPF jumps must go forward by less than 256")
            out.append((code, offs[0], offs[1], k))
        return out


def steering_program(workers: int, *, natt: bool) -> list[Insn]:
    """The cBPF program for one port's reuseport group: ``natt`` for port 4500."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1..{MAX_WORKERS}")
    a = _Asm()
    ike = 4 if natt else 0
    if natt:
        a.op(_LD_W_LEN)
        a.op(_JGE_K, 4, jf="fallback")
        a.op(_LD_W_ABS, 0)
        a.op(_JEQ_K, 0, jt="ike", jf="esp")
        a.label("esp")
        a.op(_LD_W_LEN)
        a.op(_JGE_K, _ESP_HEADER, jf="fallback")
        a.op(_LD_B_ABS, 0)
        a.op(_JEQ_K, 0, jt="pick", jf="pick")  # cBPF's jump-always, by label
        a.label("ike")
    a.op(_LD_W_LEN)
    a.op(_JGE_K, ike + _IKE_HEADER, jf="fallback")
    a.op(_LD_B_ABS, ike + _FLAGS)
    a.op(_JSET_K, _INITIATOR, jf="spii")  # from the original responder: our SPI is SPIi
    a.op(_LD_W_ABS, ike + 8)
    a.op(_JEQ_K, 0, jf="spir")
    a.op(_LD_W_ABS, ike + 12)
    a.op(_JEQ_K, 0, jt="spii", jf="spir")
    a.label("spir")
    a.op(_LD_B_ABS, ike + 8)
    a.op(_JEQ_K, 0, jt="pick", jf="pick")
    a.label("spii")
    a.op(_LD_B_ABS, ike)
    a.label("pick")
    a.op(_MOD_K, workers)
    a.op(_RET_A)
    a.label("fallback")
    a.op(_RET_K, NO_CHOICE)
    return a.assemble()


def attach(sock: socket.socket, program: Sequence[Insn]) -> None:
    """Attach ``program`` to the reuseport group ``sock`` belongs to (any member will do)."""
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def open_groups(hosts: Sequence[str], ports: Sequence[int], workers: int, *,
                buffer_size: int | None = None
                ) -> tuple[dict[tuple[str, int], list[socket.socket]], list[int]]:
    """For each of ``hosts`` and ``ports`` (IKE port, then NAT-T port): ``workers`` UDP
    sockets in one reuseport group with the steering program attached, socket *i* for worker
    *i*. A port of 0 becomes one free port, the same for every host. Returns the groups by
    (host, port) and the bound port numbers in the order asked.

    Each port is first bound once without ``SO_REUSEPORT``: a port in use fails as it would
    for one process, instead of the group quietly sharing the port with another process.
    """
    from .udp import SOCKET_BUFFER, bind_error, family_of, size_buffers

    groups: dict[tuple[str, int], list[socket.socket]] = {}
    bound: list[int] = []

    def member(host: str, port: int) -> socket.socket:
        sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        try:
            if family_of(host) == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise bind_error(exc, host, port) from None
        return sock

    try:
        for i, port in enumerate(ports):
            natt = len(ports) > 1 and i == len(ports) - 1
            for host in hosts:
                want = bound[i] if i < len(bound) else port
                with socket.socket(family_of(host), socket.SOCK_DGRAM) as probe:
                    if family_of(host) == socket.AF_INET6:
                        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    try:
                        probe.bind((host, want))
                    except OSError as exc:
                        raise bind_error(exc, host, want) from None
                    want = probe.getsockname()[1]
                if i == len(bound):
                    bound.append(want)
                group = groups[(host, want)] = []
                for _ in range(workers):
                    sock = member(host, want)
                    size_buffers(sock, SOCKET_BUFFER if buffer_size is None else buffer_size)
                    group.append(sock)
                attach(group[0], steering_program(workers, natt=natt))
    except BaseException:
        for group in groups.values():
            for sock in group:
                sock.close()
        raise
    return groups, bound


def tag_spi(spi: bytes, worker: int) -> bytes:
    """``spi`` (IKE: 8 bytes, ESP: 4) with ``worker`` in its first byte, as the program reads it.

    A worker index of 0 with an all-zero rest would make a zero SPI, which RFC 7296 and
    RFC 4303 forbid; the caller draws a new random SPI then.
    """
    if not 0 <= worker < MAX_WORKERS:
        raise ValueError(f"worker must be 0..{MAX_WORKERS - 1}")
    return bytes([worker]) + spi[1:]


def worker_for(datagram: bytes, workers: int, *, natt: bool) -> int | None:
    """Which worker the program picks for ``datagram`` (None: the kernel's hash decides).

    The program's meaning in Python, for tests and for a worker that wants to check a datagram
    reached its owner.
    """
    if natt:
        if len(datagram) < 4:
            return None
        if datagram[:4] != b"\0\0\0\0":
            return datagram[0] % workers if len(datagram) >= _ESP_HEADER else None
        datagram = datagram[4:]
    if len(datagram) < _IKE_HEADER:
        return None
    ours_is_r = datagram[_FLAGS] & _INITIATOR and any(datagram[8:16])
    spi = datagram[8:16] if ours_is_r else datagram[0:8]
    return spi[0] % workers
