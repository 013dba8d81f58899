"""Packet captures in a test namespace, decoded by tshark, so tests can check the wire itself.

``Capture`` records every frame of one interface (optionally inside a network namespace) into a
pcap file from a raw AF_PACKET socket on a thread: the socket is bound before ``start()``
returns and drained on ``stop()``, so nothing sent in between is missed. (dumpcap was tried
first: on this kind of machine any capture filter let no packet through, and frames still in
the kernel's TPACKET block when SIGINT arrived, up to about a second's worth, were lost.)
``decode`` turns the file into rows of tshark fields, ``pdml`` into tshark's dissection
trees; ``malformed`` counts frames that a dissector flagged. Extra tshark options (``-o``
preferences such as an IKEv2 decryption table) pass through ``options``.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .netns import call_in_netns

_ETH_P_ALL = 0x0003
_LINKTYPE_ETHERNET = 1
_SNAPLEN = 262144


def probe() -> str | None:
    """Why captures cannot be decoded here, or None."""
    if shutil.which("tshark") is None:
        return "tshark missing (run .ci/install-peers.sh)"
    if not hasattr(socket, "AF_PACKET"):
        return "no AF_PACKET sockets on this platform"
    return None


def _packet_socket(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    try:
        sock.bind((iface, 0))
        sock.settimeout(0.05)
    except BaseException:
        sock.close()
        raise
    return sock


class Capture:
    """Every frame on ``iface`` into the pcap file ``path``; a context manager."""

    def __init__(self, path: Path, iface: str = "eth0", *, netns: str | None = None,
                 max_frames: int = 100_000) -> None:
        self.path = Path(path)
        self.frames = 0
        self._iface = iface
        self._netns = netns
        self._max = max_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    def start(self) -> Capture:
        if self._netns is None:
            self._sock = _packet_socket(self._iface)
        else:
            self._sock = call_in_netns(self._netns, _packet_socket, self._iface, timeout=10)
        out = open(self.path, "wb")  # noqa: SIM115 - closed by the capture thread
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _SNAPLEN,
                              _LINKTYPE_ETHERNET))
        self._thread = threading.Thread(target=self._run, args=(self._sock, out),
                                        name="ikecp-capture", daemon=True)
        self._thread.start()
        return self

    def _run(self, sock: socket.socket, out: BinaryIO) -> None:
        try:
            with out:
                while self.frames < self._max:
                    try:
                        frame = sock.recv(_SNAPLEN)
                    except TimeoutError:
                        if self._stop.is_set():
                            break  # nothing left queued
                        continue
                    now = time.time()
                    sec = int(now)
                    out.write(struct.pack("<IIII", sec, int((now - sec) * 1e6),
                                          len(frame), len(frame)))
                    out.write(frame)
                    self.frames += 1
        except BaseException as exc:
            self._error = exc

    def stop(self, timeout: float = 5.0) -> None:
        """Drain what the socket still holds, close the file; raise if capturing failed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._error is not None:
            raise RuntimeError("capture failed") from self._error

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tshark(path: Path, args: Sequence[str], options: Sequence[str], timeout: float) -> str:
    argv = ["tshark", "-n", "-r", str(path), *options, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"tshark failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def ike_decode_as(natt_ports: Sequence[int] = (), ike_ports: Sequence[int] = ()) -> list[str]:
    """tshark options that dissect NAT-translated ports as IKE.

    tshark picks a UDP dissector by the lower port number, and a NAPT may choose any source
    port (``masquerade random`` has handed out 393): a translated port that happens to be
    well-known (53, 123, 161…) would be dissected as DNS, NTP, SNMP… so name them.
    ``natt_ports`` carry the non-ESP marker (the 4500 flow), ``ike_ports`` plain IKE (500).
    """
    opts = []
    for port in natt_ports:
        opts += ["-d", f"udp.port=={port},udpencap"]
    for port in ike_ports:
        opts += ["-d", f"udp.port=={port},isakmp"]
    return opts


def decode(path: Path, fields: Sequence[str], *, display_filter: str = "",
           options: Sequence[str] = (), timeout: float = 30.0) -> list[dict[str, Any]]:
    """One dict per frame: field -> list of values (a field may occur several times)."""
    args = ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        args += ["-e", f]
    if display_filter:
        args += ["-Y", display_filter]
    rows = []
    for line in _tshark(path, args, options, timeout).splitlines():
        cols = line.split("\t")
        rows.append({f: (c.split("|") if c else []) for f, c in zip(fields, cols, strict=False)})
    return rows


def pdml(path: Path, *, display_filter: str = "", options: Sequence[str] = (),
         timeout: float = 60.0) -> list[ET.Element]:
    """tshark's PDML ``<packet>`` element of every frame, for checks on nested fields."""
    args = ["-T", "pdml"] + (["-Y", display_filter] if display_filter else [])
    return ET.fromstring(_tshark(path, args, options, timeout)).findall("packet")


def malformed(path: Path, *, options: Sequence[str] = (), timeout: float = 30.0) -> int:
    """How many frames tshark flags as malformed (with these options)."""
    out = _tshark(path, ["-Y", "_ws.malformed || _ws.expert.severity == error"], options,
                  timeout)
    return len(out.splitlines())
