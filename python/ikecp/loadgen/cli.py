"""``ikecp loadgen``: the command line of the load generator (registered by ``ikecp.cli``)."""

from __future__ import annotations

import argparse
import sys

from ..config import ConfigError, output_file_arg, seconds_arg
from ..engine import RetransmitPolicy
from .generator import DEFAULT_PSK, LoadConfig, TargetRefusedError, run
from .report import format_text, live_progress, plot, summarize, write_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "loadgen", help="simulate many femtocells handshaking with an IKEv2 responder",
        description="Simulated FAPs, each with its own identity and source port, run IKE_SA_INIT"
        " + IKE_AUTH (+ CP, first CHILD_SA) against TARGET. Bounded by --count and --duration."
        " Only loopback and namespace test addresses unless --i-own-this-target.")
    p.add_argument("target", help="responder IP address")
    p.add_argument("--port", type=int, default=500, help="responder IKE port (500)")
    p.add_argument("--natt-port", type=int, default=4500, help="responder NAT-T port (4500)")
    p.add_argument("-n", "--count", type=int, default=1000, help="handshakes in total")
    p.add_argument("-d", "--duration", type=float, default=60.0,
                   help="seconds after which no handshake starts (default 60)")
    p.add_argument("--rate", type=float, help="open loop: handshakes per second")
    p.add_argument("--ramp", type=float, default=0.0, help="open loop: seconds to reach --rate")
    p.add_argument("-w", "--window", type=int, default=32,
                   help="closed loop: handshakes outstanding (default 32)")
    p.add_argument("--faps", type=int, help="distinct simulated FAPs (default: --count)")
    p.add_argument("--id-template", default="fap-{n}@lab.example")
    p.add_argument("--remote-id", help="identity the responder must prove")
    p.add_argument("--psk", default=DEFAULT_PSK.decode(), help="pre-shared key")
    p.add_argument("--cert", action="store_true",
                   help="per-FAP ECDSA certificates from a fresh CA (its root is written to "
                   "--ca-out for the responder)")
    p.add_argument("--ca-out", default="loadgen-ca.pem", type=output_file_arg)
    p.add_argument("--ike", default="aes256gcm16-prfsha256-x25519", help="IKE proposal")
    p.add_argument("--esp", default="aes256gcm16", help="ESP proposal of the first CHILD_SA")
    p.add_argument("--source", default="127.0.0.1",
                   help="source address, or a network whose hosts the FAPs use in turn")
    p.add_argument("--nat", action="store_true", help="each FAP behind the userspace NAPT")
    p.add_argument("--force-encap", action="store_true", help="always float to NAT-T")
    p.add_argument("--always-marker", action="store_true",
                   help="non-ESP marker on every message (strongSwan on non-500 ports)")
    p.add_argument("--rekey-after", type=float, metavar="S",
                   help="S s after establishment rekey the CHILD SA, S s later the IKE SA")
    p.add_argument("--reauth-after", type=float, metavar="S",
                   help="then, S s later, reauthenticate (new IKE SA, make-before-break)")
    p.add_argument("--hold", type=float, default=0.0, help="seconds to keep each SA up")
    p.add_argument("--no-teardown", action="store_true", help="do not DELETE SAs at the end")
    p.add_argument("--timeout", type=float, default=10.0, help="per-handshake time limit")
    p.add_argument("--retransmit", type=seconds_arg(0.05, 60), default=1.0,
                   help="first retransmit after s")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--json", metavar="FILE", type=output_file_arg,
                   help="write the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", type=output_file_arg,
                   help="latency histogram + rate (matplotlib)")
    p.add_argument("--plain", action="store_true", help="plain progress lines, no rich")
    p.add_argument("--i-own-this-target", action="store_true",
                   help="allow a target outside loopback and the namespace test networks")


#: LoadConfig fields whose flag is not ``--`` + the field name with dashes.
_FLAGS = {"target": "target", "ike_proposal": "--ike", "esp_proposal": "--esp",
          "ca": "--cert"}


def main(args: argparse.Namespace) -> int:
    ca = None
    if args.cert:
        from ..lab.ca import CertAuthority
        ca = CertAuthority("ikecp loadgen CA")
        with open(args.ca_out, "wb") as fh:
            fh.write(ca.cert_pem)
    try:
        cfg = LoadConfig(
            target=args.target, port=args.port, natt_port=args.natt_port, count=args.count,
            duration=args.duration, rate=args.rate, ramp=args.ramp, window=args.window,
            faps=args.faps, id_template=args.id_template, remote_id=args.remote_id,
            auth="cert" if args.cert else "psk", psk=args.psk.encode(), ike_proposal=args.ike,
            esp_proposal=args.esp, source=args.source, nat=args.nat,
            force_encap=args.force_encap, always_marker=args.always_marker, hold=args.hold,
            rekey_after=args.rekey_after, reauth_after=args.reauth_after,
            teardown=not args.no_teardown, timeout=args.timeout,
            retransmit=RetransmitPolicy(timeout=args.retransmit, backoff=2.0, tries=3),
            workers=args.workers, i_own_this_target=args.i_own_this_target, ca=ca)
    except TargetRefusedError as exc:
        print(f"ikecp loadgen: refused: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"ikecp loadgen: {_FLAGS.get(exc.key, '--' + exc.key.replace('_', '-'))}: "
              f"{exc.problem}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"ikecp loadgen: {exc}", file=sys.stderr)
        return 2
    with live_progress(args.plain) as progress:
        result = run(cfg, progress)
    summary = summarize(cfg, result)
    print(format_text(summary))
    if args.json:
        write_json(args.json, summary)
    if args.plot:
        plot(args.plot, result)
    return 0 if summary["failed"] == 0 else 1
