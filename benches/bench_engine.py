"""In-memory IKE handshakes (X25519 + PSK + AES-GCM-256, initiator behind a simulated NAPT,
NAT-info attribute requested and answered), native vs pure-Python backend in one run.

Run: ``pytest benches/bench_engine.py -s --benchmark-group-by=group`` with a release build.
``test_engine_overhead`` prints, per side, the microseconds per handshake spent inside the
engine's Python code once every codec/crypto call (backend functions, SK ciphers,
Diffie-Hellman) is subtracted; the timing wrappers' own cost stays on the engine's side, so
the figure is an upper bound.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from ikecp import _backend, dh
from ikecp.cp import CpRegistry, NatInfoHandler, NatInfoProvider
from ikecp.engine import IkeProposal, IkeSa, PskAuthenticator, Settings
from ikecp.engine import sa_init as sa_init_module
from ikecp.engine.settings import Identity

BACKENDS = ["native", "python"]
PROPOSAL = (IkeProposal.parse("aes256gcm16-prfsha256-x25519"),)
FAP = Settings(local_id=Identity.fqdn("fap.example.net"), auth=PskAuthenticator(b"k" * 32),
               remote_id=Identity.fqdn("segw.example.net"), ike_proposals=PROPOSAL,
               cp=CpRegistry().add_handler(NatInfoHandler()))
SEGW = Settings(local_id=Identity.fqdn("segw.example.net"), auth=PskAuthenticator(b"k" * 32),
                ike_proposals=PROPOSAL, cp=CpRegistry().add_provider(NatInfoProvider()))
I_ADDR, R_ADDR, PUBLIC_IP = ("100.64.0.2", 500), ("198.51.100.10", 500), "198.51.100.1"


class Clock:
    """Accumulates time spent in wrapped calls."""

    def __init__(self) -> None:
        self.spent = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - start
        return timed


def metered(be, clock: Clock):
    """A backend and a dh module whose every call is timed into ``clock``."""
    names = ("decode_message", "encode_message", "decode_payloads", "encode_payloads", "prf",
             "prf_plus", "skeyseed", "ike_keys", "child_keymat", "signed_octets", "psk_auth",
             "nat_detection_hash")
    ns = SimpleNamespace(**{n: clock.wrap(getattr(be, n)) for n in names})
    ns.__name__ = be.__name__

    class Cipher:
        def __init__(self, *args) -> None:
            start = time.perf_counter()
            inner = be.SkCipher(*args)
            self.seal, self.open = clock.wrap(inner.seal), clock.wrap(inner.open)
            self.iv_size, self.icv_size = inner.iv_size, inner.icv_size
            clock.spent += time.perf_counter() - start

    class Private:
        def __init__(self, group: int) -> None:
            start = time.perf_counter()
            inner = dh.generate(group)
            self.group, self.public_bytes = inner.group, inner.public_bytes
            self.exchange = clock.wrap(inner.exchange)
            clock.spent += time.perf_counter() - start

    ns.SkCipher = Cipher
    return ns, SimpleNamespace(generate=Private, DhPrivate=Private)


class Sides:
    """Runs a handshake; optionally gives each side its own metered backend and times every
    call into each side. ``ikecp.sk`` and the SA_INIT task read the module-level backend and
    dh, so those are switched to the calling side's before each call."""

    def __init__(self, be, metered_sides: dict | None = None) -> None:
        self.be = be
        self.metered = metered_sides
        self.spent = {"i": 0.0, "r": 0.0}

    def call(self, side: str, fn, *args):
        if self.metered is None:
            return fn(*args)
        ns, dh_ns = self.metered[side]
        _backend.backend = ns
        sa_init_module.dh = dh_ns
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.spent[side] += time.perf_counter() - start
            _backend.backend = self.be
            sa_init_module.dh = dh

    def handshake(self) -> IkeSa:
        call, now = self.call, 0.0
        be_i = self.metered["i"][0] if self.metered else self.be
        be_r = self.metered["r"][0] if self.metered else self.be
        i = call("i", lambda: IkeSa.initiator(FAP, I_ADDR, R_ADDR, backend=be_i))
        r = call("r", lambda: IkeSa.responder(SEGW, R_ADDR, backend=be_r))
        for _ in range(2):
            for d in call("i", i.datagrams_to_send, now):  # NAPT: public source address
                call("r", r.receive_datagram, d.data, (PUBLIC_IP, 40000 + d.local_port), now,
                     d.remote[1])
            for d in call("r", r.datagrams_to_send, now):
                call("i", i.receive_datagram, d.data, (R_ADDR[0], d.local_port), now,
                     d.remote[1] - 40000)
        assert i.established and r.established and i.encapsulated
        return i


@pytest.fixture(params=BACKENDS)
def be(request, monkeypatch):
    module = _backend.load(request.param)
    monkeypatch.setattr(_backend, "backend", module)
    return module


def test_handshake(benchmark, be):
    benchmark.group = "in-memory handshake X25519+PSK+AES-GCM-256, NAT, NAT-info (both sides)"
    benchmark(Sides(be).handshake)


def test_engine_overhead(be, capsys):
    """Per-side engine time per handshake with codec/crypto time subtracted."""
    rounds = 200
    clocks = {"i": Clock(), "r": Clock()}
    sides = Sides(be, {side: metered(be, c) for side, c in clocks.items()})
    for _ in range(rounds):
        sides.handshake()
    name = be.__name__.rsplit(".", 1)[-1]
    with capsys.disabled():
        for side, role in (("i", "initiator"), ("r", "responder")):
            total = sides.spent[side] / rounds * 1e6
            crypto = clocks[side].spent / rounds * 1e6
            print(f"\n[{name}] {role}: {total:.0f} us per handshake in engine calls, "
                  f"{crypto:.0f} us codec+crypto, {total - crypto:.0f} us engine Python")
    assert all(sides.spent[s] > clocks[s].spent > 0 for s in "ir")
