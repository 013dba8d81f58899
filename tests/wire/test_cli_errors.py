"""Every bad config value and command-line argument: one line naming the key or the flag,
exit status 2, never a traceback. The real CLI in a subprocess, as a user runs it.

Each case is (command line, files to write, text the message must contain). In the command
line and the files, ``{d}`` is a temporary directory holding ``ca.pem``, ``segw.test.pem``,
``segw.test.key.pem`` and ``fap.test.key.pem`` (a key that does not match segw.test's
certificate), ``garbage`` (not PEM, not SQLite), ``empty`` (0 octets) and ``dir/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ikecp.lab.ca import write_pki

CLI = [sys.executable, "-m", "ikecp.cli"]

SEGW = 'psk = "a long enough secret"\nport = 0\nnatt_port = 0\nbindings = "{d}/b.sqlite"\n'
FAP = 'psk = "a long enough secret"\nsegw_port = 500\nsegw_natt_port = 4500\n'
SEGW_CERT = 'port = 0\nnatt_port = 0\nbindings = "{d}/b.sqlite"\nidentity = "segw.test"\n'


def segw(extra: str, base: str = SEGW) -> tuple[list[str], dict[str, str]]:
    return ["segw", "--config", "{d}/segw.toml"], {"segw.toml": base + extra}


def fap(extra: str, *flags: str) -> tuple[list[str], dict[str, str]]:
    return ["fap", "--config", "{d}/fap.toml", *flags], {"fap.toml": FAP + extra}


def certs(cert: str = "{d}/segw.test.pem", key: str = "{d}/segw.test.key.pem",
          ca: str = "{d}/ca.pem") -> str:
    return f'cert = "{cert}"\nkey = "{key}"\nca = ["{ca}"]\n'


LOADGEN = ["loadgen", "127.0.0.1", "-n", "1", "--plain"]

CASES: list[tuple[str, list[str], dict[str, str], str]] = [
    # --- ikecp segw: config keys ---------------------------------------------------------
    ("segw garbage cert PEM", *segw(certs(cert="{d}/garbage"), SEGW_CERT), "cert:"),
    ("segw garbage CA PEM", *segw(certs(ca="{d}/garbage"), SEGW_CERT), "ca:"),
    ("segw key not matching cert", *segw(certs(key="{d}/fap.test.key.pem"), SEGW_CERT),
     "key:"),
    ("segw garbage key PEM", *segw(certs(key="{d}/garbage"), SEGW_CERT), "key:"),
    ("segw CA is a directory", *segw(certs(ca="{d}/dir"), SEGW_CERT), "ca:"),
    ("segw non-ASCII identity", *segw('identity = "s\u00e9gw.example"\n'), "identity:"),
    ("segw non-ASCII [peers] key",
     *segw('[peers]\n"f\u00e4p.example" = "a long enough secret"\n'), "peers:"),
    ("segw empty psk", *segw('', 'psk = ""\nbindings = "{d}/b.sqlite"\n'), "psk:"),
    ("segw empty per-peer psk", *segw('[peers]\n"fap.example" = ""\n'), "peers:"),
    ("segw bindings in a missing directory",
     *segw('', SEGW.replace("{d}/b.sqlite", "{d}/missing/b.sqlite")), "bindings:"),
    ("segw bindings is a directory", *segw('', SEGW.replace("{d}/b.sqlite", "{d}/dir")),
     "bindings:"),
    ("segw bindings not a database", *segw('', SEGW.replace("{d}/b.sqlite", "{d}/garbage")),
     "bindings:"),
    ("segw events in a missing directory", *segw('events = "{d}/missing/e.jsonl"\n'),
     "events:"),
    ("segw keylog is a directory", *segw('keylog = "{d}/dir"\n'), "keylog:"),
    ("segw binding_expiry 1e-9", *segw("binding_expiry = 1e-9\n"), "binding_expiry:"),
    ("segw binding_expiry nan", *segw("binding_expiry = nan\n"), "binding_expiry:"),
    ("segw binding_expiry inf", *segw("binding_expiry = inf\n"), "binding_expiry:"),
    ("segw dpd nan", *segw("dpd = nan\n"), "dpd:"),
    ("segw dpd inf", *segw("dpd = inf\n"), "dpd:"),
    ("segw dpd 1e-9", *segw("dpd = 1e-9\n"), "dpd:"),
    ("segw dpd a year", *segw("dpd = 31536000\n"), "dpd:"),
    ("segw max_half_open 0", *segw("max_half_open = 0\n"), "max_half_open:"),
    ("segw port 70000", *segw("", SEGW.replace("port = 0\nnatt", "port = 70000\nnatt")),
     "port:"),
    ("segw unknown key", *segw('listen_addr = "127.0.0.1"\n'), "listen_addr:"),
    ("segw config missing", ["segw", "--config", "{d}/nothing.toml"], {}, "config:"),
    ("segw config is garbage", ["segw", "--config", "{d}/garbage"], {}, "config:"),
    ("segw without --config", ["segw"], {}, "--config"),
    # --- ikecp fap ---------------------------------------------------------------------------
    ("fap keepalive nan", *fap("keepalive = nan\n"), "keepalive:"),
    ("fap reconnect inf", *fap("reconnect = inf\n"), "reconnect:"),
    ("fap retransmit_timeout 1e-9", *fap("retransmit_timeout = 1e-9\n"),
     "retransmit_timeout:"),
    ("fap non-ASCII segw_id", *fap('segw_id = "s\u00e9gw"\n'), "segw_id:"),
    ("fap empty psk", ["fap", "--config", "{d}/fap.toml"], {"fap.toml": 'psk = ""\n'}, "psk:"),
    ("fap --timeout nan", *fap("", "--once", "--timeout", "nan"), "--timeout"),
    ("fap --timeout 0", *fap("", "--once", "--timeout", "0"), "--timeout"),
    ("fap --stats nan", *fap("", "--stats", "nan"), "--stats"),
    # --- ikecp bindings ----------------------------------------------------------------------
    ("bindings --db garbage", ["bindings", "--db", "{d}/garbage"], {}, "--db"),
    ("bindings --db directory", ["bindings", "--db", "{d}/dir"], {}, "--db"),
    ("bindings --db empty file", ["bindings", "--db", "{d}/empty"], {}, "--db"),
    ("bindings --db missing", ["bindings", "--db", "{d}/missing.sqlite"], {}, "--db"),
    ("bindings --public huge port",
     ["bindings", "--db", "{d}/ok.sqlite", "--public", "1.2.3.4:" + "9" * 30], {}, "--public"),
    ("bindings --public port 70000",
     ["bindings", "--db", "{d}/ok.sqlite", "--public", "1.2.3.4:70000"], {}, "--public"),
    # --- ikecp loadgen -----------------------------------------------------------------------
    ("loadgen --port 70000", [*LOADGEN, "--port", "70000"], {}, "--port"),
    ("loadgen --natt-port -1", [*LOADGEN, "--natt-port", "-1"], {}, "--natt-port"),
    ("loadgen --source foo", [*LOADGEN, "--source", "foo"], {}, "--source"),
    ("loadgen --ike foo", [*LOADGEN, "--ike", "foo"], {}, "--ike"),
    ("loadgen --esp foo", [*LOADGEN, "--esp", "foo"], {}, "--esp"),
    ("loadgen --count 0", [*LOADGEN, "--count", "0"], {}, "--count"),
    ("loadgen --timeout nan", [*LOADGEN, "--timeout", "nan"], {}, "--timeout"),
    ("loadgen --rate inf", [*LOADGEN, "--rate", "inf"], {}, "--rate"),
    ("loadgen --hold -1", [*LOADGEN, "--hold", "-1"], {}, "--hold"),
    ("loadgen --psk empty", [*LOADGEN, "--psk", ""], {}, "--psk"),
    ("loadgen --workers 100000", [*LOADGEN, "--workers", "100000"], {}, "--workers"),
    ("loadgen target not an address", ["loadgen", "segw.example", "-n", "1"], {}, "target"),
    # --- ikecp demo --------------------------------------------------------------------------
    ("demo --faps 0", ["demo", "--faps", "0"], {}, "--faps"),
    ("demo --faps 251", ["demo", "--faps", "251"], {}, "--faps"),
    ("demo --timeout nan", ["demo", "--timeout", "nan"], {}, "--timeout"),
    ("demo --bindings in a missing directory",
     ["demo", "--bindings", "{d}/missing/b.sqlite"], {}, "--bindings"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-errors")
    pki = write_pki(d)
    (d / "segw.test.key.pem").write_bytes(pki.identities["segw.test"].key.read_bytes())
    (d / "fap.test.key.pem").write_bytes(pki.identities["fap.test"].key.read_bytes())
    (d / "garbage").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n" * 40)
    (d / "empty").write_bytes(b"")
    (d / "dir").mkdir()
    from ikecp.roles.bindings import BindingRegistry

    BindingRegistry(d / "ok.sqlite").close()
    return d


@pytest.mark.parametrize(("argv", "write", "needle"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(files: Path, argv: list[str],
                                          write: dict[str, str], needle: str) -> None:
    d = str(files)
    for name, text in write.items():
        (files / name).write_text(text.replace("{d}", d), encoding="utf-8")
    proc = subprocess.run([*CLI, *(a.replace("{d}", d) for a in argv)], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[-1], proc.stderr
    assert "a long enough secret" not in proc.stderr  # never a secret


def test_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 30
    assert {c[1][0] for c in CASES} == {"segw", "fap", "bindings", "loadgen", "demo"}
