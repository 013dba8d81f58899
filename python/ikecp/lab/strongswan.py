"""strongSwan's charon as a test peer: config from a small dataclass, driven over its own VICI.

Each ``Charon`` gets a private directory holding strongswan.conf, swanctl.conf, its VICI socket
and its log, and runs ``charon-systemd`` (no pid file, so several can run side by side),
optionally inside a network namespace. Debian's packages provide no kernel XFRM here, so the
kernel interface is ``kernel-libipsec`` (userspace ESP over /dev/net/tun) by default.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .netns import FAP_ADDR, SEGW_ADDR, pid_alive

CHARON = Path("/usr/sbin/charon-systemd")
SWANCTL = "swanctl"

#: Plugins charon loads (explicit, so nothing from /etc/strongswan.d sneaks in).
PLUGINS = ("random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints curve25519 "
           "gmp hmac kdf sha1 sha2 aes gcm chapoly socket-default vici attr")


_DIR_PREFIX = "ikecp-charon-"


def cleanup_stale() -> list[Path]:
    """Remove charon directories (and their charons) left by test processes that died.

    A directory is ``ikecp-charon-<pid>-*`` in the temp dir; a charon belongs to it when its
    environment names the directory's strongswan.conf.
    """
    removed = []
    for d in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*-*"):
        owner = d.name[len(_DIR_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or pid_alive(int(owner)):
            continue
        marker = f"STRONGSWAN_CONF={d / 'strongswan.conf'}".encode()
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def probe() -> str | None:
    """Why strongSwan cannot be run here, or None if it can."""
    if os.geteuid() != 0:
        return "strongSwan's charon needs root"
    if not CHARON.exists():
        return f"{CHARON} missing (run .ci/install-peers.sh)"
    if shutil.which(SWANCTL) is None:
        return "swanctl missing (run .ci/install-peers.sh)"
    plugins = Path("/usr/lib/ipsec/plugins")
    for name in ("openssl", "kernel-libipsec", "vici"):
        if not (plugins / f"libstrongswan-{name}.so").exists():
            return f"strongSwan plugin {name} missing (run .ci/install-peers.sh)"
    return None


@dataclass(frozen=True)
class Child:
    """One CHILD_SA config (swanctl.conf ``children`` section)."""

    name: str = "net"
    local_ts: tuple[str, ...] = ("dynamic",)
    remote_ts: tuple[str, ...] = ("dynamic",)
    esp_proposals: str = "aes256gcm16"
    start_action: str = "none"
    #: More swanctl child settings, e.g. ``{"rekey_time": "2s"}``.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CharonConfig:
    """What a test says about a strongSwan peer; ``Charon`` turns it into config files.

    PSK (``psk``) or certificates (``cert``/``key``/``cacert``: PEM files, copied into the
    charon's directory; ``ikecp.lab.ca.write_pki`` makes a throwaway set).
    ``pools`` (responder) maps pool name to addresses; ``vips`` (initiator) asks for
    virtual IPs, e.g. ``("0.0.0.0",)``. ``pool_attrs`` adds raw attributes to a pool:
    ``{"pool4": {"23": "0xc6336401115c"}}`` (VICI takes numbered attribute types).
    """

    role: Literal["initiator", "responder"]
    local_addrs: str
    remote_addrs: str = "%any"
    local_id: str = "%any"
    remote_id: str = "%any"
    psk: str | None = None
    cert: Path | None = None
    key: Path | None = None
    cacert: Path | None = None
    #: More CA certificates for x509ca/, e.g. an intermediate that strongSwan then sends
    #: along with its own certificate.
    extra_cacerts: tuple[Path, ...] = ()
    #: swanctl ``send_cert`` (``ifasked``/``always``/``never``); strongSwan's default sends
    #: its certificate only after a CERTREQ.
    send_cert: str | None = None
    #: More swanctl connection settings, e.g. ``{"dpd_delay": "1s"}``.
    conn_extra: Mapping[str, Any] = field(default_factory=dict)
    #: More strongswan.conf daemon settings, e.g. ``{"make_before_break": True}``.
    daemon_extra: Mapping[str, Any] = field(default_factory=dict)
    proposals: str = "aes256gcm16-prfsha256-x25519"
    pools: Mapping[str, str] = field(default_factory=dict)
    pool_attrs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    vips: tuple[str, ...] = ()
    children: tuple[Child, ...] = (Child(),)
    port: int = 500
    port_nat_t: int = 4500
    remote_port: int | None = None
    encap: bool = False
    mobike: bool = True
    kernel: Literal["libipsec", "netlink"] = "libipsec"
    connection: str = "ikecp"
    log_levels: Mapping[str, int] = field(
        default_factory=lambda: {"default": 1, "ike": 2, "cfg": 2, "knl": 2, "net": 1})

    def __post_init__(self) -> None:
        if (self.psk is None) == (self.cert is None):
            raise ValueError("CharonConfig needs exactly one of psk or cert")
        if self.cert is not None and self.key is None:
            raise ValueError("CharonConfig.cert needs key")


#: Defaults of the stock FAP/SeGW pair below (test values, not secrets).
TEST_PSK = "ikecp-test-psk-0123456789"
TEST_POOL = "100.64.128.0/24"


def segw_responder(**changes: Any) -> CharonConfig:
    """A strongSwan SeGW on the topology's segw address: PSK, a virtual IPv4 pool, 0/0."""
    base = CharonConfig(
        role="responder", local_addrs=SEGW_ADDR, local_id="segw.test", remote_id="fap.test",
        psk=TEST_PSK, pools={"vip4": TEST_POOL}, children=(Child(local_ts=("0.0.0.0/0",)),))
    return replace(base, **changes)


def fap_initiator(**changes: Any) -> CharonConfig:
    """A strongSwan FAP on the topology's fap address asking for a virtual IP, 0/0 tunnel."""
    base = CharonConfig(
        role="initiator", local_addrs=FAP_ADDR, remote_addrs=SEGW_ADDR, local_id="fap.test",
        remote_id="segw.test", psk=TEST_PSK, vips=("0.0.0.0",),
        children=(Child(remote_ts=("0.0.0.0/0",)),))
    return replace(base, **changes)


Section = Mapping[str, Any]


def render(section: Section, indent: int = 0) -> str:
    """strongSwan's settings syntax, one setting per line (the parser wants that)."""
    pad = "    " * indent
    out = []
    for key, value in section.items():
        if isinstance(value, Mapping):
            out.append(f"{pad}{key} {{\n{render(value, indent + 1)}{pad}}}\n")
        else:
            if isinstance(value, bool):
                text = "yes" if value else "no"
            elif isinstance(value, (list, tuple)):
                text = ", ".join(str(v) for v in value)
            else:
                text = str(value)
            if "\n" in text or "}" in text or "{" in text:
                raise ValueError(f"bad value for {key}: {text!r}")
            out.append(f"{pad}{key} = {text}\n")
    return "".join(out)


def strongswan_conf(cfg: CharonConfig, workdir: Path) -> str:
    kernel = "kernel-libipsec kernel-netlink" if cfg.kernel == "libipsec" else "kernel-netlink"
    logs: dict[str, Any] = dict(cfg.log_levels)
    logs.update({"flush_line": True, "time_format": "%H:%M:%S", "ike_name": True})
    daemon: dict[str, Any] = {
        "load": f"{PLUGINS} {kernel}",
        "port": cfg.port,
        "port_nat_t": cfg.port_nat_t,
        # No ip rules / routing table on the host; routes only inside the namespace.
        "routing_table": 0,
        "install_routes": False,
        "filelog": {"main": {"path": str(workdir / "charon.log"), **logs}},
        "journal": {"default": -1},
        "syslog": {"daemon": {"default": -1}},
        "plugins": {"vici": {"socket": f"unix://{workdir / 'charon.vici'}"}},
        **cfg.daemon_extra,
    }
    return render({"charon-systemd": daemon})


def swanctl_conf(cfg: CharonConfig) -> str:
    auth: dict[str, Any]
    local: dict[str, Any] = {"id": cfg.local_id}
    remote: dict[str, Any] = {"id": cfg.remote_id}
    if cfg.psk is not None:
        local["auth"] = remote["auth"] = "psk"
    elif cfg.cert is not None:
        local["auth"] = remote["auth"] = "pubkey"
        # Names inside the swanctl dir (SWANCTL_DIR = the workdir): x509/, x509ca/.
        local["certs"] = cfg.cert.name
        if cfg.cacert is not None:
            remote["cacerts"] = cfg.cacert.name
    children = {
        c.name: {
            "local_ts": c.local_ts,
            "remote_ts": c.remote_ts,
            "esp_proposals": c.esp_proposals,
            "start_action": c.start_action,
            **c.extra,
        }
        for c in cfg.children
    }
    conn: dict[str, Any] = {
        "version": 2,
        "local_addrs": cfg.local_addrs,
        "remote_addrs": cfg.remote_addrs,
        "local_port": cfg.port,
        "proposals": cfg.proposals,
        "encap": cfg.encap,
        "mobike": cfg.mobike,
        "local": local,
        "remote": remote,
        "children": children,
    }
    if cfg.remote_port is not None:
        conn["remote_port"] = cfg.remote_port
    if cfg.send_cert is not None:
        conn["send_cert"] = cfg.send_cert
    conn.update(cfg.conn_extra)
    if cfg.pools:
        conn["pools"] = tuple(cfg.pools)
    if cfg.vips:
        conn["vips"] = cfg.vips
    doc: dict[str, Any] = {"connections": {cfg.connection: conn}}
    if cfg.pools:
        doc["pools"] = {name: {"addrs": addrs, **cfg.pool_attrs.get(name, {})}
                        for name, addrs in cfg.pools.items()}
    if cfg.psk is not None:
        auth = {"id-local": cfg.local_id, "id-remote": cfg.remote_id, "secret": f'"{cfg.psk}"'}
        doc["secrets"] = {"ike-ikecp": auth}
    return render(doc)


# -- swanctl --list-sas --raw ----------------------------------------------------------------

_TOKEN = re.compile(r"[{}\[\]=]|[^\s{}\[\]=]+")


def parse_raw(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse swanctl's ``--raw`` output: ``event name {key=value sec {…} list=[a b]}`` lines.

    Returns (name, section) per message; values are str, list[str] or nested dicts. Values
    with spaces or ``=`` (distinguished names) do not survive this format; the fields tests
    read (addresses, ports, states, SPIs, flags) never have them.
    """
    messages = []
    for line in text.splitlines():
        head, brace, rest = line.partition("{")
        if not brace:
            continue
        tokens = _TOKEN.findall(rest)
        body, _ = _parse_section(tokens, 0)
        messages.append((head.strip(), body))
    return messages


def _parse_section(tokens: list[str], pos: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok == "}":
            break
        if tok in {"{", "[", "]", "="}:
            continue  # stray punctuation: skip, never fail on odd output
        nxt = tokens[pos] if pos < len(tokens) else ""
        if nxt == "{":
            out[tok], pos = _parse_section(tokens, pos + 1)
        elif nxt == "=":
            pos += 1
            if pos < len(tokens) and tokens[pos] == "[":
                items, pos = _parse_list(tokens, pos + 1)
                out[tok] = items
            elif pos < len(tokens) and tokens[pos] not in {"{", "}", "]"}:
                out[tok] = tokens[pos]
                pos += 1
            else:
                out[tok] = ""
        elif nxt == "[":
            out[tok], pos = _parse_list(tokens, pos + 1)
    return out, pos


def _parse_list(tokens: list[str], pos: int) -> tuple[list[str], int]:
    items = []
    while pos < len(tokens) and tokens[pos] != "]":
        items.append(tokens[pos])
        pos += 1
    return items, pos + 1


@dataclass(frozen=True)
class IkeSa:
    """The fields of one IKE_SA from ``--list-sas`` that tests look at."""

    name: str
    state: str
    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    nat_local: bool
    nat_remote: bool
    nat_any: bool
    local_vips: tuple[str, ...]
    remote_vips: tuple[str, ...]
    children: dict[str, dict[str, Any]]
    raw: dict[str, Any]


def _to_ike_sa(name: str, d: dict[str, Any]) -> IkeSa:
    return IkeSa(
        name=name,
        state=d.get("state", ""),
        local_host=d.get("local-host", ""),
        local_port=int(d.get("local-port", 0)),
        remote_host=d.get("remote-host", ""),
        remote_port=int(d.get("remote-port", 0)),
        nat_local=d.get("nat-local") == "yes",
        nat_remote=d.get("nat-remote") == "yes",
        nat_any=d.get("nat-any") == "yes",
        local_vips=tuple(d.get("local-vips", [])),
        remote_vips=tuple(d.get("remote-vips", [])),
        children=dict(d.get("child-sas", {})),
        raw=d,
    )


class CharonError(RuntimeError):
    """charon or swanctl failed; the message carries the tail of charon's log."""


class Charon:
    """One charon-systemd process with its own config dir, VICI socket and log."""

    #: The daemon to run; a subclass may point at another build (e.g. one with load-tester).
    binary: Path = CHARON

    def __init__(self, config: CharonConfig, *, netns: str | None = None,
                 workdir: Path | None = None) -> None:
        self.config = config
        self.netns = netns
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-"))
        self.vici = self.workdir / "charon.vici"
        self.log_path = self.workdir / "charon.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def write_config(self) -> None:
        """Write both config files; copy certificates and key where swanctl looks for them."""
        (self.workdir / "strongswan.conf").write_text(strongswan_conf(self.config, self.workdir))
        (self.workdir / "swanctl.conf").write_text(swanctl_conf(self.config))
        for sub, src in (("x509", self.config.cert), ("x509ca", self.config.cacert),
                         ("private", self.config.key),
                         *(("x509ca", extra) for extra in self.config.extra_cacerts)):
            if src is not None:
                (self.workdir / sub).mkdir(mode=0o700, exist_ok=True)
                shutil.copy(src, self.workdir / sub / Path(src).name)

    def start(self, timeout: float = 15.0) -> Charon:
        """Start charon, wait until VICI answers, then load the connection."""
        cleanup_stale()
        self.write_config()
        env = {**os.environ, "STRONGSWAN_CONF": str(self.workdir / "strongswan.conf")}
        argv = [str(self.binary)]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self.workdir / "stdout.log", "wb") as out:
            self._proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise CharonError(f"charon exited with {self._proc.returncode}\n{self.log_tail()}")
            if self.vici.exists() and self._swanctl_ok("--stats"):
                break
            if time.monotonic() > deadline:
                raise CharonError(f"charon not ready after {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)
        self.swanctl("--load-all", "--noprompt", "--file", str(self.workdir / "swanctl.conf"))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM charon (SIGKILL if it lingers); remove its directory if it made it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL charon, as a power cut would: it sends no DELETE. ``stop()`` still cleans
        up its directory."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def __enter__(self) -> Charon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- control ---------------------------------------------------------------------------

    def _swanctl_argv(self, args: Sequence[str]) -> list[str]:
        # The command comes first; its options (--uri included) follow it.
        return [SWANCTL, args[0], "--uri", f"unix://{self.vici}", *args[1:]]

    def _swanctl_ok(self, *args: str) -> bool:
        done = subprocess.run(self._swanctl_argv(args), capture_output=True, timeout=10,
                              env=self._swanctl_env())
        return done.returncode == 0

    def _swanctl_env(self) -> dict[str, str]:
        return {**os.environ, "STRONGSWAN_CONF": str(self.workdir / "strongswan.conf"),
                "SWANCTL_DIR": str(self.workdir)}

    def swanctl(self, *args: str, timeout: float = 15.0) -> str:
        """Run swanctl against this charon's VICI socket; return stdout, raise on failure."""
        done = subprocess.run(self._swanctl_argv(args), capture_output=True, text=True,
                              timeout=timeout, env=self._swanctl_env())
        if done.returncode != 0:
            raise CharonError(f"swanctl {' '.join(args)} failed ({done.returncode}):\n"
                              f"{done.stdout}{done.stderr}\n{self.log_tail()}")
        return done.stdout

    def initiate(self, child: str | None = None, *, ike: str | None = None,
                 timeout: int = 10) -> str:
        """Initiate ``child`` (and its IKE_SA) or just the IKE_SA ``ike``; wait ``timeout`` s."""
        target = ["--child", child] if child else ["--ike", ike or self.config.connection]
        return self.swanctl("--initiate", *target, "--timeout", str(timeout),
                            timeout=timeout + 5)

    def terminate(self, *, ike: str | None = None, timeout: int = 10) -> str:
        return self.swanctl("--terminate", "--ike", ike or self.config.connection,
                            "--timeout", str(timeout), timeout=timeout + 5)

    def list_sas(self) -> list[IkeSa]:
        out = self.swanctl("--list-sas", "--raw")
        sas: list[IkeSa] = []
        for event, body in parse_raw(out):
            if event == "list-sa event":
                sas.extend(_to_ike_sa(name, sa) for name, sa in body.items())
        return sas

    def wait_for_sa(self, state: str = "ESTABLISHED", timeout: float = 10.0) -> IkeSa:
        deadline = time.monotonic() + timeout
        while True:
            for sa in self.list_sas():
                if sa.state == state:
                    return sa
            if time.monotonic() > deadline:
                raise CharonError(f"no IKE_SA in state {state} after {timeout} s\n"
                                  f"{self.log_tail()}")
            time.sleep(0.1)

    # -- log -------------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise CharonError(f"log never matched {pattern!r}\n{self.log_tail()}")
            time.sleep(0.05)


@contextlib.contextmanager
def charon(config: CharonConfig, *, netns: str | None = None) -> Iterator[Charon]:
    """``with charon(cfg, netns=topo.segw) as c:`` starts, loads and always stops charon."""
    c = Charon(config, netns=netns)
    try:
        c.start()
        yield c
    finally:
        c.stop()
