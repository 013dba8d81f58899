"""Command line entry point.

``ikecp info`` / ``decode`` inspect; ``segw`` and ``fap`` run the two roles from a TOML
config; ``bindings`` queries a running (or stopped) SeGW's binding database; ``demo`` runs a
SeGW, a userspace NAPT and a few FAPs on loopback and checks the NAT-info answers;
``loadgen`` (``loadgen_cli``) simulates many FAPs against a responder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import sys
import tempfile
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import BACKEND_NAME, __version__, backend
from .config import DEFAULT_BINDINGS, ConfigError, int_arg, output_file_arg, seconds_arg
from .errors import ParseError
from .framing import Kind, classify
from .loadgen import cli as loadgen_cli

if TYPE_CHECKING:
    from .config import FapConfig, SegwConfig


def _jsonable(obj: object) -> object:
    if is_dataclass(obj) and not isinstance(obj, type):
        d = asdict(obj)
        ptype = getattr(obj, "payload_type", None)
        if ptype is not None:
            d = {"payload": type(obj).__name__, **d}
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def _decode(hexdata: str) -> int:
    """Decode one IKE message given as hex (a UDP/4500 non-ESP marker is stripped)."""
    try:
        data = bytes.fromhex("".join(hexdata.split()))
    except ValueError as exc:
        print(f"ikecp decode: not hex: {exc}", file=sys.stderr)
        return 2
    kind, body = classify(data)
    if kind is Kind.IKE:
        data = body
    try:
        msg = backend.decode_message(data)
    except ParseError as exc:
        print(f"ikecp decode: malformed message: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(_jsonable(msg), indent=2))
    return 0


def _setup_logging(args: argparse.Namespace) -> None:
    level = args.log_level or ("DEBUG" if args.verbose > 1 else "INFO" if args.verbose
                               else "WARNING")
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _stop_on_signal() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; installed before a role says it is up, so a
    signal right after that line still shuts down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _start_metrics(address: str | None, role: str, snapshot: Callable[[], Any], *,
                   quiet_stdout: bool = False) -> Any:
    """The Prometheus endpoint of a role, if configured; says where it listens (on stderr
    when stdout carries JSON lines)."""
    if not address:
        return None
    from .roles.metrics import MetricsServer

    server = MetricsServer(address, role, snapshot, asyncio.get_running_loop()).start()
    print(f"metrics on {server.url}", flush=True, file=sys.stderr if quiet_stdout else None)
    return server


def _check_config(role: str, cfg: Any) -> int:
    """``--check-config``: the file parsed and validated; now build what ``start`` would
    (credentials read, proposals and pool parsed) without binding anything."""
    try:
        cfg.settings()
    except (ValueError, OSError) as exc:  # a credential that does not load
        print(f"ikecp {role}: config error: {exc}", file=sys.stderr)
        return 2
    print(f"ikecp {role}: configuration OK", flush=True)
    return 0


_Cfg = TypeVar("_Cfg", "SegwConfig", "FapConfig")


def _with_dataplane(cfg: _Cfg, args: argparse.Namespace) -> _Cfg:
    """``--dataplane`` overrides the config's ``dataplane`` (checked like the file); a
    ``tun`` data plane this machine cannot run fails here, before anything starts."""
    if args.dataplane is not None:
        cfg = replace(cfg, dataplane=args.dataplane)
        cfg._check("--dataplane")
    if cfg.dataplane == "tun":
        from .dataplane.tun import check_available

        check_available()
    return cfg


def _segw(args: argparse.Namespace) -> int:
    from .config import load_segw
    from .roles.gateway import Gateway
    from .roles.metrics import EventCounts, gateway_snapshot

    cfg = load_segw(args.config) if args.config else None
    if cfg is None:
        print("ikecp segw: --config is required", file=sys.stderr)
        return 2
    if cfg.bindings is None:  # the daemon keeps its bindings in a file unless told where
        cfg = replace(cfg, bindings=DEFAULT_BINDINGS)
    if args.keylog:
        cfg = replace(cfg, keylog=args.keylog)
    cfg = _with_dataplane(cfg, args)
    if args.metrics:
        cfg = replace(cfg, metrics=args.metrics)
        cfg._check(args.config)
    if args.workers is not None:
        cfg = replace(cfg, workers=args.workers)
        cfg._check("--workers")
    if args.check_config:
        return _check_config("segw", cfg)
    if cfg.worker_count() > 1:
        return _segw_workers(cfg)

    counts = EventCounts()
    return _serve_segw(
        cfg, lambda: Gateway(cfg, on_event=counts.observe if cfg.metrics else None), "",
        lambda gw: _start_metrics(cfg.metrics, "segw", lambda: gateway_snapshot(gw, counts)))


def _segw_workers(cfg: SegwConfig) -> int:
    """``ikecp segw`` with several worker processes (``ikecp.roles.workers``)."""
    from .roles.metrics import MetricsServer
    from .roles.workers import Supervisor, SupervisorMetrics

    def start_metrics(sup: Supervisor) -> MetricsServer | None:
        if not cfg.metrics:
            return None
        server = SupervisorMetrics(cfg.metrics, sup, asyncio.get_running_loop()).start()
        print(f"metrics on {server.url}", flush=True)
        return server

    count = cfg.worker_count()
    return _serve_segw(
        cfg, lambda: Supervisor(cfg, count, log_level=logging.getLogger().level),
        f", {count} workers", start_metrics)


def _serve_segw(cfg: SegwConfig, build: Callable[[], Any], suffix: str,
                start_metrics: Callable[[Any], Any]) -> int:
    """Run a SeGW (one process, or the workers' supervisor) until SIGTERM/SIGINT. The signal
    handlers go in before the line that says it is up: a SIGTERM right after that line must
    stop it cleanly."""

    async def run() -> None:
        try:
            role = build()
        except sqlite3.DatabaseError as exc:
            raise ConfigError("bindings", f"cannot use {cfg.bindings}: {exc}") from None
        stop = _stop_on_signal()
        await role.start()
        where = ", ".join(cfg.listen)
        print(f"SeGW {cfg.identity} on {where} ports {role.ports[0]}/{role.ports[1]}, "
              f"bindings in {cfg.bindings}{suffix}", flush=True)
        metrics = start_metrics(role)
        try:
            await stop.wait()
        finally:
            await role.stop()
            if metrics is not None:
                metrics.close()

    asyncio.run(run())
    return 0


def _fap(args: argparse.Namespace) -> int:
    from .config import load_fap
    from .roles.femto import FapStatus, Femto
    from .roles.metrics import EventCounts, femto_snapshot

    if not args.config:
        print("ikecp fap: --config is required", file=sys.stderr)
        return 2
    cfg = load_fap(args.config)
    if args.keylog:
        cfg = replace(cfg, keylog=args.keylog)
    cfg = _with_dataplane(cfg, args)
    if args.metrics:
        cfg = replace(cfg, metrics=args.metrics)
        cfg._check(args.config)
    if args.check_config:
        return _check_config("fap", cfg)

    def show(status: FapStatus) -> None:
        if args.json:
            print(json.dumps(status.to_json()), flush=True)
        else:
            print(f"FAP {cfg.identity}: {status.describe()}", flush=True)

    async def stats(fap: Femto) -> None:
        while True:
            await asyncio.sleep(args.stats)
            show(fap.refresh_counters())

    async def run() -> int:
        counts = EventCounts()
        fap = Femto(cfg, on_status=show, on_event=counts.observe if cfg.metrics else None)
        stop = _stop_on_signal()
        await fap.start()
        metrics = _start_metrics(cfg.metrics, "fap", lambda: femto_snapshot(fap, counts),
                                 quiet_stdout=args.json)
        ticker = asyncio.create_task(stats(fap)) if args.stats else None
        try:
            if args.once:
                try:
                    await fap.wait_established(args.timeout)
                except TimeoutError:
                    print(f"ikecp fap: no SA within {args.timeout} s", file=sys.stderr)
                    return 1
                return 0
            await stop.wait()
            return 0
        finally:
            if ticker is not None:
                ticker.cancel()
            await fap.stop()
            if metrics is not None:
                metrics.close()

    return asyncio.run(run())


def _parse_public(text: str) -> tuple[str, int | None]:
    """``ADDR[:PORT]`` (``[v6]:PORT`` for IPv6); ValueError when the port is not 0-65535."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.endswith("]")):
        return text.strip("[]"), None
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(port)
    return host.strip("[]"), number


def _bindings(args: argparse.Namespace) -> int:
    from .roles.bindings import open_store

    if args.public:
        try:
            public = _parse_public(args.public)
        except ValueError:
            raise ConfigError("--public", f"wants ADDR[:PORT] with a port 0-65535, not "
                              f"{args.public!r}") from None
    db = Path(args.db)
    if db.is_dir():
        raise ConfigError("--db", f"is a directory: {args.db}")
    try:
        reg = open_store(args.db, reader=True)
    except FileNotFoundError:
        raise ConfigError("--db", f"no binding database at {args.db}") from None
    if args.follow:
        return _follow(reg)
    try:
        if args.inner_ip:
            found = reg.by_inner_ip(args.inner_ip)
        elif args.identity:
            found = reg.by_identity(args.identity)
        elif args.public:
            found = reg.by_public(*public)
        else:
            found = reg.all()
        if args.instance:
            found = [b for b in found if b.instance == args.instance]
        rows = [(b, reg.counters(b.spi_r, b.instance)) for b in found]
        live = {name: reg.live(name) for name in {b.instance for b in found}}
    except sqlite3.DatabaseError as exc:
        raise ConfigError("--db", f"not an ikecp binding database: {args.db} ({exc})") from None
    finally:
        reg.close()
    stale = sorted(name for name, up in live.items() if not up)
    if stale:
        print(f"ikecp bindings: no SeGW owns the rows of {', '.join(stale)} in {args.db} (it "
              "crashed or was killed): they are stale, their SAs are gone; that instance's "
              "next start closes them", file=sys.stderr)
    if args.json:
        for b, esp in rows:
            print(json.dumps({**b.to_json(), "esp": esp, "stale": not live[b.instance]}))
    else:
        print(f"{'identity':<28} {'inner IP':<15} {'public address':<24} {'SPIi':<16} "
              f"{'SPIr':<16} {'ESP packets in/out':<18} instance")
        for b, esp in rows:
            packets = f"{esp.get('packets_in', 0)}/{esp.get('packets_out', 0)}" if esp else "-"
            print(f"{b.identity:<28} {b.inner_ip or '-':<15} {b.public:<24} {b.spi_i} "
                  f"{b.spi_r} {packets:<18} {b.instance}")
    return 0 if rows or not (args.inner_ip or args.identity or args.public or args.instance) \
        else 1


def _follow(reg: Any) -> int:
    """Print every change as one JSON line until interrupted (SIGINT/SIGTERM: status 0)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for change in reg.follow():
            print(json.dumps(change), flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        reg.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .lab import demo
    from .roles.femto import FapStatus

    def show(status: FapStatus) -> None:
        if args.verbose:
            print(f"  {status.local}: {status.describe()}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="ikecp-demo-") as tmp:
        db = args.bindings or str(Path(tmp) / "bindings.sqlite")
        result = asyncio.run(demo.run(args.faps, bindings=db, timeout=args.timeout,
                                      on_status=show))
    print(demo.format_result(result))
    return 0 if result.ok else 1


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``ikecp demo: error: argument --faps: must be 1-250``
    (the usage is one ``--help`` away), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


EPILOG = """examples:
  ikecp demo                          SeGW + NAPT + 4 FAPs on loopback, checked
  ikecp segw --config segw.toml       run a security gateway
  ikecp fap --config fap.toml --json  run a femtocell, print its status as JSON lines
  ikecp bindings --db segw.sqlite --inner-ip 10.99.0.7
  locust -f "$(ikecp locustfile)" --host 127.0.0.1   FAPs as Locust users (web UI :8089)
"""


def _role_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", metavar="[ADDR:]PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics (a bare port "
                   "binds 127.0.0.1; overrides the config's 'metrics')")
    p.add_argument("--check-config", action="store_true",
                   help="validate the config (and read its credentials), then exit: "
                   "0 if it is good, 2 if not")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="ikecp", description=__doc__, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ikecp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-v: info, -vv: debug)")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log level (overrides -v; default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the version and the active backend")
    dec = sub.add_parser("decode", help="decode an IKE message given as hex ('-' reads stdin)")
    dec.add_argument("hex", help="the message in hex, or - to read it from standard input")

    segw = sub.add_parser("segw", help="run a security gateway (IKEv2 responder)",
                          description="Serve FAPs: PSK or certificate auth, inner IPv4 "
                          "addresses from a pool, EXTERNAL_SOURCE_IP4_NAT_INFO answers, and a "
                          "binding registry in SQLite. Ctrl-C / SIGTERM deletes every SA "
                          "and exits. See examples/segw.toml for every key.")
    segw.add_argument("--config", metavar="FILE", help="TOML config (see examples/segw.toml)")
    segw.add_argument("--keylog", metavar="FILE", type=output_file_arg,
                      help="append IKE SA keys in Wireshark's ikev2_decryption_table format "
                      "(secrets: off by default)")
    segw.add_argument("--workers", type=int_arg(1, 256), metavar="N",
                      help="worker processes sharing the ports (default: the config's "
                      "workers, else one per core)")
    segw.add_argument("--dataplane", choices=("tun", "none"),
                      help="tun: carry the FAPs' traffic (ESP in UDP, TUN device; root); "
                      "none: negotiate CHILD SAs only (default: the config's)")
    _role_options(segw)

    fap = sub.add_parser("fap", help="run a femtocell (IKEv2 initiator)",
                         description="Connect to the SeGW, report NAT detection, the inner "
                         "IP and the public IP:port the SeGW saw; keep the SA alive and "
                         "re-establish it when lost. See examples/fap.toml for every key.")
    fap.add_argument("--config", metavar="FILE", help="TOML config (see examples/fap.toml)")
    fap.add_argument("--json", action="store_true",
                     help="print each status change as one JSON object per line")
    fap.add_argument("--keylog", metavar="FILE", type=output_file_arg,
                     help="append IKE SA keys in Wireshark's ikev2_decryption_table format")
    _role_options(fap)
    fap.add_argument("--once", action="store_true",
                     help="exit (status 0) once the SA is established, after a DELETE")
    fap.add_argument("--timeout", type=seconds_arg(0.1, 86400), default=30.0,
                     help="with --once: give up after this many seconds (default 30)")
    fap.add_argument("--stats", type=seconds_arg(0.1, 86400), metavar="SECONDS",
                     help="print the status with the CHILD SA's ESP counters this often")
    fap.add_argument("--dataplane", choices=("tun", "none"),
                     help="tun: carry traffic through a TUN device with the inner IP "
                     "(ESP in UDP; root); none: negotiate the CHILD SA only")

    bnd = sub.add_parser("bindings", help="list or look up the SeGW's bindings",
                         description="Read the binding store (safe while SeGWs run), every "
                         "instance's rows. With no filter, list every binding. Exit status 1 "
                         "if a lookup finds nothing.")
    bnd.add_argument("--db", default=DEFAULT_BINDINGS,
                     help="the SeGW's 'bindings': an SQLite file or a postgresql:// URL "
                     "(default: %(default)s)")
    who = bnd.add_mutually_exclusive_group()
    who.add_argument("--inner-ip", metavar="X", help="the binding holding this inner IP")
    who.add_argument("--identity", metavar="X", help="bindings of this peer identity")
    who.add_argument("--public", metavar="A:P", help="bindings at this public address[:port]")
    bnd.add_argument("--instance", metavar="NAME",
                     help="only the bindings of this SeGW instance (shared stores)")
    bnd.add_argument("--json", action="store_true", help="one JSON object per binding")
    bnd.add_argument("--follow", action="store_true",
                     help="print each change (up, rebind, update, down) as a JSON line as it "
                     "happens, until interrupted (PostgreSQL: LISTEN; SQLite: polls history)")

    dm = sub.add_parser("demo", help="SeGW + userspace NAPT + FAPs on loopback, checked",
                        description="Start a SeGW, a userspace NAPT relay and a few FAPs on "
                        "loopback (unprivileged ports, no config), print the binding table "
                        "and each FAP's learned public address next to the NAPT's mapping. "
                        "Exit status 1 on any MISMATCH.")
    dm.add_argument("--faps", type=int_arg(1, 250), default=4,
                    help="number of FAPs (1-250, default 4)")
    dm.add_argument("--timeout", type=seconds_arg(0.1, 3600), default=15.0,
                    help="seconds to wait for every SA (default 15)")
    dm.add_argument("--bindings", metavar="FILE", type=output_file_arg,
                    help="keep the binding database here (default: a temporary file)")
    sub.add_parser("locustfile", help="print the path of the Locust user (a FAP) for "
                   "'locust -f'", description="Print the path of ikecp's Locust file: "
                   "locust -f \"$(ikecp locustfile)\" --host 127.0.0.1 --ikecp-port 500 "
                   "(needs pip install 'ikecp[locust]'; see docs/operations.md).")
    loadgen_cli.register(sub)
    args = parser.parse_args(argv)
    if args.command == "loadgen":
        return loadgen_cli.main(args)
    if args.command == "locustfile":
        print(Path(__file__).parent / "loadgen" / "locust_fap.py")
        return 0
    if args.command == "info":
        print(f"ikecp {__version__}, backend: {BACKEND_NAME}")
        return 0
    if args.command == "decode":
        return _decode(sys.stdin.read() if args.hex == "-" else args.hex)
    _setup_logging(args)
    from .dataplane import DataplaneUnavailableError

    try:
        handler = {"segw": _segw, "fap": _fap, "bindings": _bindings, "demo": _demo}
        return handler[args.command](args)
    except ConfigError as exc:
        kind = "" if exc.key.startswith("-") else "config error: "
        print(f"ikecp {args.command}: {kind}{exc}", file=sys.stderr)
        return 2
    except DataplaneUnavailableError as exc:
        print(f"ikecp {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ikecp {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
