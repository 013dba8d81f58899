"""The command line as a user runs it: subprocesses on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "ikecp.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_ports(host: str, n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def test_demo_exits_zero_and_prints_ok() -> None:
    proc = run("demo", "--faps", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "demo: OK"
    assert sum(1 for line in lines[:-1] if line.rstrip().endswith(" OK")) == 3
    assert "MISMATCH" not in proc.stdout


def test_no_warning_in_normal_use() -> None:
    """cryptography 50 deprecated finite-field DH, which ikecp used for MODP-2048: every CLI
    call printed a CryptographyDeprecationWarning (issue 10, item 11). Warnings are errors
    here, so any warning from ikecp or its dependencies fails the run."""
    env = {**ENV, "PYTHONWARNINGS": "error"}
    for args in (["--help"], ["info"], ["demo", "--faps", "2"]):
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60,
                              env=env)
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_help_explains_each_command() -> None:
    for cmd in ("segw", "fap", "bindings", "demo"):
        proc = run(cmd, "--help")
        assert proc.returncode == 0 and "usage: ikecp " + cmd in proc.stdout
    assert "--keylog" in run("segw", "--help").stdout
    assert "--inner-ip" in run("bindings", "--help").stdout


def test_bad_config_names_the_key(tmp_path) -> None:
    cfg = tmp_path / "segw.toml"
    cfg.write_text('psk = "x"\nlisten_addr = "127.0.0.1"\n')
    proc = run("segw", "--config", str(cfg))
    assert proc.returncode == 2
    assert "listen_addr: unknown key" in proc.stderr


def test_segw_fap_bindings_and_keylog(tmp_path) -> None:
    port, natt = free_ports("127.0.0.1", 2)
    db, keylog = tmp_path / "b.sqlite", tmp_path / "keys"
    (tmp_path / "segw.toml").write_text(
        f'psk = "cli test"\nport = {port}\nnatt_port = {natt}\nbindings = "{db}"\n')
    (tmp_path / "fap.toml").write_text(
        f'psk = "cli test"\nport = {port}\nnatt_port = {natt}\nlocal = "127.0.2.1"\n'
        f'identity = "fap-cli.example"\nnat_info_mode = "always"\n')
    segw = subprocess.Popen([*CLI, "segw", "--config", str(tmp_path / "segw.toml"),
                             "--keylog", str(keylog)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    fap = None
    try:
        assert segw.stdout is not None
        assert "SeGW" in segw.stdout.readline()
        fap = subprocess.Popen([*CLI, "fap", "--config", str(tmp_path / "fap.toml"), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV)
        assert fap.stdout is not None
        status = {}
        deadline = time.monotonic() + 30
        while status.get("state") != "established" and time.monotonic() < deadline:
            status = json.loads(fap.stdout.readline())
        assert status["state"] == "established"
        assert status["nat_detected"] is False
        assert (status["public_ip"], status["public_port"]) == ("127.0.2.1", port)
        inner = status["inner_ip"]
        found = run("bindings", "--db", str(db), "--inner-ip", inner, "--json")
        assert found.returncode == 0, found.stderr
        row = json.loads(found.stdout)
        assert row["identity"] == "fap-cli.example" and row["public_port"] == port
        by_public = run("bindings", "--db", str(db), "--public", f"127.0.2.1:{port}")
        assert by_public.returncode == 0 and "fap-cli.example" in by_public.stdout
        assert run("bindings", "--db", str(db), "--identity", "nobody").returncode == 1
        fap.send_signal(signal.SIGTERM)
        assert fap.wait(10) == 0
        deadline = time.monotonic() + 10
        while run("bindings", "--db", str(db), "--json").stdout and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert run("bindings", "--db", str(db), "--json").stdout == ""  # DELETE removed it
    finally:
        for p in (fap, segw):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        assert segw.wait(10) == 0
        if fap is not None:
            fap.wait(10)
    line = keylog.read_text().splitlines()
    assert len(line) == 1
    # UAT line syntax (checked to decrypt with tshark 4.0): bare hex, quoted names.
    fields = line[0].split(",")
    assert fields[0] == status["spi_i"] and fields[1] == status["spi_r"]
    assert fields[4] == '"AES-GCM-256 with 16 octet ICV [RFC5282]"'
    assert fields[7] == '"NONE [RFC4306]"' and fields[5] == fields[6] == ""
    assert len(bytes.fromhex(fields[2])) == 36  # 32-octet key + 4-octet salt


def test_fap_once_against_a_segw_on_other_ports(tmp_path) -> None:
    """``ikecp fap --once``: exit 0 once up; the FAP's own ports differ from the SeGW's."""
    port, natt = free_ports("127.0.0.1", 2)
    (tmp_path / "segw.toml").write_text(
        f'psk = "once"\nport = {port}\nnatt_port = {natt}\nbindings = "{tmp_path / "b.db"}"\n'
        "workers = 1\n")  # one process: the pool's first address goes to the first FAP
    (tmp_path / "fap.toml").write_text(
        f'psk = "once"\nport = 0\nnatt_port = 0\nsegw_port = {port}\n'
        f'segw_natt_port = {natt}\nlocal = "127.0.2.2"\n')
    segw = subprocess.Popen([*CLI, "segw", "--config", str(tmp_path / "segw.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert segw.stdout is not None and "SeGW" in segw.stdout.readline()
        fap = run("fap", "--config", str(tmp_path / "fap.toml"), "--once", "--timeout", "20")
        assert fap.returncode == 0, fap.stderr
        assert "established with 127.0.0.1: NAT not detected, inner IP 10.99.0.1" in fap.stdout
    finally:
        segw.send_signal(signal.SIGTERM)
        assert segw.wait(10) == 0


def test_demo_reports_a_mismatch() -> None:
    from ikecp.lab.demo import DemoResult, FapResult, format_result
    from ikecp.roles.femto import FapStatus

    good = FapStatus(state="established", nat_detected=True, inner_ip="10.99.0.1",
                     public_ip="127.0.0.1", public_port=40000)
    wrong = FapStatus(state="established", nat_detected=True, inner_ip="10.99.0.2",
                      public_ip="127.0.0.1", public_port=40001)
    result = DemoResult(2, [FapResult("a", good, ("127.0.0.1", 40000)),
                            FapResult("b", wrong, ("127.0.0.1", 40002))])
    assert not result.ok
    lines = format_result(result).splitlines()
    assert lines[-1] == "demo: MISMATCH"
    assert [line.split()[-1] for line in lines if line.startswith("  a ") or
            line.startswith("  b ")] == ["OK", "MISMATCH"]


def test_segw_keeps_its_bindings_in_a_file_by_default(tmp_path) -> None:
    """``ikecp segw`` without ``bindings`` writes ikecp-bindings.sqlite in its working
    directory (a Gateway built in code keeps them in memory: tests/api)."""
    (tmp_path / "segw.toml").write_text('psk = "default store"\nport = 0\nnatt_port = 0\n')
    segw = subprocess.Popen([*CLI, "segw", "--config", "segw.toml"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert segw.stdout is not None
        assert "bindings in ikecp-bindings.sqlite" in segw.stdout.readline()
        assert (tmp_path / "ikecp-bindings.sqlite").is_file()
    finally:
        segw.send_signal(signal.SIGTERM)
        assert segw.wait(10) == 0
