"""The example systemd units: systemd accepts them, and their commands run as written."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ikecp.testing.facility import require

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "examples" / "systemd"


def commands(unit: Path, key: str) -> list[list[str]]:
    return [shlex.split(line.split("=", 1)[1]) for line in unit.read_text().splitlines()
            if line.startswith(f"{key}=")]


@pytest.mark.parametrize("role", ["segw", "fap"])
def test_unit_verifies_and_its_commands_run(role: str, tmp_path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(None if analyze else "systemd-analyze missing (run .ci/install-peers.sh)")
    assert analyze is not None
    unit = UNITS / f"ikecp-{role}.service"
    # The same unit with this checkout's ikecp and example config, for systemd to check.
    ikecp = Path(sys.executable).with_name("ikecp")
    assert ikecp.exists(), "ikecp entry point next to the test interpreter"
    text = unit.read_text().replace("/usr/local/bin/ikecp", str(ikecp)).replace(
        f"/etc/ikecp/{role}.toml", str(ROOT / "examples" / f"{role}.toml"))
    local = tmp_path / unit.name
    local.write_text(text)
    proc = subprocess.run([analyze, "verify", "--man=no", str(local)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    (pre,) = commands(local, "ExecStartPre")
    assert pre[-1] == "--check-config"
    check = subprocess.run(pre, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    (start,) = commands(local, "ExecStart")
    # ExecStart runs what ExecStartPre checked (plus output options).
    assert [a for a in start if a not in ("-v", "--json")] == pre[:-1]
    assert "KillSignal=SIGTERM" in text and "CAP_NET_BIND_SERVICE" in text
