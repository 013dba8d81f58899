"""A femtocell behind a kernel NAPT, in three network namespaces, for end-to-end tests.

::

    fap 100.64.0.2/24 --veth-- 100.64.0.1 rtr 198.51.100.1/24 --veth-- 198.51.100.10 segw
                                        nftables: masquerade random (oif = operator side)

The Linux kernel does the translation a home router does: the SeGW sees the FAP as
198.51.100.1:<random port>, the value EXTERNAL_SOURCE_IP4_NAT_INFO must carry. The segw
namespace has no route to 100.64.0.0/10, so nothing reaches the FAP without the NAT.

Names carry the creating process id and a random tag (``ikecp-<pid>-<tag>-<role>``), so parallel
runs never collide and namespaces left by a crashed run are found and removed by the next one.
Code runs inside a namespace either as a process (``popen``/``run_cmd``, via ``ip netns exec``)
or as a Python callable on a thread that has joined the namespace (``call``, ``socket``):
sockets keep the namespace they were created in, so a test can drive sockets of all three
namespaces from one thread. Needs root, iproute2 and nftables.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")

FAP_ADDR = "100.64.0.2"
RTR_INSIDE_ADDR = "100.64.0.1"
RTR_OUTSIDE_ADDR = "198.51.100.1"
SEGW_ADDR = "198.51.100.10"
ROLES = ("fap", "rtr", "segw")

PREFIX = "ikecp-"
_NAME_RE = re.compile(r"^ikecp-(\d+)-[0-9a-f]{6}-(fap|rtr|segw)$")
_NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_CMD_TIMEOUT = 10.0


def probe() -> str | None:
    """Why this machine cannot build the topology, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not found (install iproute2 / nftables)"
    if not Path("/proc/self/ns/net").exists():
        return "kernel without network namespaces"
    return None


def rebind_probe() -> str | None:
    """Why ``NatTopology.rebind`` cannot work here (on top of ``probe``), or None."""
    if shutil.which("conntrack") is None:
        return "conntrack not found (install conntrack; .ci/install-peers.sh does)"
    return None


def _ip(*args: str, input_text: str | None = None) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                   input=input_text, timeout=_CMD_TIMEOUT)


def _netns_pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                         timeout=_CMD_TIMEOUT)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def _kill_and_delete(name: str) -> None:
    """Kill what still runs in ``name`` (processes this module started there), then delete it."""
    for pid in _netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=_CMD_TIMEOUT)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (owners of stale namespaces and peer dirs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete namespaces made by this module in processes that no longer exist."""
    removed = []
    names = sorted(p.name for p in _NETNS_DIR.iterdir()) if _NETNS_DIR.is_dir() else []
    for name in names:
        m = _NAME_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            _kill_and_delete(name)
            removed.append(name)
    return removed


def enter(name: str) -> None:
    """Move the calling thread (only) into network namespace ``name``; it cannot come back."""
    fd = os.open(_NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns = getattr(os, "setns", None)  # Python >= 3.12
        if setns is not None:
            setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(name: str, fn: Callable[..., _T], *args: Any,
                  timeout: float = 30.0, **kwargs: Any) -> _T:
    """Run ``fn(*args, **kwargs)`` on a fresh thread inside namespace ``name``; return its value.

    The thread ends afterwards, so the caller's own namespace never changes.
    """
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            enter(name)
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"callable in netns {name} still running after {timeout} s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class NatTopology:
    """The fap / rtr / segw namespaces; use as a context manager for guaranteed cleanup.

    ``kernel_nat=False`` leaves rtr without forwarding or NAT rules, for a userspace relay
    (``ikecp.net.relay``) running in rtr to be the only path between fap and segw.
    """

    def __init__(self, *, kernel_nat: bool = True, random_ports: bool = True) -> None:
        tag = secrets.token_hex(3)
        self.names = {role: f"{PREFIX}{os.getpid()}-{tag}-{role}" for role in ROLES}
        self._kernel_nat = kernel_nat
        self._random = random_ports
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []

    @property
    def fap(self) -> str:
        return self.names["fap"]

    @property
    def rtr(self) -> str:
        return self.names["rtr"]

    @property
    def segw(self) -> str:
        return self.names["segw"]

    def create(self) -> NatTopology:
        """Build the namespaces, links, addresses, routes and the NAPT rule."""
        cleanup_stale()
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _build(self) -> None:
        fap, rtr, segw = self.fap, self.rtr, self.segw
        for name in (fap, rtr, segw):
            _ip("netns", "add", name)
            self._created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        # Interface names live inside the namespaces, so they never clash between runs.
        _ip("link", "add", "name", "eth0", "netns", fap, "type", "veth",
            "peer", "name", "inside0", "netns", rtr)
        _ip("link", "add", "name", "outside0", "netns", rtr, "type", "veth",
            "peer", "name", "eth0", "netns", segw)
        for ns, dev, cidr in ((fap, "eth0", f"{FAP_ADDR}/24"),
                              (rtr, "inside0", f"{RTR_INSIDE_ADDR}/24"),
                              (rtr, "outside0", f"{RTR_OUTSIDE_ADDR}/24"),
                              (segw, "eth0", f"{SEGW_ADDR}/24")):
            _ip("-n", ns, "addr", "add", cidr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", fap, "route", "add", "default", "via", RTR_INSIDE_ADDR)
        if not self._kernel_nat:
            return  # rtr neither forwards nor translates: a userspace relay there must
        self.run_cmd("rtr", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        flags = " random" if self._random else ""
        ruleset = (
            "table ip ikecp_nat {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority 100;\n"
            f'    oifname "outside0" masquerade{flags}\n'
            "  }\n"
            "}\n"
        )
        self.run_cmd("rtr", ["nft", "-f", "-"], input_text=ruleset)

    def destroy(self) -> None:
        """Stop processes started here, delete the namespaces; safe to call twice."""
        for proc in self._procs:
            _stop_process(proc)
        self._procs.clear()
        for name in reversed(self._created):
            _kill_and_delete(name)
        self._created.clear()

    def __enter__(self) -> NatTopology:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def exists(self) -> bool:
        return any((_NETNS_DIR / n).exists() for n in self.names.values())

    def nat_mappings(self, proto: str = "udp") -> dict[tuple[str, int], tuple[str, int]]:
        """The router's live translations from its conntrack table: inside -> outside.

        The same shape as ``NatRelay.mappings()``: what the SeGW must see and report.
        """
        table = self.run_cmd("rtr", ["cat", "/proc/net/nf_conntrack"])
        out = {}
        for line in table.splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[2] != proto:
                continue
            kv = [f.split("=", 1) for f in fields if "=" in f]
            src = [v for k, v in kv if k == "src"]
            sport = [v for k, v in kv if k == "sport"]
            dst = [v for k, v in kv if k == "dst"]
            dport = [v for k, v in kv if k == "dport"]
            if len(src) >= 2 and len(sport) >= 2 and len(dst) >= 2 and len(dport) >= 2:
                # Original direction's source; the reply direction is addressed to the outside.
                out[(src[0], int(sport[0]))] = (dst[1], int(dport[1]))
        return out

    def rebind(self) -> None:
        """A NAT rebinding: the router forgets every translation (``conntrack -F``), so each
        flow's next packet leaves through a new random port. Needs the conntrack tool
        (``rebind_probe``)."""
        self.run_cmd("rtr", ["conntrack", "-F"])

    # -- running things inside -------------------------------------------------------------

    def _ns(self, role: str) -> str:
        if role not in self.names:
            raise ValueError(f"unknown role {role!r}; one of {ROLES}")
        return self.names[role]

    def call(self, role: str, fn: Callable[..., _T], *args: Any,
             timeout: float = 30.0, **kwargs: Any) -> _T:
        """Run a Python callable inside ``role``'s namespace (on a short-lived thread)."""
        return call_in_netns(self._ns(role), fn, *args, timeout=timeout, **kwargs)

    def socket(self, role: str, family: int = socket.AF_INET,
               type: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket that lives in ``role``'s namespace, usable from any thread."""
        return self.call(role, socket.socket, family, type)

    def command(self, role: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside ``role``'s namespace."""
        return ["ip", "netns", "exec", self._ns(role), *argv]

    def popen(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process in ``role``'s namespace; it is stopped by ``destroy()``."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.command(role, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def run_cmd(self, role: str, argv: Sequence[str], *, input_text: str | None = None,
                timeout: float = _CMD_TIMEOUT) -> str:
        """Run a command to completion in ``role``'s namespace; return stdout, raise on error."""
        done = subprocess.run(self.command(role, argv), capture_output=True, text=True,
                              input=input_text, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {role} failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        return done.stdout


def _stop_process(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def nat_topology(*, kernel_nat: bool = True,
                 random_ports: bool = True) -> Iterator[NatTopology]:
    """``with nat_topology() as topo:`` builds the three namespaces and always removes them."""
    topo = NatTopology(kernel_nat=kernel_nat, random_ports=random_ports)
    with topo:
        yield topo


__all__ = [
    "FAP_ADDR",
    "ROLES",
    "RTR_INSIDE_ADDR",
    "RTR_OUTSIDE_ADDR",
    "SEGW_ADDR",
    "NatTopology",
    "call_in_netns",
    "cleanup_stale",
    "enter",
    "nat_topology",
    "probe",
    "rebind_probe",
]
