"""Roles and settings built in code: the same one-line ``ConfigError`` as the CLI, at
construction, and nothing written unless asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from ikecp import (
    ConfigError,
    FapConfig,
    Femto,
    Gateway,
    MemoryBindingStore,
    PskAuthenticator,
    SegwConfig,
)
from ikecp.config import load_segw
from ikecp.const import ConfigAttr
from ikecp.cp import StaticProvider
from ikecp.roles.bindings import BindingRegistry

#: (TOML text, the same as keyword arguments); each is wrong in one key.
BAD_SEGW = [
    ("", {}),  # no credentials
    ('psk = "s3cret-s3cret-s3cret"\ncert = "c.pem"\n',
     {"psk": "s3cret-s3cret-s3cret", "cert": "c.pem"}),
    ('psk = "x"\npool = "10.0.0.0/33"\n', {"psk": "x", "pool": "10.0.0.0/33"}),
    ('psk = "x"\nport = 70000\n', {"psk": "x", "port": 70000}),
    ('psk = "x"\ndpd = -1\n', {"psk": "x", "dpd": -1.0}),
    ('psk = "x"\nfragmentation = "maybe"\n', {"psk": "x", "fragmentation": "maybe"}),
    ('psk = "x"\nnat_info_push = "sometimes"\n', {"psk": "x", "nat_info_push": "sometimes"}),
    ('psk = "x"\nlisten = ["localhost"]\n', {"psk": "x", "listen": ("localhost",)}),
    ('psk = "x"\nidentity = ""\n', {"psk": "x", "identity": ""}),
    ('psk = "x"\nproposals = ["aes256-nosuchprf"]\n',
     {"psk": "x", "proposals": ("aes256-nosuchprf",)}),
    ('psk = "x"\nport = "500"\n', {"psk": "x", "port": "500"}),
]


@pytest.mark.parametrize(("toml", "kwargs"), BAD_SEGW)
def test_code_and_cli_give_the_same_one_line_message(tmp_path, toml, kwargs) -> None:
    path = tmp_path / "segw.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        SegwConfig(**kwargs)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{caught.value.key}: ")
    cli = subprocess.run([sys.executable, "-m", "ikecp.cli", "segw", "--config", str(path),
                          "--check-config"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"ikecp segw: config error: {path}: {message}"


def test_construction_errors_name_the_key() -> None:
    class NotAnAuthenticator:
        pass

    cases = [
        (lambda: SegwConfig(auth=NotAnAuthenticator()),
         "auth: must be an Authenticator (method, sign, verify)"),
        (lambda: SegwConfig(psk="x", auth=PskAuthenticator(b"y" * 16)),
         "auth: give either auth or psk / cert + key, not both"),
        (lambda: FapConfig(retries=99, psk="x"), "retries: must be within 0-20"),
        (lambda: Gateway(FapConfig(psk="x")), "config: must be a SegwConfig, not FapConfig"),
        (lambda: Femto(SegwConfig(psk="x")), "config: must be a FapConfig, not SegwConfig"),
        (lambda: Gateway(SegwConfig(psk="x"), store=object()),
         "store: object is not a BindingStore"),
        (lambda: Gateway(SegwConfig(psk="x"), providers=[
            StaticProvider(20000, [b"a"]), StaticProvider(20000, [b"b"])]),
         "providers: two for attribute type 20000"),
        (lambda: Gateway(SegwConfig(psk="x"), providers=[object()]),
         "providers: <object object at"),
        (lambda: Gateway(SegwConfig(psk="x"), providers=StaticProvider(20000, [b"a"])),
         "providers: must be a list of providers, not StaticProvider"),
        (lambda: Femto(FapConfig(psk="x"), handlers=5),  # type: ignore[arg-type]
         "handlers: must be a list of handlers, not int"),
    ]
    for build, expected in cases:
        with pytest.raises(ConfigError) as caught:
            build()
        assert str(caught.value).startswith(expected), (str(caught.value), expected)


def test_auth_is_not_a_toml_key(tmp_path) -> None:
    path = tmp_path / "segw.toml"
    path.write_text('auth = "x"\npsk = "x"\n')
    with pytest.raises(ConfigError, match=r"auth: unknown key \(known keys: binding_expiry"):
        load_segw(path)


def test_an_application_authenticator_replaces_the_psk() -> None:
    auth = PskAuthenticator(b"from an AAA server, say")
    cfg = SegwConfig(auth=auth)
    assert cfg.settings().auth is auth and cfg.psk is None


def test_a_provider_for_a_configured_type_replaces_it() -> None:
    dns = StaticProvider.addresses(ConfigAttr.INTERNAL_IP4_DNS, ["192.0.2.53"])
    extra = StaticProvider(20000, [b"x"])
    cp = SegwConfig(psk="x", dns=("198.51.100.53",)).settings(providers=[extra, dns]).cp
    assert cp.providers[ConfigAttr.INTERNAL_IP4_DNS] is dns
    assert cp.providers[20000] is extra
    assert list(cp.providers)[:2] == [ConfigAttr.INTERNAL_IP4_ADDRESS,
                                      ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO]


def test_a_segw_in_code_writes_no_file(tmp_path, monkeypatch) -> None:
    """The default store is in memory: starting, serving a FAP and stopping leave the
    working directory empty (the CLI's own default, a file, is tested with the CLI)."""
    monkeypatch.chdir(tmp_path)

    async def main() -> None:
        gw = Gateway(SegwConfig(psk="x" * 16, port=0, natt_port=0))
        assert isinstance(gw.store.store, MemoryBindingStore)  # behind the one writer
        await gw.start()
        port, natt = gw.ports
        fap = Femto(FapConfig(psk="x" * 16, segw="127.0.0.1", port=0, natt_port=0,
                              segw_port=port, segw_natt_port=natt))
        await fap.start()
        await fap.wait_established(10)
        assert len(gw.store) == 1
        await fap.stop()
        await gw.stop()

    asyncio.run(main())
    assert os.listdir(tmp_path) == []


def test_the_config_names_a_file_store_when_asked(tmp_path) -> None:
    gw = Gateway(SegwConfig(psk="x", bindings=str(tmp_path / "b.sqlite")))
    assert isinstance(gw.store.store, BindingRegistry) and (tmp_path / "b.sqlite").exists()
    gw.store.close()
