"""In-memory IKE handshakes (X25519 + PSK + AES-GCM-256, initiator behind a simulated NAPT,
NAT-info attribute requested and answered), native vs pure-Python backend in one run.

Run: ``pytest benches/bench_engine.py -s --benchmark-group-by=group`` with a release build.

``test_engine_overhead`` prints, per side, the CPU microseconds per handshake the engine's own
Python code costs. It records the result of every codec/crypto call (backend functions, SK
cipher construction/seal/open, Diffie-Hellman, os.urandom) of one real handshake, then runs
the same handshake again and again with every such call answered from that recording: what
remains is the engine (plus ~0.1 us per canned call, 30-odd calls per side). Thread CPU time
is used because the machine is shared; the best of several batches is kept.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
from ikecp import _backend, dh
from ikecp.cp import CpRegistry, NatInfoHandler, NatInfoProvider
from ikecp.engine import IkeProposal, IkeSa, PskAuthenticator, Settings
from ikecp.engine import child_create as child_create_module
from ikecp.engine import nat_detection as nat_detection_module
from ikecp.engine import sa as sa_module
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
RANDOM_USERS = (sa_module, sa_init_module, child_create_module, nat_detection_module)
CODEC_CRYPTO = ("decode_message", "encode_message", "decode_payloads", "encode_payloads", "prf",
                "prf_plus", "skeyseed", "ike_keys", "child_keymat", "signed_octets",
                "psk_auth", "nat_detection_hash", "seal_message", "open_message")

cpu = time.thread_time  # a shared machine: waiting for a core is not our cost


class Tape:
    """Results of one side's codec/crypto calls, in call order."""

    def __init__(self) -> None:
        self.items: list = []
        self.pos = 0

    def record(self, fn):
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            self.items.append(result)
            return result
        return call

    def play(self, *_args, **_kwargs):
        item = self.items[self.pos]
        self.pos += 1
        return item


def recording(be, tape: Tape):
    """Backend, dh and os stand-ins that run the real calls and record their results."""
    ns = SimpleNamespace(**{n: tape.record(getattr(be, n)) for n in CODEC_CRYPTO})

    class Cipher:
        def __init__(self, *args) -> None:
            self.inner = inner = tape.record(be.SkCipher)(*args)
            self.seal, self.open = tape.record(inner.seal), tape.record(inner.open)
            self.iv_size, self.icv_size = inner.iv_size, inner.icv_size

    # The whole-message calls get the real cipher inside the recording stand-in.
    ns.seal_message = tape.record(lambda c, msg, **kw: be.seal_message(c.inner, msg, **kw))
    ns.open_message = tape.record(lambda c, data: be.open_message(c.inner, data))

    class Private:
        def __init__(self, group: int) -> None:
            inner = tape.record(dh.generate)(group)
            self.group, self.public_bytes = inner.group, inner.public_bytes
            self.exchange = tape.record(inner.exchange)

    ns.SkCipher = Cipher
    return ns, SimpleNamespace(generate=Private), SimpleNamespace(urandom=tape.record(os.urandom))


def playing(tape: Tape):
    """The same stand-ins answering every call from ``tape`` without computing anything."""
    ns = SimpleNamespace(**dict.fromkeys(CODEC_CRYPTO, tape.play))

    class Cipher:
        iv_size, icv_size = 8, 16

        def __init__(self, *args) -> None:
            tape.play()
            self.seal = self.open = tape.play

    class Private:
        def __init__(self, group: int) -> None:
            real = tape.play()
            self.group, self.public_bytes = real.group, real.public_bytes
            self.exchange = tape.play

    ns.SkCipher = Cipher
    return ns, SimpleNamespace(generate=Private), SimpleNamespace(urandom=tape.play)


class Sides:
    """Runs one handshake, initiator behind a NAPT. With ``per_side`` each side gets its own
    (backend, dh, os) stand-ins, switched in before each call into that side since
    the task modules read module globals; ``spent`` sums the CPU time of
    calls into each side."""

    def __init__(self, be, per_side: dict | None = None) -> None:
        self.be = be
        self.per_side = per_side
        self.spent = {"i": 0.0, "r": 0.0}

    def call(self, side: str, fn, *args):
        if self.per_side is not None:
            _backend.backend, sa_init_module.dh, fake_os = self.per_side[side]
            for module in RANDOM_USERS:
                module.os = fake_os
        start = cpu()
        try:
            return fn(*args)
        finally:
            self.spent[side] += cpu() - start
            _backend.backend, sa_init_module.dh = self.be, dh
            for module in RANDOM_USERS:
                module.os = os

    def handshake(self) -> IkeSa:
        call, now = self.call, 0.0
        be_i = self.per_side["i"][0] if self.per_side else self.be
        be_r = self.per_side["r"][0] if self.per_side else self.be
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
    """Per-side engine CPU time per handshake with every codec/crypto call canned."""
    tapes = {"i": Tape(), "r": Tape()}
    Sides(be, {s: recording(be, tapes[s]) for s in "ir"}).handshake()
    batches, rounds = 7, 100
    best = {"i": float("inf"), "r": float("inf")}
    for _ in range(batches):
        sides = Sides(be, {s: playing(tapes[s]) for s in "ir"})
        for _ in range(rounds):
            for tape in tapes.values():
                tape.pos = 0
            sides.handshake()
            assert all(t.pos == len(t.items) for t in tapes.values())
        for side in "ir":
            best[side] = min(best[side], sides.spent[side] / rounds * 1e6)
    name = be.__name__.rsplit(".", 1)[-1]
    with capsys.disabled():
        for side, role in (("i", "initiator"), ("r", "responder")):
            print(f"\n[{name}] {role}: {best[side]:.0f} us engine Python CPU per handshake "
                  f"({len(tapes[side].items)} codec/crypto/random calls canned)")
    assert best["i"] > 0 and best["r"] > 0


def test_memory_per_established_sa(be, monkeypatch, capsys):
    """Python heap per established responder SA (IKE SA + its CHILD_SA) after its events
    are drained. tracemalloc does not see allocations made inside the Rust extension."""
    import gc
    import tracemalloc

    kept: list[IkeSa] = []
    responder = IkeSa.responder

    def keep(*args, **kwargs):
        kept.append(responder(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(IkeSa, "responder", keep)
    sides, count = Sides(be), 500
    sides.handshake()  # warm caches before measuring
    kept.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(count):
            sides.handshake()
        for sa in kept:
            while sa.next_event() is not None:
                pass
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before,
                                                                               "filename"))
    finally:
        tracemalloc.stop()
    assert len(kept) == count and all(sa.established for sa in kept)
    with capsys.disabled():
        print(f"\n[{be.__name__.rsplit('.', 1)[-1]}] {grown / count:.0f} bytes of Python heap "
              f"per established responder SA")
