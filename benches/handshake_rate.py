"""Handshake rate, CPU per handshake and memory per SA: the ikecp SeGW against strongSwan's
charon, driven by the same ikecp load generator in one run.

Run (as root, release build of the extension): ``python benches/handshake_rate.py`` or
``python benches/handshake_rate.py --quick`` (about a minute). Without root or strongSwan it
measures what it can (ikecp on loopback) and says what it skipped.

Topology (``ikecp.lab.netns``): the load generator in the fap namespace behind the kernel
NAPT, the responder in the segw namespace on 198.51.100.10:500/4500, so NAT-T is real and
every responder sees the same traffic. Responders: ``ikecp segw`` (the real SeGW process:
asyncio driver, binding registry in SQLite) with ``dataplane = "none"`` and again with
``dataplane = "tun"`` (every CHILD SA installed into the ESP data plane, like for like with
strongSwan, which installs every CHILD SA), the bare ``Dispatcher`` on the blocking I/O core
(``ikecp.lab.responder``: what the SeGW costs without its registry and asyncio), and
strongSwan's charon twice: as Debian ships it, with kernel-libipsec (every CHILD SA installed
into userspace ESP), and built with the load-tester plugin's fake kernel (CHILD SAs installed
nowhere; ``benches/strongswan_loadtester.sh`` builds it once from Debian's source package into a
cache dir). Like for like: ikecp segw with ``dataplane = "none"`` against the fake kernel
(control plane only), ikecp segw with ``dataplane = "tun"`` against kernel-libipsec (CHILD SAs
installed). Per suite and target it reports
handshakes/s end to end (IKE_SA_INIT + IKE_AUTH with CP and the first CHILD_SA), responder CPU
µs per handshake (/proc/<pid>/stat of the responder process), initiator CPU µs per handshake
(getrusage of the load generator's thread), the crypto floor measured in the same run (the DH,
prf+, AEAD and hash calls one side cannot avoid) and efficiency = floor / responder CPU.
``ikecp segw`` runs with one worker process, and again with two (a supervisor and two
workers sharing the ports, ``workers = 2``): the load generator needs a core of this
2-core machine too, so the rate cannot double; the 1-vs-2 row compares responder CPU per
handshake summed over all SeGW processes, which stays flat when the work spreads.
Then the rekey row (X25519 + PSK): the same FAPs, each rekeying its CHILD SA and then its
IKE SA right after the handshake (``LoadConfig.rekey_after = 0``), against ikecp segw and
strongSwan; rekeys/s and responder CPU per rekey come from the difference to a run of the same
handshakes without rekeys (so the handshakes' share cancels out), and the rekey latencies from
the load generator. Then the SeGW scale: N SAs established with in-memory engines, resident
memory per SA.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ikecp import BACKEND_NAME, _backend, dh
from ikecp.const import AuthMethod, EncrId
from ikecp.cp import AddressPool, CpRegistry, NatInfoHandler, NatInfoProvider, PoolProvider
from ikecp.engine import IkeProposal, IkeSa, PskAuthenticator, Settings
from ikecp.events import ChildSaEstablished
from ikecp.lab import netns, strongswan
from ikecp.lab.responder import serve_in_process
from ikecp.loadgen.generator import DEFAULT_PSK, LoadConfig, Worker, identity, run
from ikecp.loadgen.report import summarize
from ikecp.message import Message, Nonce

SEGW_ID = "segw.lab.example"


@dataclass(frozen=True)
class Suite:
    name: str
    ike: str
    auth: str  # "psk" or "cert"
    group: int


SUITES = {
    "x25519-psk": Suite("X25519 + PSK + AES-GCM-256", "aes256gcm16-prfsha256-x25519", "psk",
                        dh.CURVE25519),
    "modp2048-psk": Suite("MODP-2048 + PSK + AES-GCM-256", "aes256gcm16-prfsha256-modp2048",
                          "psk", dh.MODP_2048),
    "x25519-ecdsa": Suite("X25519 + ECDSA P-256 certs + AES-GCM-256",
                          "aes256gcm16-prfsha256-x25519", "cert", dh.CURVE25519),
}


# --- crypto floor ----------------------------------------------------------------------------


def _per_call(fn: Any, rounds: int) -> float:
    """CPU seconds per call of this thread: comparable with the CPU figures, and immune to
    other processes taking the core (wall time is not, on a shared 2-core machine)."""
    start = time.thread_time()
    for _ in range(rounds):
        fn()
    return (time.thread_time() - start) / rounds


def crypto_floor(suite: Suite, rounds: int = 200) -> dict[str, float]:
    """Microseconds one responder spends per handshake in calls it cannot avoid: one DH key
    pair and exchange, SKEYSEED + prf+ for the IKE keys, two SK ciphers keyed, one IKE_AUTH
    request opened and one reply sealed (AEAD), 4 NAT-D hashes, the AUTH computation and its
    check (signed octets + prf, or one signature and one verification), CHILD_SA keymat."""
    b = _backend.backend
    peer = dh.generate(suite.group)
    nonce_i, nonce_r, spi_i, spi_r = os.urandom(32), os.urandom(32), os.urandom(8), os.urandom(8)
    prf = 5  # PRF_HMAC_SHA2_256

    def dh_side() -> bytes:
        return dh.generate(suite.group).exchange(peer.public_bytes)

    secret = dh_side()
    seed = b.skeyseed(prf, nonce_i, nonce_r, secret)
    keys = b.ike_keys(prf, seed, nonce_i, nonce_r, spi_i, spi_r, 36, 0)
    c_in = b.SkCipher(EncrId.AES_GCM_16, keys[3], 0, b"")
    c_out = b.SkCipher(EncrId.AES_GCM_16, keys[4], 0, b"")
    msg = Message(spi_i, spi_r, 35, 0x08, 1, (Nonce(os.urandom(300)),))  # ~IKE_AUTH size
    sealed = b.seal_message(c_in, msg)
    header, body = sealed[:28], os.urandom(300)
    init_msg = os.urandom(450)
    out: dict[str, float] = {
        "dh": _per_call(dh_side, rounds // 4 if suite.group == dh.MODP_2048 else rounds),
        "prf+": _per_call(lambda: b.ike_keys(prf, b.skeyseed(prf, nonce_i, nonce_r, secret),
                                             nonce_i, nonce_r, spi_i, spi_r, 36, 0), rounds)
        + _per_call(lambda: b.child_keymat(prf, keys[0], nonce_i, nonce_r, 72), rounds),
        "aead": _per_call(lambda: (b.SkCipher(EncrId.AES_GCM_16, keys[3], 0, b""),
                                   b.SkCipher(EncrId.AES_GCM_16, keys[4], 0, b""),
                                   c_in.open(sealed), c_out.seal(header, 35, body)),
                          rounds),
        "hash": _per_call(lambda: [b.nat_detection_hash(spi_i, spi_r, bytes(4), 4500)
                                   for _ in range(4)], rounds),
    }
    octets = b.signed_octets(prf, init_msg, nonce_r, keys[5], 3, b"fap-1@lab.example")
    if suite.auth == "psk":
        out["auth"] = _per_call(lambda: [b.psk_auth(prf, DEFAULT_PSK, b.signed_octets(
            prf, init_msg, nonce_r, keys[5], 3, b"fap-1@lab.example")) for _ in range(2)],
            rounds)
    else:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        key = ec.generate_private_key(ec.SECP256R1())
        sig = key.sign(octets, ec.ECDSA(hashes.SHA256()))
        pub = key.public_key()
        out["auth"] = _per_call(lambda: (key.sign(octets, ec.ECDSA(hashes.SHA256())),
                                         pub.verify(sig, octets, ec.ECDSA(hashes.SHA256()))),
                                rounds // 2)
    floor = {k: round(v * 1e6, 1) for k, v in out.items()}
    floor["total"] = round(sum(out.values()) * 1e6, 1)
    return floor


# --- the engine alone ------------------------------------------------------------------------


def engine_cpu(suite: Suite, ca: Any, creds: Any, n: int) -> dict[str, float]:
    """CPU µs per handshake and side with in-memory engines (no sockets, no dispatcher), the
    same settings as the socket runs: what the engine costs before any I/O."""
    worker = Worker(LoadConfig(count=n, auth=suite.auth, ca=ca, ike_proposal=suite.ike))
    segw = ikecp_segw_settings(suite, creds)
    spent = {"i": 0.0, "r": 0.0}

    def timed(side: str, fn: Any, *args: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args)
        finally:
            spent[side] += time.thread_time() - start

    for k in range(n):
        settings = worker.settings_for(k)  # certificate issuing is not handshake work
        i = timed("i", IkeSa.initiator, settings, ("100.64.0.2", 500), ("198.51.100.10", 500))
        r = timed("r", IkeSa.responder, segw, ("198.51.100.10", 500))
        for _ in range(2):
            for d in timed("i", i.datagrams_to_send, 0.0):
                timed("r", r.receive_datagram, d.data, ("198.51.100.1", 1024 + k % 60000), 0.0,
                      d.remote[1])
            for d in timed("r", r.datagrams_to_send, 0.0):
                timed("i", i.receive_datagram, d.data, ("198.51.100.10", d.local_port), 0.0,
                      d.remote[1])
        while timed("i", i.next_event) is not None:
            pass
        while timed("r", r.next_event) is not None:
            pass
        if not (i.established and r.established):
            raise RuntimeError(f"in-memory handshake {k} failed")
    return {"initiator_us": round(spent["i"] / n * 1e6, 1),
            "responder_us": round(spent["r"] / n * 1e6, 1)}


# --- the targets -------------------------------------------------------------------------


def ikecp_segw_settings(suite: Suite, creds: Any) -> Settings:
    reg = (CpRegistry().add_provider(NatInfoProvider())
           .add_provider(PoolProvider(AddressPool("10.0.0.0/8"))))
    kw: dict[str, Any] = {"auth": PskAuthenticator(DEFAULT_PSK)}
    if suite.auth == "cert":
        from ikecp import pki
        from ikecp.engine.cert_auth import CertAuthenticator
        trust = pki.TrustStore([creds.root])
        kw = {"auth": CertAuthenticator(creds.credential, trust),
              "peer_auth": CertAuthenticator(None, trust)}
    return Settings(local_id=identity(SEGW_ID), cp=reg,
                    ike_proposals=(IkeProposal.parse(suite.ike),), **kw)


def _load(suite: Suite, args: argparse.Namespace, topo: Any, ca: Any, target: str,
          **kw: Any) -> dict[str, Any]:
    kw.update(getattr(args, "load_kw", {}))
    cfg = LoadConfig(target=target, count=args.count, window=args.window, duration=600,
                     timeout=10, teardown=args.teardown, ike_proposal=suite.ike,
                     auth=suite.auth, ca=ca, workers=1,
                     source=netns.FAP_ADDR if topo else "127.0.0.1",
                     nat_table=(lambda: _natt_mappings(topo)) if topo else None, **kw)
    res = topo.call("fap", run, cfg, timeout=cfg.hard_stop + 30) if topo else run(cfg)
    return summarize(cfg, res)


def run_ikecp_segw(suite: Suite, args: argparse.Namespace, topo: Any, ca: Any, creds: Any,
                   workdir: Path, *, dataplane: str = "none", workers: int = 1,
                   measure: Any = None) -> dict[str, Any]:
    """The real SeGW: ``ikecp segw --config`` (asyncio driver, binding registry in SQLite)
    as its own process in the segw namespace. ``dataplane = "tun"`` installs every CHILD SA
    into the ESP data plane, as strongSwan with kernel-libipsec does. ``workers`` > 1: a
    supervisor and that many worker processes; their CPU is summed."""
    lines = [f'dataplane = "{dataplane}"', f"workers = {workers}",
             f'identity = "{SEGW_ID}"', f'listen = ["{netns.SEGW_ADDR}"]', "port = 500",
             "natt_port = 4500", 'pool = "10.0.0.0/8"', f'proposals = ["{suite.ike}"]',
             'esp_proposals = ["aes256gcm16"]', "dpd = 0",
             f'bindings = "{workdir / "bindings.sqlite"}"',
             # every FAP comes from the NAPT's one address: lift the per-IP limits, as
             # for charon below
             "max_half_open_ip = 10000", "cookie_threshold = 10000",
             "cookie_threshold_ip = 10000"]
    if suite.auth == "psk":
        lines.append(f'psk = "{DEFAULT_PSK.decode()}"')
    else:
        (workdir / "segw.pem").write_bytes(creds.cert_pem)
        (workdir / "segw.key").write_bytes(creds.key_pem)
        (workdir / "ca.pem").write_bytes(ca.cert_pem)
        lines += [f'cert = "{workdir / "segw.pem"}"', f'key = "{workdir / "segw.key"}"',
                  f'ca = ["{workdir / "ca.pem"}"]']
    conf = workdir / "segw.toml"
    conf.write_text("\n".join(lines) + "\n")
    (workdir / "bindings.sqlite").unlink(missing_ok=True)
    # stdout carries only the ready line; logs and any warning go to a file, so neither can
    # pass for the ready line nor fill a pipe nobody reads.
    errors = workdir / "segw.stderr"
    with open(errors, "w") as err:
        proc = topo.popen("segw", [sys.executable, "-m", "ikecp.cli", "segw", "--config",
                                   str(conf)], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("SeGW ") or "ports 500/4500" not in line:
            raise RuntimeError(f"ikecp segw did not start: {line!r} "
                               f"(stderr: {errors.read_text()[-2000:]!r})")
        if measure is not None:  # another row's own runs against this SeGW (held SAs)
            return measure(proc)  # type: ignore[no-any-return]
        cpu0 = _tree_cpu(proc.pid)
        summary = _load(suite, args, topo, ca, netns.SEGW_ADDR)
        _responder_cpu(summary, cpu0, _tree_cpu(proc.pid))
        summary["responder_processes"] = 1 + len(_children(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return summary


def _natt_mappings(topo: Any) -> dict[tuple[str, int], tuple[str, int]]:
    """The router's translations of flows to the SeGW's NAT-T port (conntrack): a FAP's
    closed IKE-port socket may leave its port to a later FAP's NAT-T socket, so flows must be
    told apart by destination, which ``NatTopology.nat_mappings`` does not do."""
    out = {}
    for line in topo.run_cmd("rtr", ["cat", "/proc/net/nf_conntrack"]).splitlines():
        kv = [f.split("=", 1) for f in line.split() if "=" in f]
        get = {k: [v for kk, v in kv if kk == k] for k in ("src", "sport", "dst", "dport")}
        if " udp " in line and len(get["dport"]) >= 2 and get["dport"][0] == "4500":
            out[(get["src"][0], int(get["sport"][0]))] = (get["dst"][1], int(get["dport"][1]))
    return out


def run_ikecp(suite: Suite, args: argparse.Namespace, topo: Any, ca: Any,
              creds: Any) -> dict[str, Any]:
    host = netns.SEGW_ADDR if topo else "127.0.0.1"
    settings = ikecp_segw_settings(suite, creds)
    ports = {"port": 500, "natt_port": 4500} if topo else {}
    with serve_in_process(settings, host, netns=topo.segw if topo else None, lifetime=600,
                          **ports) as proc:
        kw = {} if topo else {"port": proc.port, "natt_port": proc.natt_port,
                              "force_encap": True}
        cpu0 = _proc_cpu(proc.pid)
        summary = _load(suite, args, topo, ca, host, **kw)
        _responder_cpu(summary, cpu0, _proc_cpu(proc.pid))
        summary["responder_rss_mb"] = round(proc.rss_bytes() / 2**20, 1)
    return summary


def build_loadtester() -> tuple[Path | None, str]:
    """Build (or find cached) charon with load-tester: (install prefix or None, what happened)."""
    script = Path(__file__).with_name("strongswan_loadtester.sh")
    t0 = time.monotonic()
    try:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"load-tester build failed: {exc}"
    took = time.monotonic() - t0
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        return None, f"load-tester build failed (exit {out.returncode}): {tail}"[:600]
    prefix = Path(out.stdout.strip().splitlines()[-1])
    built = (prefix / ".built").read_text().strip()
    return prefix, f"{built} (this run: {took:.1f} s)"


def run_strongswan(suite: Suite, args: argparse.Namespace, topo: Any, ca: Any,
                   creds: Any, workdir: Path, *,
                   fake_kernel: Path | None = None) -> dict[str, Any]:
    """charon as the responder: with kernel-libipsec, or (``fake_kernel`` = the prefix of the
    load-tester build) with load-tester's fake kernel, which installs no CHILD SA."""
    kw: dict[str, Any] = {"psk": DEFAULT_PSK.decode()}
    if suite.auth == "cert":
        (workdir / "segw.pem").write_bytes(creds.cert_pem)
        (workdir / "segw.key").write_bytes(creds.key_pem)
        (workdir / "ca.pem").write_bytes(ca.cert_pem)
        kw = {"cert": workdir / "segw.pem", "key": workdir / "segw.key",
              "cacert": workdir / "ca.pem"}
    config = strongswan.CharonConfig(
        role="responder", local_addrs=netns.SEGW_ADDR, local_id=SEGW_ID, remote_id="%any",
        proposals=suite.ike, pools={"vip4": "10.0.0.0/8"},
        children=(strongswan.Child(local_ts=("0.0.0.0/0",)),),
        log_levels={"default": 0}, kernel="netlink" if fake_kernel else "libipsec",
        conn_extra={"send_certreq": False} if fake_kernel and suite.auth == "psk" else {},
        **kw)
    charon = _BenchCharon(config, netns=topo.segw) if fake_kernel is None \
        else _FakeKernelCharon(config, netns=topo.segw, prefix=fake_kernel)
    with charon:
        pid = charon._proc.pid  # type: ignore[union-attr]
        cpu0 = _proc_cpu(pid)
        extra = {"peer_auth_method": AuthMethod.ECDSA_SHA256_P256} if suite.auth == "cert" \
            else {}
        summary = _load(suite, args, topo, ca, netns.SEGW_ADDR, **extra)
        _responder_cpu(summary, cpu0, _proc_cpu(pid))
        summary["cookie_probe"] = topo.call("fap", cookie_probe, suite)
    return summary


def cookie_probe(suite: Suite, burst: int = 8) -> dict[str, int]:
    """Send ``burst`` IKE_SA_INIT requests back to back from the one source address every FAP
    shares and count the answers that demand a COOKIE: with the responder's per-IP
    ``cookie_threshold_ip`` (charon's default 3) really lifted there are none. Run after the
    measured load; the ``burst`` half-open SAs it leaves time out on the responder."""
    import socket

    from ikecp.const import NotifyType
    from ikecp.message import Notify

    settings = Settings(local_id=identity("cookie-probe@lab.example"),
                        auth=PskAuthenticator(DEFAULT_PSK),
                        ike_proposals=(IkeProposal.parse(suite.ike),))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((netns.FAP_ADDR, 0))
        local = sock.getsockname()
        for _ in range(burst):
            sa = IkeSa.initiator(settings, local, (netns.SEGW_ADDR, 500))
            for d in sa.datagrams_to_send(0.0):
                sock.sendto(d.data, (netns.SEGW_ADDR, 500))
        answers = cookies = 0
        deadline = time.monotonic() + 3.0
        while answers < burst and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            answers += 1
            msg = _backend.backend.decode_message(data)
            cookies += any(isinstance(p, Notify) and p.notify_type == NotifyType.COOKIE
                           for p in msg.payloads)
    return {"sent": burst, "answered": answers, "cookie_demands": cookies}


class _BenchCharon(strongswan.Charon):
    """charon with its per-peer-IP DoS limits lifted: every simulated FAP comes from the one
    public address of the NAPT, and charon by default drops IKE_SA_INIT beyond 5 half-open SAs
    per IP (``block_threshold``) and asks for COOKIEs beyond 10 half-open SAs in all
    (``cookie_threshold``) or 3 from one IP (``cookie_threshold_ip``). The
    ikecp responders have theirs lifted too, so this keeps the comparison equal. Its
    IKE_SA table has one bucket by default (``ikesa_table_size = 1``), a linear search that
    makes every handshake slower as SAs pile up; a SeGW under load tests gets a real one."""

    def write_config(self) -> None:
        super().write_config()
        if self.config.key is not None:
            # swanctl loads private keys from its own credential folder (SWANCTL_DIR/private).
            (self.workdir / "private").mkdir(mode=0o700, exist_ok=True)
            shutil.copy(self.config.key, self.workdir / "private" / "segw.key")
            # We send no CERTREQ yet, and charon sends its certificate only when asked.
            swanctl = self.workdir / "swanctl.conf"
            swanctl.write_text(swanctl.read_text().replace(
                "        version = 2\n", "        version = 2\n        send_cert = always\n", 1))
        conf = self.workdir / "strongswan.conf"
        conf.write_text(conf.read_text().replace(
            "charon-systemd {\n",
            "charon-systemd {\n    block_threshold = 1000000\n    cookie_threshold = 1000000\n"
            "    cookie_threshold_ip = 1000000\n"
            "    init_limit_half_open = 0\n    ikesa_table_size = 65536\n"
            "    ikesa_table_segments = 64\n", 1))


    def _swanctl_env(self) -> dict[str, str]:
        return {**super()._swanctl_env(), "SWANCTL_DIR": str(self.workdir)}


class _FakeKernelCharon(_BenchCharon):
    """charon-systemd from the load-tester build, its fake kernel standing in for kernel
    IPsec: CHILD SAs are negotiated but installed nowhere, like ikecp segw without a data
    plane. load-tester must come before kernel-netlink in ``load`` or the real kernel
    interface wins; ``initiators = 0`` keeps it from starting its own load. It trusts a
    built-in CA, so charon would send a CERTREQ naming it in every IKE_SA_INIT response
    (``send_certreq = no`` for PSK in ``run_strongswan``; the Debian build has no CA to name).
    """

    def __init__(self, config: strongswan.CharonConfig, *, netns: str | None,
                 prefix: Path) -> None:
        super().__init__(config, netns=netns)
        self.binary = prefix / "sbin" / "charon-systemd"

    def write_config(self) -> None:
        super().write_config()
        conf = self.workdir / "strongswan.conf"
        text = conf.read_text()
        edits = ((" kernel-netlink\n", " load-tester kernel-netlink\n"),
                 ("    plugins {\n", "    plugins {\n        load-tester {\n"
                  "            enable = yes\n            fake_kernel = yes\n"
                  "            initiators = 0\n        }\n"))
        for old, new in edits:
            if old not in text:
                raise RuntimeError(f"strongswan.conf has no {old.strip()!r} to extend")
            text = text.replace(old, new, 1)
        conf.write_text(text)


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all threads, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        return [int(c) for c in fh.read().split()]


def _tree_cpu(pid: int) -> tuple[float, float]:
    """``_proc_cpu`` summed over a process and its children (a SeGW's workers)."""
    total = [0.0, 0.0]
    for p in (pid, *_children(pid)):
        user, system = _proc_cpu(p)
        total[0] += user
        total[1] += system
    return total[0], total[1]


def _responder_cpu(summary: dict[str, Any], before: tuple[float, float],
                   after: tuple[float, float]) -> None:
    """System time matters here: the kernel's UDP, veth and NAPT work for the replies runs
    in the responder's sendto."""
    user, system = after[0] - before[0], after[1] - before[1]
    summary["responder_cpu_seconds"] = round(user + system, 3)
    summary["responder_sys_seconds"] = round(system, 3)


# --- rekeying --------------------------------------------------------------------------------

def rekey_row(args: argparse.Namespace, topo: Any, ca: Any, creds: Any, workdir: Path,
              with_strongswan: bool) -> dict[str, Any]:
    """Per responder: the same handshakes without and with a CHILD and an IKE rekey each."""
    suite = SUITES["x25519-psk"]
    row: dict[str, Any] = {}
    targets = [("ikecp-segw", lambda a: run_ikecp_segw(suite, a, topo, ca, creds, workdir))]
    if with_strongswan:
        targets.append(("strongswan", lambda a: run_strongswan(suite, a, topo, ca, creds,
                                                               workdir)))
    for name, runner in targets:
        try:
            base = runner(argparse.Namespace(**{**vars(args), "load_kw": {}}))
            rekeyed = runner(argparse.Namespace(**{**vars(args),
                                                   "load_kw": {"rekey_after": 0.0}}))
        except Exception as exc:  # reported, the rest of the run goes on
            row[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            print(f"  rekeys, {name} failed: {row[name]['error'][:400]}", flush=True)
            continue
        done = sum(r["done"] for r in rekeyed["renewals"].values())
        extra_cpu = rekeyed["responder_cpu_seconds"] - base["responder_cpu_seconds"]
        extra_wall = rekeyed["wall_seconds"] - base["wall_seconds"]
        row[name] = {
            "rekeys": done, "failures": rekeyed["failures"],
            "rekeys_per_s": round(done / extra_wall, 1) if extra_wall > 0 else None,
            "responder_cpu_us_per_rekey": round(extra_cpu / done * 1e6, 1) if done else None,
            "latency_ms": {k: v for k, v in rekeyed["renewals"].items()},
        }
        print(f"  rekeys, {name}: {row[name]}", flush=True)
    return row


# --- SAs held ------------------------------------------------------------------------------

#: Handshakes per fill run: each run stays well inside the load generator's time limits.
FILL_CHUNK = 25_000
#: Seconds to wait after a fill, so the SeGW's periodic sweep (every 5 s) has passed over the
#: new SAs once before the measured batch.
SETTLE = 6.0


def held_rows(args: argparse.Namespace, topo: Any, ca: Any, creds: Any,
              workdir: Path) -> dict[str, Any]:
    """One ``ikecp segw`` (X25519 + PSK, no data plane) measured while it holds more and
    more SAs: at each level of ``args.held`` the load generator first establishes SAs up to
    that level and leaves them up (no DELETE; the SeGW keeps them, their bindings and timers),
    then a measured batch of ``args.held_batch`` handshakes gives responder CPU per handshake
    and rate. Memory per SA: the SeGW process's RSS growth over the SAs it holds at the end
    (every SA: IKE SA + CHILD SA, binding in SQLite, dispatcher tables, timers)."""
    suite = SUITES["x25519-psk"]

    def load(count: int, label: str, window: int) -> dict[str, Any]:
        run_args = argparse.Namespace(**{**vars(args), "count": count, "window": window,
                                         "teardown": False, "load_kw": {}})
        return _load(suite, run_args, topo, ca, netns.SEGW_ADDR,
                     id_template=f"{label}-{{n}}@lab.example")

    def measure(proc: subprocess.Popen[str]) -> dict[str, Any]:
        rss0, held, rows = _rss(proc.pid), 0, []
        for level in sorted(set(args.held)):
            fill_started = time.monotonic()
            while held < level:
                chunk = min(FILL_CHUNK, level - held)
                done = load(chunk, f"fill{level}-{held}", 2 * args.window)["established"]
                if done < chunk // 2:
                    raise RuntimeError(f"fill to {level}: only {done}/{chunk} established")
                held += done
            if time.monotonic() - fill_started > 0.1:
                time.sleep(SETTLE)
            cpu0 = _tree_cpu(proc.pid)
            batch = load(args.held_batch, f"batch{level}", args.window)
            _responder_cpu(batch, cpu0, _tree_cpu(proc.pid))
            row = {"held": held, "established": batch["established"],
                   "failures": batch["failures"], "rate_middle_80": batch["rate_middle_80"],
                   "responder_cpu_us_per_handshake": _per_hs(batch, "responder_cpu_seconds"),
                   "initiator_cpu_us_per_handshake": batch["cpu_us_per_handshake"],
                   "responder_rss_mb": round(_rss(proc.pid) / 2**20, 1)}
            held += batch["established"]
            rows.append(row)
            print(f"  held {row['held']}: {row}", flush=True)
        grown = _rss(proc.pid) - rss0
        import sqlite3
        with sqlite3.connect(f"file:{workdir / 'bindings.sqlite'}?mode=ro", uri=True) as db:
            bindings = db.execute("SELECT count(*) FROM bindings").fetchone()[0]
        base = rows[0]["responder_cpu_us_per_handshake"] if rows else None
        top = rows[-1]["responder_cpu_us_per_handshake"] if rows else None
        return {"rows": rows, "held_at_end": held, "bindings_at_end": bindings,
                "rss_growth_mb": round(grown / 2**20, 1),
                "bytes_per_sa": round(grown / held) if held else None,
                "cpu_growth": round(top / base - 1, 3) if base and top else None}

    return run_ikecp_segw(suite, args, topo, ca, creds, workdir, measure=measure)


# --- SeGW scale ------------------------------------------------------------------------------


def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_per_sa(n: int) -> dict[str, Any]:
    """Establish ``n`` SAs with in-memory engines (initiator behind a simulated NAPT, NAT-T,
    CP with inner IP + NAT-info, first CHILD_SA) and keep what a SeGW keeps: the responder
    ``IkeSa`` by SPI and its CHILD_SA (the ``ChildSaEstablished`` keys)."""
    proposal = (IkeProposal.parse("aes256gcm16-prfsha256-x25519"),)
    segw = Settings(local_id=identity(SEGW_ID), auth=PskAuthenticator(DEFAULT_PSK),
                    ike_proposals=proposal,
                    cp=CpRegistry().add_provider(NatInfoProvider())
                    .add_provider(PoolProvider(AddressPool("10.0.0.0/8"))))
    fap = Settings(local_id=identity("fap-0@lab.example"), auth=PskAuthenticator(DEFAULT_PSK),
                   ike_proposals=proposal, cp=CpRegistry().add_handler(NatInfoHandler()))
    table: dict[bytes, tuple[IkeSa, ChildSaEstablished]] = {}
    gc.collect()
    before = _rss()
    start = time.perf_counter()
    for k in range(n):
        i = IkeSa.initiator(replace(fap, local_id=identity(f"fap-{k}@lab.example")),
                            ("100.64.0.2", 500), ("198.51.100.10", 500))
        r = IkeSa.responder(segw, ("198.51.100.10", 500))
        public = 1024 + k % 60000
        for _ in range(2):
            for d in i.datagrams_to_send(0.0):
                r.receive_datagram(d.data, ("198.51.100.1", public), 0.0, d.remote[1])
            for d in r.datagrams_to_send(0.0):
                i.receive_datagram(d.data, ("198.51.100.10", d.local_port), 0.0, d.remote[1])
        child = None
        while (ev := r.next_event()) is not None:
            if isinstance(ev, ChildSaEstablished):
                child = ev
        if not (r.established and child is not None):
            raise RuntimeError(f"in-memory handshake {k} failed")
        table[r.spi_r] = (r, child)
    elapsed = time.perf_counter() - start
    gc.collect()
    grown = _rss() - before
    return {"sas": len(table), "rss_delta_mb": round(grown / 2**20, 1),
            "bytes_per_sa": round(grown / n), "in_memory_handshakes_per_s": round(n / elapsed)}


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    ap.add_argument("--count", type=int, help="handshakes per suite and target")
    ap.add_argument("--window", type=int, default=64, help="outstanding handshakes")
    ap.add_argument("--suites", default=",".join(SUITES),
                    help="comma-separated (empty: only the memory scale)")
    ap.add_argument("--scale", type=int, help="SAs for the memory measurement (0: skip)")
    ap.add_argument("--teardown", action="store_true",
                    help="DELETE each SA right after it is up (default: keep them all)")
    ap.add_argument("--no-strongswan", action="store_true")
    ap.add_argument("--no-fake-kernel", action="store_true",
                    help="skip strongSwan built with load-tester's fake kernel")
    ap.add_argument("--no-rekey", action="store_true", help="skip the rekey row")
    ap.add_argument("--held", help="comma-separated SA counts the SeGW holds while a batch is "
                    "measured (default 0,10000,50000,100000; --quick 0,2000,5000; empty: skip)")
    ap.add_argument("--held-batch", type=int, help="handshakes measured at each --held level")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    args.count = args.count or (500 if args.quick else 5000)
    if args.held is None:
        args.held = "0,2000,5000" if args.quick else "0,10000,50000,100000"
    args.held = [int(n) for n in args.held.split(",") if n.strip()]
    args.held_batch = args.held_batch or (500 if args.quick else 3000)
    scale = args.scale if args.scale is not None else (10_000 if args.quick else 100_000)
    notes: list[str] = []
    use_ns = netns.probe() is None
    if not use_ns:
        notes.append(f"no namespaces ({netns.probe()}): ikecp on loopback only")
    why_no_swan = "disabled" if args.no_strongswan else strongswan.probe()
    if why_no_swan or not use_ns:
        notes.append(f"strongSwan skipped: {why_no_swan or 'needs namespaces'}")
    fake_kernel: Path | None = None
    if not (why_no_swan or not use_ns or args.no_fake_kernel):
        fake_kernel, built = build_loadtester()
        notes.append(f"strongSwan fake kernel: {built}" if fake_kernel
                     else f"strongSwan fake kernel skipped: {built}")
        print(notes[-1], flush=True)
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; backend {BACKEND_NAME}; {args.count} handshakes "
          f"per run, window {args.window}", flush=True)
    results: dict[str, Any] = {"notes": notes, "suites": {}}
    from ikecp.lab.ca import CertAuthority
    ca = CertAuthority("ikecp bench CA")
    creds = ca.issue([SEGW_ID])
    with tempfile.TemporaryDirectory(prefix="ikecp-bench-") as tmp:
        topo = netns.NatTopology().create() if use_ns else None
        try:
            for key in filter(None, args.suites.split(",")):
                suite = SUITES[key]
                row: dict[str, Any] = {"floor_us": crypto_floor(suite)}
                row["engine_us"] = engine_cpu(suite, ca, creds, 100 if args.quick else 300)
                print(f"\n{suite.name}: crypto floor per side {row['floor_us']} us; in-memory "
                      f"engine per handshake {row['engine_us']}", flush=True)
                if topo is not None:
                    row["ikecp-segw"] = run_ikecp_segw(suite, args, topo, ca, creds, Path(tmp))
                    _print_target("ikecp segw", row["ikecp-segw"], row["floor_us"]["total"])
                    row["ikecp-segw-2w"] = run_ikecp_segw(suite, args, topo, ca, creds,
                                                          Path(tmp), workers=2)
                    _print_target("ikecp segw, 2 workers (CPU of all processes)",
                                  row["ikecp-segw-2w"], row["floor_us"]["total"])
                    row["ikecp-segw-tun"] = run_ikecp_segw(suite, args, topo, ca, creds,
                                                           Path(tmp), dataplane="tun")
                    _print_target("ikecp segw, dataplane tun", row["ikecp-segw-tun"],
                                  row["floor_us"]["total"])
                row["ikecp"] = run_ikecp(suite, args, topo, ca, creds)
                _print_target("ikecp Dispatcher loop", row["ikecp"], row["floor_us"]["total"])
                if not (why_no_swan or topo is None):
                    try:
                        row["strongswan"] = run_strongswan(suite, args, topo, ca, creds,
                                                           Path(tmp))
                        _print_target("strongSwan", row["strongswan"],
                                      row["floor_us"]["total"])
                    except Exception as exc:  # reported, the rest of the run goes on
                        row["strongswan"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                        print(f"  strongSwan failed: {row['strongswan']['error'][:400]}")
                if fake_kernel is not None and topo is not None:
                    try:
                        row["strongswan-fake"] = run_strongswan(
                            suite, args, topo, ca, creds, Path(tmp), fake_kernel=fake_kernel)
                        _print_target("strongSwan, load-tester fake kernel",
                                      row["strongswan-fake"], row["floor_us"]["total"])
                    except Exception as exc:  # reported, the rest of the run goes on
                        err = f"{type(exc).__name__}: {exc}"[:2000]
                        row["strongswan-fake"] = {"error": err}
                        print(f"  strongSwan (fake kernel) failed: {err[:400]}")
                results["suites"][key] = row
            if topo is not None and not args.no_rekey:
                print("\nrekeying (CHILD + IKE rekey per FAP, X25519 + PSK)", flush=True)
                results["rekey"] = rekey_row(args, topo, ca, creds, Path(tmp),
                                             not why_no_swan)
            if topo is not None and args.held:
                print(f"\nSAs held (ikecp segw, X25519 + PSK, {args.held_batch} handshakes "
                      "measured at each level)", flush=True)
                results["held"] = held_rows(args, topo, ca, creds, Path(tmp))
        finally:
            if topo is not None:
                topo.destroy()
    if scale:
        results["scale"] = memory_per_sa(scale)
        print(f"\nSeGW scale: {results['scale']}")
    _print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _per_hs(summary: dict[str, Any], key: str) -> float | None:
    ok = summary.get("established") or 0
    return round(summary[key] / ok * 1e6, 1) if ok and key in summary else None


def _print_target(name: str, s: dict[str, Any], floor: float) -> None:
    r_us = _per_hs(s, "responder_cpu_seconds")
    s["responder_cpu_us_per_handshake"] = r_us
    s["efficiency"] = round(floor / r_us, 2) if r_us else None
    sys_us = _per_hs(s, "responder_sys_seconds")
    print(f"  {name}: {s['established']}/{s['started']} established, failures {s['failures']}, "
          f"{s['rate_middle_80']} hs/s (middle 80 %), latency p50 {s['latency_ms']['p50']} ms "
          f"p99 {s['latency_ms']['p99']} ms; responder {r_us} us CPU/hs ({sys_us} system), "
          "initiator "
          f"{s['cpu_us_per_handshake']} us CPU/hs; NAT-info {s['nat_info']['returned']} "
          f"returned, {s['nat_info']['matched']} matched", flush=True)


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    x, y = a.get(key), b.get(key)
    return round(x / y, 2) if x and y else None


def _print_table(results: dict[str, Any]) -> None:
    print("\n| suite | target | hs/s | responder µs CPU/hs | initiator µs CPU/hs | floor µs |"
          " efficiency | engine alone µs (resp/init) |\n|---|---|---|---|---|---|---|---|")
    for key, row in results["suites"].items():
        for target in ("ikecp-segw", "ikecp-segw-2w", "ikecp-segw-tun", "ikecp", "strongswan",
                       "strongswan-fake"):
            s = row.get(target)
            if not s or "error" in s:
                continue
            eng = row["engine_us"]
            engine = f"{eng['responder_us']} / {eng['initiator_us']}" if target == "ikecp" \
                else ""
            print(f"| {key} | {target} | {s['rate_middle_80']} | "
                  f"{s['responder_cpu_us_per_handshake']} | {s['cpu_us_per_handshake']} | "
                  f"{row['floor_us']['total']} | {s['efficiency']} | {engine} |")
        pairs = (("ikecp segw 2 workers/1 worker (CPU summed over all processes)",
                  row.get("ikecp-segw-2w"), row.get("ikecp-segw")),
                 ("ikecp segw/strongSwan fake kernel (like for like: control plane only)",
                  row.get("ikecp-segw") or row.get("ikecp"), row.get("strongswan-fake")),
                 ("ikecp segw tun/strongSwan libipsec (like for like: CHILD SAs installed)",
                  row.get("ikecp-segw-tun"), row.get("strongswan")),
                 ("ikecp segw/strongSwan libipsec (not like for like)",
                  row.get("ikecp-segw") or row.get("ikecp"), row.get("strongswan")))
        for name, a, b in pairs:
            if a and b and "error" not in a and "error" not in b:
                ratios = [_ratio(a, b, k) for k in ("rate_middle_80",
                                                    "responder_cpu_us_per_handshake",
                                                    "cpu_us_per_handshake")]
                print(f"| {key} | {name} | {ratios[0]} | {ratios[1]} | {ratios[2]} | | | |")
    rekey = results.get("rekey") or {}
    if rekey:
        print("\n| rekeys (CHILD + IKE) | rekeys/s | responder µs CPU/rekey | latency p50 ms "
              "(child / ike) |\n|---|---|---|---|")
        for target, r in rekey.items():
            if "error" in r:
                print(f"| {target} | error | | |")
                continue
            lat = r["latency_ms"]
            p50 = " / ".join(str(lat.get(k, {}).get("p50")) for k in ("child rekey", "ike rekey"))
            print(f"| {target} | {r['rekeys_per_s']} | {r['responder_cpu_us_per_rekey']} | "
                  f"{p50} |")
        a, b = rekey.get("ikecp-segw"), rekey.get("strongswan")
        if a and b and "error" not in a and "error" not in b:
            print(f"| ikecp/strongSwan | {_ratio(a, b, 'rekeys_per_s')} | "
                  f"{_ratio(a, b, 'responder_cpu_us_per_rekey')} | |")
    held = results.get("held")
    if held:
        print("\n| SAs held | hs/s | responder µs CPU/hs | SeGW RSS MB |\n|---|---|---|---|")
        for r in held["rows"]:
            print(f"| {r['held']} | {r['rate_middle_80']} | "
                  f"{r['responder_cpu_us_per_handshake']} | {r['responder_rss_mb']} |")
        print(f"| growth, last level / first | | {held['cpu_growth']} | |")
        print(f"SeGW memory: {held['bytes_per_sa']} B RSS per SA held ({held['held_at_end']} "
              f"SAs, {held['bindings_at_end']} bindings in the registry)")
    for key, row in results["suites"].items():
        for target in ("strongswan", "strongswan-fake"):
            probe = (row.get(target) or {}).get("cookie_probe")
            if probe:
                print(f"{key} {target}: {probe['cookie_demands']} COOKIE demands among "
                      f"{probe['answered']} answers to {probe['sent']} IKE_SA_INITs sent back "
                      "to back from one address (charon-systemd.cookie_threshold_ip lifted)")
    for note in results["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
