"""Config files: the examples load, and every kind of mistake names the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
from ikecp.config import ConfigError, FapConfig, SegwConfig, from_dict, load_fap, load_segw
from ikecp.cp import PushMode

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_load_and_build_settings() -> None:
    segw = load_segw(EXAMPLES / "segw.toml")
    fap = load_fap(EXAMPLES / "fap.toml")
    assert segw.pool == "10.99.0.0/16" and fap.keepalive == 20.0
    s = segw.settings(5501)
    assert s.natt_port == 5501 and s.dpd_interval == 30.0
    assert 23 in s.cp.providers and 1 in s.cp.providers  # NAT-info + INTERNAL_IP4_ADDRESS
    f = fap.settings()
    assert 23 in f.cp.handlers and 1 in f.cp.handlers and f.retransmit.tries == 5
    assert f.keepalive_interval == 20.0 and fap.remote_ports == (500, 4500)
    assert (f.fragmentation.mode, f.fragmentation.size) == ("yes", 1280)
    forced = from_dict(FapConfig, {"psk": "x", "fragmentation": "force", "fragment_size": 0})
    assert (forced.settings().fragmentation.mode, forced.settings().fragmentation.size) \
        == ("force", 0)


@pytest.mark.parametrize(("cls", "data", "key"), [
    (SegwConfig, {"psk": "x", "listne": "127.0.0.1"}, "listne"),
    (SegwConfig, {"psk": "x", "port": "500"}, "port"),
    (SegwConfig, {"psk": "x", "port": 70000}, "port"),
    (SegwConfig, {"psk": "x", "pool": "10.0.0.0/33"}, "pool"),
    (SegwConfig, {"psk": "x", "pool": "fd00::/64"}, "pool"),
    (SegwConfig, {"psk": "x", "listen": "localhost"}, "listen"),
    (SegwConfig, {"psk": "x", "nat_info": "yes"}, "nat_info"),
    (SegwConfig, {"psk": "x", "nat_info_type": 16}, "nat_info_type"),
    (SegwConfig, {"psk": "x", "nat_info_push": "sometimes"}, "nat_info_push"),
    (SegwConfig, {"psk": "x", "dns": [10]}, "dns"),
    (SegwConfig, {"psk": "x", "dns": "10.0.0.300"}, "dns"),
    (SegwConfig, {"psk": "x", "listen": []}, "listen"),
    (SegwConfig, {"psk": "x", "proposals": ["aes256-nosuchprf"]}, "proposals"),
    (SegwConfig, {"psk": "x", "cookie_threshold": -1}, "cookie_threshold"),
    (SegwConfig, {"psk": "x", "fragmentation": "maybe"}, "fragmentation"),
    (SegwConfig, {"psk": "x", "fragmentation": True}, "fragmentation"),
    (FapConfig, {"psk": "x", "fragment_size": 100}, "fragment_size"),
    (SegwConfig, {}, "psk"),
    (SegwConfig, {"psk": ""}, "psk"),
    (SegwConfig, {"psk": "long enough secret", "peers": {"fap.example": ""}}, "peers"),
    (SegwConfig, {"peers": {"fap.example": ""}}, "peers"),
    (FapConfig, {"psk": ""}, "psk"),
    (SegwConfig, {"cert": "/nonexistent.pem", "key": "/nonexistent.key", "ca": ["/x"]},
     "cert"),
    (SegwConfig, {"psk": "x", "cert": "c.pem"}, "psk"),
    (FapConfig, {"psk": "x", "segw": "segw.example"}, "segw"),
    (FapConfig, {"psk": "x", "keepalive": -1}, "keepalive"),
    (FapConfig, {"psk": "x", "nat_info_mode": "sometimes"}, "nat_info_mode"),
    (FapConfig, {"psk": "x", "retries": 99}, "retries"),
    (FapConfig, {"psk": "x", "port": 0}, "segw_port"),
    (FapConfig, {"psk": "x", "natt_port": 0, "segw_port": 500}, "segw_natt_port"),
    (FapConfig, {"psk": "x", "pool": "10.0.0.0/8"}, "pool"),  # a SeGW key in a FAP file
    (FapConfig, {"psk": "x", "identity": ""}, "identity"),
])
def test_bad_values_name_the_key(cls, data, key) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(cls, data, "test.toml")
    assert info.value.key == key
    assert str(info.value).startswith(f"test.toml: {key}: ")


def test_unreadable_and_invalid_toml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_segw(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("psk = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_segw(bad)


def test_defaults_work_on_loopback() -> None:
    segw = from_dict(SegwConfig, {"psk": "x"})
    fap = from_dict(FapConfig, {"psk": "x"})
    assert segw.listen == ("127.0.0.1",) and fap.segw == "127.0.0.1"
    assert from_dict(SegwConfig, {"psk": "x", "listen": "::1"}).listen == ("::1",)
    per_peer = from_dict(SegwConfig, {"peers": {"fap.example": "s1"}})
    assert per_peer.settings().auth is not None


def test_nat_info_push_reaches_the_provider() -> None:
    assert from_dict(SegwConfig, {"psk": "x"}).settings().cp.providers[23].push_mode \
        is PushMode.REQUESTED
    always = from_dict(SegwConfig, {"psk": "x", "nat_info_push": "always"})
    assert always.settings().cp.providers[23].push_mode is PushMode.ALWAYS


@pytest.mark.parametrize(("cls", "kwargs", "key"), [
    (SegwConfig, {"psk": "x", "dpd": float("nan")}, "dpd"),
    (SegwConfig, {"psk": "x", "dpd": float("inf")}, "dpd"),
    (SegwConfig, {"psk": "x", "binding_expiry": 1e-9}, "binding_expiry"),
    (SegwConfig, {"psk": "x", "dpd": "30"}, "dpd"),  # wrong type, not a TypeError later
    (SegwConfig, {"psk": ""}, "psk"),
    (SegwConfig, {"peers": {"f\u00e4p.example": "secret"}}, "peers"),
    (SegwConfig, {"psk": "x", "identity": "s\u00e9gw.example"}, "identity"),
    (SegwConfig, {"psk": "x", "bindings": "/nonexistent-dir/b.sqlite"}, "bindings"),
    (SegwConfig, {"cert": __file__, "key": __file__, "ca": (__file__,)}, "cert"),  # not PEM
    (FapConfig, {"psk": "x", "keepalive": float("nan")}, "keepalive"),
    (FapConfig, {"psk": "x", "segw_id": "s\u00e9gw"}, "segw_id"),
])
def test_configs_built_in_python_are_checked_too(cls, kwargs, key) -> None:
    """The same one-line errors for code that builds configs as for TOML files (no
    AssertionError or TypeError from deep inside)."""
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert info.value.key == key


def test_durations_accept_their_range_and_zero_where_it_means_off() -> None:
    from ikecp.config import DURATIONS

    for key, (low, high, zero_off) in DURATIONS.items():
        cls = SegwConfig if key in ("dpd", "binding_expiry") else FapConfig
        for good in (low, high):
            assert getattr(from_dict(cls, {"psk": "x", key: good}), key) == good
        for bad in (low / 2, high * 2, float("nan"), float("inf"), -1.0):
            with pytest.raises(ConfigError, match=f"^{key}: "):
                from_dict(cls, {"psk": "x", key: bad})
        if zero_off:
            assert getattr(from_dict(cls, {"psk": "x", key: 0}), key) == 0
