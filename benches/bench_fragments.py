"""IKE fragmentation (RFC 7383) costs, native vs pure Python side by side in one run.

A 4.5 KB IKE_AUTH-sized message (a CERT-chain-sized payload) sent whole (``seal_message``) and
as SKF fragments for a 1280-octet path (``fragments.split``: 4 fragments), and received whole
(``open_message``) and fragment by fragment (``Reassembler.add`` for each, the last one
returning the message). Run (release build of the extension):

    python -m pytest benches/bench_fragments.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import pytest
from ikecp._backend import load
from ikecp.const import CertEncoding, ExchangeType, HeaderFlag
from ikecp.engine.fragments import FragmentPolicy, Reassembler, split
from ikecp.message import Cert, Message

LIMIT = FragmentPolicy().max_ike_message("198.51.100.10", True)  # 1248 octets
MSG = Message(bytes(range(1, 9)), bytes(range(9, 17)), ExchangeType.IKE_AUTH,
              HeaderFlag.INITIATOR, 1,
              tuple(Cert(CertEncoding.X509_CERT_SIG, bytes([n]) * 1500) for n in range(3)))


@pytest.fixture(params=["native", "python"])
def be(request):
    return load(request.param)


def _cipher(be):
    return be.SkCipher(20, bytes(range(36)), 0, b"")


@pytest.mark.benchmark(group="send whole (seal_message)")
def test_seal_whole(benchmark, be):
    cipher = _cipher(be)
    assert len(benchmark(be.seal_message, cipher, MSG)) > 4500


@pytest.mark.benchmark(group="send fragmented (split, 4 SKF)")
def test_split(benchmark, be):
    cipher = _cipher(be)
    assert len(benchmark(split, be, cipher, MSG, LIMIT)) == 4


@pytest.mark.benchmark(group="receive whole (open_message)")
def test_open_whole(benchmark, be):
    cipher = _cipher(be)
    wire = be.seal_message(cipher, MSG)
    assert benchmark(be.open_message, cipher, wire).payloads == MSG.payloads


@pytest.mark.benchmark(group="receive fragmented (4 x Reassembler.add)")
def test_reassemble(benchmark, be):
    cipher = _cipher(be)
    frags = [(m, m.payloads[-1], d) for d in split(be, cipher, MSG, LIMIT)
             for m in (be.decode_message(d),)]

    policy = FragmentPolicy()  # one per SA's settings, as in the engine

    def receive():
        reasm = Reassembler(policy)
        for msg, skf, data in frags:
            whole = reasm.add(be, cipher, msg, skf, data, 0.0)
        return whole

    assert benchmark(receive).payloads == MSG.payloads
