"""Command line entry point: ``ikecp info``, ``ikecp decode`` and ``ikecp loadgen``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass

from . import BACKEND_NAME, __version__, backend, loadgen_cli
from .errors import ParseError
from .framing import Kind, classify


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ikecp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ikecp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the version and the active backend")
    dec = sub.add_parser("decode", help="decode an IKE message given as hex ('-' reads stdin)")
    dec.add_argument("hex", help="the message in hex, or - to read it from standard input")
    loadgen_cli.register(sub)
    args = parser.parse_args(argv)
    if args.command == "loadgen":
        return loadgen_cli.main(args)
    if args.command == "info":
        print(f"ikecp {__version__}, backend: {BACKEND_NAME}")
        return 0
    return _decode(sys.stdin.read() if args.hex == "-" else args.hex)


if __name__ == "__main__":
    sys.exit(main())
