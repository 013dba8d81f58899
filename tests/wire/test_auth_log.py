"""Failed authentications reach the SeGW's log at WARNING (address:port, claimed identity,
class), rate limited per class under floods, never with a secret."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from ikecp.engine import Identity
from ikecp.engine.auth import BAD_AUTH, UNKNOWN_IDENTITY
from ikecp.events import AuthenticationFailed
from ikecp.lab.demo import Topology
from ikecp.roles.authlog import AuthFailureLog, printable

GOOD = "the right secret of fap 1, 32 oct"
WRONG = "a wrong secret that every FAP has"


def test_segw_logs_bad_auth_and_unknown_identity_at_warning(caplog) -> None:
    async def main() -> None:
        topo = Topology(2, segw_options={"peers": {"fap-001.demo.ikecp": GOOD}},
                        fap_options={"psk": WRONG, "reconnect": 30.0})
        topo.psk = None  # only the table: fap-002 is unknown
        try:
            with contextlib.suppress(TimeoutError):
                await topo.start(timeout=3.0)
        finally:
            await topo.stop()

    with caplog.at_level(logging.WARNING, logger="ikecp.segw"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records
             if r.name == "ikecp.segw" and r.levelno == logging.WARNING]
    bad = [m for m in lines if f"({BAD_AUTH})" in m]
    unknown = [m for m in lines if f"({UNKNOWN_IDENTITY})" in m]
    assert bad and unknown, lines
    assert re.search(r"from 127\.0\.0\.1:\d+, claimed identity 'fap-001\.demo\.ikecp'", bad[0])
    assert "claimed identity 'fap-002.demo.ikecp'" in unknown[0]
    every = "\n".join(r.getMessage() for r in caplog.records)
    assert GOOD not in every and WRONG not in every


class Clock:
    def __init__(self) -> None:
        self.now = 0.0


def test_a_flood_is_rate_limited_with_a_summary(caplog) -> None:
    log = logging.getLogger("ikecp.test.authlog")
    limiter = AuthFailureLog(log, burst=10, rate=1.0)
    ev = AuthenticationFailed(Identity.fqdn("forged.example"), BAD_AUTH, "AUTH does not verify")
    other = AuthenticationFailed(Identity.fqdn("x.example"), UNKNOWN_IDENTITY, "no PSK")
    with caplog.at_level(logging.WARNING, logger="ikecp.test.authlog"):
        logged = sum(limiter.failure(("127.0.0.1", 4500 + i % 1000), ev, i / 1000)
                     for i in range(1000))  # 1,000 failures in one second
        assert limiter.failure(("127.0.0.1", 1), other, 1.0)  # a class of its own
        limiter.flush(5.0)
    lines = [r.getMessage() for r in caplog.records]
    assert 10 <= logged <= 12
    (summary,) = [m for m in lines if "suppressed" in m]
    assert summary == f"{1000 - logged} similar authentication failures ({BAD_AUTH}) suppressed"
    assert len(lines) == logged + 2
    limiter.flush(6.0)  # nothing new: no second summary
    assert len(caplog.records) == len(lines)


def test_claimed_identity_is_escaped_and_cut() -> None:
    assert printable("fap\nFAKE LOG LINE") == "fap\\x0aFAKE LOG LINE"
    assert printable("caf\u00e9") == "caf\\xe9"
    assert len(printable("a" * 1000)) == 103
