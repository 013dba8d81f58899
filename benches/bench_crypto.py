"""Crypto hot path, native vs pure Python, side by side in one run.

Run: ``pytest benches/bench_crypto.py --benchmark-group-by=group`` (release build of the
extension); each group holds the two backends of one operation, so the ratio reads off
directly.
"""

from __future__ import annotations

import pytest
from ikecp._backend import load

BACKENDS = ["native", "python"]
SPI_I, SPI_R = bytes(range(8)), bytes(range(8, 16))
# An IKE_AUTH request header (seal fills in the length) and a ~300-octet inner body.
HEADER = SPI_I + SPI_R + bytes((46, 0x20, 35, 0x08, 0, 0, 0, 1, 0, 0, 0, 0))
BODY = bytes(range(256)) + bytes(44)
TRANSFORMS = {
    "aes256gcm": (20, bytes(range(36)), 0, b""),
    "aes128cbc-sha256": (12, bytes(range(16)), 12, bytes(range(32))),
}


@pytest.fixture(params=BACKENDS)
def be(request):
    return load(request.param)


def test_prf_plus_ike_keys(benchmark, be):
    benchmark.group = "prf+ 216 octets (sha256, AES-GCM-256 IKE keys)"
    out = benchmark(be.prf_plus, 5, b"s" * 32, b"n" * 64 + SPI_I + SPI_R, 216)
    assert len(out) == 216


def test_nat_detection_hash(benchmark, be):
    benchmark.group = "NAT-D hash"
    out = benchmark(be.nat_detection_hash, SPI_I, SPI_R, bytes((100, 64, 0, 1)), 4500)
    assert len(out) == 20


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_seal(benchmark, be, name):
    benchmark.group = f"seal 300-octet IKE_AUTH body, {name}"
    cipher = be.SkCipher(*TRANSFORMS[name])
    out = benchmark(cipher.seal, HEADER, 35, BODY)
    assert cipher.open(out) == (35, BODY)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_open(benchmark, be, name):
    benchmark.group = f"open 300-octet IKE_AUTH body, {name}"
    cipher = be.SkCipher(*TRANSFORMS[name])
    sealed = cipher.seal(HEADER, 35, BODY)
    assert benchmark(cipher.open, sealed) == (35, BODY)


# MODP-2048: the backends' modp_public/modp_shared against what ikecp used before them,
# cryptography's finite-field DH (deprecated in cryptography 50; measured while it exists).
MODP_EXPONENT = bytes(range(1, 29))  # 224 bits, as ikecp.dh draws them


def _ffdh_parameters():
    import warnings

    from ikecp._reference.modp import MODP_2048_P

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from cryptography.hazmat.primitives.asymmetric import dh

        return dh.DHParameterNumbers(MODP_2048_P, 2).parameters()


def test_modp_key_pair(benchmark, be):
    benchmark.group = "MODP-2048 key pair (public value)"
    assert len(benchmark(be.modp_public, 14, MODP_EXPONENT)) == 256


def test_modp_shared(benchmark, be):
    benchmark.group = "MODP-2048 shared secret (peer value checked)"
    peer = be.modp_public(14, bytes(range(100, 128)))
    assert len(benchmark(be.modp_shared, 14, MODP_EXPONENT, peer)) == 256


@pytest.mark.parametrize("op", ["key pair", "shared"])
def test_modp_cryptography_before(benchmark, op):
    import warnings

    params = _ffdh_parameters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if op == "key pair":
            benchmark.group = "MODP-2048 key pair (public value)"
            benchmark(lambda: params.generate_private_key().public_key().public_numbers().y)
        else:
            benchmark.group = "MODP-2048 shared secret (peer value checked)"
            key = params.generate_private_key()
            peer = params.generate_private_key().public_key()
            assert len(benchmark(key.exchange, peer)) >= 255
