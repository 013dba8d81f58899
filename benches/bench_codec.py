"""Native vs pure-Python codec timings, same inputs in one run.

Run: ``python -m pytest benches/bench_codec.py --benchmark-only`` with a release build
(``maturin develop --release``); compare the native/python rows of each group.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import samples
from ikecp._backend import load

MESSAGES = {
    "ike_sa_init": samples.sa_init_request(),
    "ike_auth_sk": samples.ike_auth_request(sk_len=1200),
}


@pytest.fixture(params=["native", "python"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


@pytest.mark.parametrize("name", MESSAGES)
def test_decode(benchmark, codec: ModuleType, name: str) -> None:
    benchmark.group = f"decode {name}"
    wire = load("python").encode_message(MESSAGES[name])
    assert benchmark(codec.decode_message, wire) == MESSAGES[name]


@pytest.mark.parametrize("name", MESSAGES)
def test_encode(benchmark, codec: ModuleType, name: str) -> None:
    benchmark.group = f"encode {name}"
    msg = MESSAGES[name]
    assert benchmark(codec.encode_message, msg) == load("python").encode_message(msg)
