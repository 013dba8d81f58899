"""``ikecp segw|fap --check-config``: exit 0 for a good config, 2 with the key named."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ops_helpers import CLI, ENV

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def check(role: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, role, "--config", str(path), "--check-config", *extra],
                          capture_output=True, text=True, timeout=60, env=ENV)


def test_shipped_examples_pass() -> None:
    for role in ("segw", "fap"):
        proc = check(role, EXAMPLES / f"{role}.toml")
        assert proc.returncode == 0, proc.stderr
        assert "configuration OK" in proc.stdout


def test_bad_values_exit_2_naming_the_key(tmp_path) -> None:
    cases = {
        "segw": ('psk = "x"\npool = "10.0.0.0/33"\n', "pool"),
        "fap": ('psk = "x"\nsegw = "not an address"\n', "segw"),
    }
    for role, (text, key) in cases.items():
        path = tmp_path / f"{role}.toml"
        path.write_text(text)
        proc = check(role, path)
        assert proc.returncode == 2 and f"{key}:" in proc.stderr, (role, proc.stderr)


def test_unreadable_credentials_and_bad_metrics_flag_exit_2(tmp_path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    path = tmp_path / "segw.toml"
    path.write_text(f'cert = "{cert}"\nkey = "{cert}"\nca = ["{cert}"]\n')
    proc = check("segw", path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    path.write_text('psk = "x"\n')
    proc = check("segw", path, "--metrics", "everywhere")
    assert proc.returncode == 2 and "metrics:" in proc.stderr
    assert not (tmp_path / "ikecp-bindings.sqlite").exists()  # nothing was started
