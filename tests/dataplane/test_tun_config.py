"""``dataplane = "tun" | "none"``: checked in both configs, overridable with --dataplane, and
``tun`` without root fails at once with one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from ikecp.config import ConfigError, FapConfig, SegwConfig, from_dict

CLI = [sys.executable, "-m", "ikecp.cli"]


@pytest.mark.parametrize("cls", [SegwConfig, FapConfig])
def test_values_are_checked(cls):
    assert from_dict(cls, {"psk": "x"}).dataplane == "none"
    assert from_dict(cls, {"psk": "x", "dataplane": "tun"}).dataplane == "tun"
    for bad, key in (({"dataplane": "xfrm"}, "dataplane"),
                     ({"dataplane": "tun", "natt_port": 0}, "natt_port"),
                     ({"dataplane": "tun", "natt_port": 500}, "natt_port"),
                     ({"tun_name": "x" * 16}, "tun_name")):
        with pytest.raises(ConfigError) as exc:
            from_dict(cls, {"psk": "x", **bad})
        assert exc.value.key == key


@pytest.mark.parametrize("role", ["segw", "fap"])
def test_tun_without_net_admin_is_one_clear_line(role, tmp_path):
    cfg = tmp_path / f"{role}.toml"
    cfg.write_text(f'psk = "x"\nbindings = "{tmp_path / "b.sqlite"}"\n' if role == "segw"
                   else 'psk = "x"\n')
    argv = [*CLI, role, "--config", str(cfg), "--dataplane", "tun"]
    if os.geteuid() == 0:
        # Stay root (the interpreter may live under /root) but without CAP_NET_ADMIN, which
        # is what creating a TUN device needs.
        assert shutil.which("setpriv"), "util-linux setpriv drops CAP_NET_ADMIN for this test"
        argv = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ikecp")]
    assert lines == [f'ikecp {role}: dataplane "tun" needs root (CAP_NET_ADMIN) to create a '
                     'TUN device'], done.stderr


def test_none_says_so_in_the_log(tmp_path):
    cfg = tmp_path / "fap.toml"
    cfg.write_text('psk = "x"\nsegw = "127.0.0.1"\nport = 0\nnatt_port = 0\n'
                   'segw_port = 9\nsegw_natt_port = 9\nretries = 0\n')
    done = subprocess.run([*CLI, "-v", "fap", "--config", str(cfg), "--once", "--timeout",
                           "0.5"], capture_output=True, text=True, timeout=60)
    assert 'dataplane "none": the CHILD SA is negotiated but carries no traffic' in done.stderr
