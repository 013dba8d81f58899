"""The DoS limits in segw.toml: defaults on, each key checked and handed to the Dispatcher."""

from __future__ import annotations

from pathlib import Path

import pytest
from ikecp.config import ConfigError, SegwConfig, from_dict, load_segw


@pytest.mark.parametrize(("key", "value"), [
    ("max_half_open", 0), ("max_half_open_ip", 0), ("cookie_threshold", -1),
    ("cookie_threshold_ip", -5), ("max_init_size", 100), ("max_init_size", 70000),
    ("max_payloads", 2), ("max_payloads", 5000), ("invalid_spi_rate", -1.0),
])
def test_bad_limit_names_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        from_dict(SegwConfig, {"psk": "a long enough secret", key: value})


def test_example_config_sets_every_limit_to_its_default() -> None:
    example = load_segw(Path(__file__).parents[2] / "examples" / "segw.toml").limits()
    assert example == SegwConfig(psk="a long enough secret").limits()
    assert example["cookie_threshold"] == 100 and example["cookie_threshold_ip"] == 10


def test_refused_requests_are_reported_once_per_sweep(caplog, tmp_path) -> None:
    import asyncio
    import logging

    from ikecp.lab.hostile import fresh_init
    from ikecp.roles.gateway import Gateway

    async def main() -> None:
        cfg = SegwConfig(psk="a long enough secret", port=0, natt_port=0, max_init_size=1024,
                         bindings=str(tmp_path / "b.sqlite"))
        gw = Gateway(cfg)
        await gw.start()
        try:
            d = gw.dispatcher
            assert d is not None
            big = fresh_init()[1] + bytes(2000)
            for _ in range(7):
                d.receive(big, gw.ports[0], ("127.0.0.66", 4000), 0.0)
            with caplog.at_level(logging.WARNING, logger="ikecp.segw"):
                gw.sweep()
                gw.sweep()  # nothing new: no second line
        finally:
            await gw.stop()

    asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["refused since the last report: 7 oversized IKE_SA_INIT; "
                     "0 half-open SAs now"]
