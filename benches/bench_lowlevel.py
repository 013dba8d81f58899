"""Every ``ikecp.lowlevel`` call, native vs its pure-Python twin side by side in one run, on
the IKE_AUTH request of ``bench_message`` (348 octets of inner payloads: IDi, AUTH, CP, SA with
two ESP proposals, TSi, TSr, two notifies, IDr). Run (release build of the extension):

    python -m pytest benches/bench_lowlevel.py --benchmark-only --benchmark-group-by=group

``benches/conftest.py`` prints the python/native ratio of each group at the end. The twins of
the keyed calls spend most of their time in OpenSSL (through ``cryptography``), those of
``decode_header`` in ``struct``: their ratios measure ikecp's call overhead against
``cryptography``'s, not Python against Rust.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from bench_message import REQUEST, TRANSFORMS
from ikecp._backend import load

PY = load("python")
FIRST, CHAIN = PY.encode_payloads(REQUEST.payloads)
SEALED = {name: PY.seal_message(PY.SkCipher(*keys), REQUEST) for name, keys in TRANSFORMS.items()}
HEADER = SEALED["aes256gcm"][:28]
INTEG_KEY = bytes(range(32))
GCM_KEY, CBC_KEY = bytes(range(36)), bytes(range(32))
AAD = SEALED["aes256gcm"][:32]
BODY = {
    "aes256gcm": PY.encrypt_body(20, GCM_KEY, bytes(8), AAD, CHAIN),
    "aes256cbc": PY.encrypt_body(12, CBC_KEY, bytes(16), b"", CHAIN),
}


@pytest.fixture(params=["native", "python"])
def be(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


def test_integ_compute(benchmark, be):
    benchmark.group = "integ_compute HMAC-SHA2-256-128, 420-octet datagram"
    signed = SEALED["aes256cbc-sha256"][:-16]
    assert benchmark(be.integ_compute, 12, INTEG_KEY, signed) == \
        PY.integ_compute(12, INTEG_KEY, signed)


def test_integ_verify(benchmark, be):
    benchmark.group = "integ_verify HMAC-SHA2-256-128, 420-octet datagram"
    signed = SEALED["aes256cbc-sha256"][:-16]
    icv = PY.integ_compute(12, INTEG_KEY, signed)
    assert benchmark(be.integ_verify, 12, INTEG_KEY, signed, icv) is True


@pytest.mark.parametrize("name", ["aes256gcm", "aes256cbc"])
def test_encrypt_body(benchmark, be, name):
    benchmark.group = f"encrypt_body {name}, 348 octets"
    args = (20, GCM_KEY, bytes(8), AAD) if name == "aes256gcm" else (12, CBC_KEY, bytes(16), b"")
    assert benchmark(be.encrypt_body, *args, CHAIN) == BODY[name]


@pytest.mark.parametrize("name", ["aes256gcm", "aes256cbc"])
def test_decrypt_body(benchmark, be, name):
    benchmark.group = f"decrypt_body {name}, 348 octets"
    args = (20, GCM_KEY, bytes(8), AAD) if name == "aes256gcm" else (12, CBC_KEY, bytes(16), b"")
    assert benchmark(be.decrypt_body, *args, BODY[name]) == CHAIN


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_seal_datagram(benchmark, be, name):
    benchmark.group = f"seal_datagram {name}, 348 octets"
    cipher = be.SkCipher(*TRANSFORMS[name])
    iv = bytes(cipher.iv_size)
    wire = benchmark(be.seal_datagram, cipher, HEADER, FIRST, CHAIN, iv=iv)
    assert PY.open_message(PY.SkCipher(*TRANSFORMS[name]), wire) == REQUEST


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_open_datagram(benchmark, be, name):
    benchmark.group = f"open_datagram {name}, 348 octets"
    cipher = be.SkCipher(*TRANSFORMS[name])
    first, _, plain = benchmark(be.open_datagram, cipher, SEALED[name])
    assert (first, plain) == (FIRST, CHAIN)


def test_decode_header(benchmark, be):
    benchmark.group = "decode_header"
    assert benchmark(be.decode_header, SEALED["aes256gcm"])[2] == 46


def test_walk_payloads(benchmark, be):
    benchmark.group = "walk_payloads IKE_AUTH request inner chain (9 payloads)"
    frames = benchmark(be.walk_payloads, FIRST, CHAIN)
    assert [f[0] for f in frames] == [p.payload_type for p in REQUEST.payloads]


def test_walk_payloads_memoryview(benchmark, be):
    benchmark.group = "walk_payloads IKE_AUTH request inner chain, memoryview"
    view = memoryview(CHAIN)
    assert len(benchmark(be.walk_payloads, FIRST, view)) == 9


def test_walk_message(benchmark, be):
    benchmark.group = "walk_message IKE_AUTH request datagram"
    header, frames = benchmark(be.walk_message, SEALED["aes256gcm"])
    assert frames[-1][0] == 46 and header[8] == len(SEALED["aes256gcm"])


def test_transform_supported(benchmark, be):
    benchmark.group = "transform_supported"
    assert benchmark(be.transform_supported, 1, 20, 256) is True
