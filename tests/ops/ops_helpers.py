"""Helpers for the operations tests: ``ikecp segw`` as a subprocess on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ikecp.loadgen.generator import DEFAULT_PSK

CLI = [sys.executable, "-m", "ikecp.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@dataclass
class Segw:
    proc: subprocess.Popen[str]
    port: int
    natt_port: int
    metrics_url: str | None


def segw_toml(db: str, *extra: str) -> str:
    """A SeGW config on loopback, any free ports, the load generator's PSK."""
    return "\n".join((f'psk = "{DEFAULT_PSK.decode()}"', "port = 0", "natt_port = 0",
                      f'bindings = "{db}"', *extra)) + "\n"


@contextmanager
def segw_process(tmp_path: Path, config: str, *args: str, name: str = "segw") -> Iterator[Segw]:
    """Run ``ikecp segw`` with ``config``; SIGTERM and a clean exit (status 0) at the end."""
    path = tmp_path / f"{name}.toml"
    path.write_text(config)
    proc = subprocess.Popen([*CLI, "segw", "--config", str(path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"ports (\d+)/(\d+)", line)
        if m is None:
            proc.kill()
            raise AssertionError(f"segw did not start: {line!r} {proc.stderr.read()}")
        url = None
        if "--metrics" in args or "metrics =" in config:
            url = proc.stdout.readline().split("metrics on ", 1)[1].strip()
        yield Segw(proc, int(m[1]), int(m[2]), url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read() if proc.stderr else code


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
