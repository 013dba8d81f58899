"""MODP-2048 Diffie-Hellman: the native Montgomery code and the pure-Python ``pow`` twin agree
on every input, hostile peer values and bad private values included (same result or the same
error class)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikecp._backend import load
from ikecp._reference.modp import MODP_2048_P, jacobi

NATIVE = load("native")
PYTHON = load("python")
P = MODP_2048_P

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

groups = st.sampled_from([14, 14, 14, 14, 0, 2, 15, 19, -1, 2**70])
privates = st.one_of(st.binary(min_size=1, max_size=40), st.binary(max_size=260),
                     st.just(bytes(28)), st.just(b"\xff" * 256))
edge = [0, 1, 2, 3, P - 2, P - 1, P, P + 1, (1 << 2048) - 1, 1 << 2047]
peers = st.one_of(
    st.sampled_from(edge).map(lambda y: y.to_bytes(256, "big")),
    # random values: about half of them are not in the subgroup
    st.integers(0, (1 << 2048) - 1).map(lambda y: y.to_bytes(256, "big")),
    st.binary(min_size=1, max_size=40).filter(any).map(lambda x: PYTHON.modp_public(14, x)),
    st.binary(max_size=300),  # mostly the wrong length
)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # the class is what gets compared
        return ("err", type(exc).__name__)


@SETTINGS
@given(groups, privates)
def test_public_value(group, private):
    assert outcome(NATIVE.modp_public, group, private) == \
        outcome(PYTHON.modp_public, group, private)


@SETTINGS
@given(groups, privates, peers)
def test_shared_secret(group, private, peer):
    result = outcome(NATIVE.modp_shared, group, private, peer)
    assert result == outcome(PYTHON.modp_shared, group, private, peer)
    if result[0] == "ok":
        y = int.from_bytes(peer, "big")
        assert 1 < y < P - 1 and jacobi(y, P) == 1


@SETTINGS
@given(st.binary(min_size=1, max_size=32), st.binary(min_size=1, max_size=32))
def test_both_sides_agree(a, b):
    if not any(a) or not any(b):
        return
    ya, yb = NATIVE.modp_public(14, a), NATIVE.modp_public(14, b)
    assert NATIVE.modp_shared(14, a, yb) == NATIVE.modp_shared(14, b, ya) \
        == PYTHON.modp_shared(14, a, yb)


def test_subgroup_check_is_the_legendre_symbol():
    # p = 2q + 1 is a safe prime with p = 7 mod 8: 2 generates the order-q subgroup of
    # squares, -1 (= p - 1) and -2 (= p - 2) are not squares.
    assert jacobi(2, P) == 1 and jacobi(P - 1, P) == -1 and jacobi(P - 2, P) == -1
    q = (P - 1) // 2
    for y in (2, 3, 5, 7, P - 2):
        assert (pow(y, q, P) == 1) == (jacobi(y, P) == 1)
        assert outcome(NATIVE.modp_shared, 14, b"\x05", y.to_bytes(256, "big"))[0] == \
            ("ok" if jacobi(y, P) == 1 else "err")
