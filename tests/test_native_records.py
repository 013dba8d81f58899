"""How the native codec builds ``ikecp.message`` records: through each class's own
construction. A record class whose ``__init__`` is the one ``ikecp.record`` generated is
filled through its member descriptors (the same calls that ``__init__`` makes); any other
class is called, so checks it adds are never skipped. Each case runs in a fresh interpreter,
since the native module looks the classes up once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, timeout=60)


def test_a_class_with_its_own_checks_is_called():
    _run("""
        import ikecp.message as m
        from ikecp import _native
        calls = []
        plain_init = m.Nonce.__init__
        def checked(self, data, critical=False):
            calls.append(data)
            if data == b"bad":
                raise ValueError("rejected by Nonce's own check")
            plain_init(self, data, critical)
        m.Nonce.__init__ = checked          # no __record_fields__: not a plain record any more
        nonce = lambda d: bytes((0, 0, 0, 4 + len(d))) + d
        (p,) = _native.decode_payloads(40, nonce(b"ok"))
        assert p == m.Nonce(b"ok") and calls == [b"ok", b"ok"], calls
        try:
            _native.decode_payloads(40, nonce(b"bad"))
        except ValueError as e:
            assert "own check" in str(e)
        else:
            raise AssertionError("the class's check was bypassed")
    """)


def test_a_post_init_check_is_honoured():
    _run("""
        import dataclasses
        import ikecp.message as m
        from ikecp import _native
        @dataclasses.dataclass(frozen=True, slots=True)
        class Nonce:
            payload_type = 40
            data: bytes
            critical: bool = False
            def __post_init__(self):
                if len(self.data) < 2:
                    raise ValueError("nonce too short for this host")
        m.Nonce = Nonce                      # before the native module first looks it up
        (p,) = _native.decode_payloads(40, bytes((0, 0, 0, 6)) + b"ok")
        assert type(p) is Nonce and p.data == b"ok"
        try:
            _native.decode_payloads(40, bytes((0, 0, 0, 5)) + b"x")
        except ValueError as e:
            assert "too short" in str(e)
        else:
            raise AssertionError("__post_init__ was bypassed")
    """)


def test_plain_records_are_marked_for_the_fast_path():
    from ikecp.message import Message, Nonce

    assert Nonce.__init__.__record_fields__ == ("data", "critical")
    assert Message.__init__.__record_fields__[:2] == ("spi_i", "spi_r")
