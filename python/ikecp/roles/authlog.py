"""WARNING lines for failed authentications, rate limited per failure class.

An operator must see a wrong secret, an unknown FAP or a bad certificate chain without
turning on INFO logs; a flood of forged IKE_AUTHs must not flood the log. Each failure class
(``ikecp.engine.auth.UNKNOWN_IDENTITY`` and friends) has a token bucket: ``burst`` lines at
once, then ``rate`` lines per second; what the bucket refuses is counted and reported as one
"N similar ... suppressed" line when the class may log again (or on ``flush``). The line
names the peer's address:port, the identity it claimed (escaped: it is attacker-chosen
text) and the reason, never a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..addr import Address
from ..events import AuthenticationFailed

#: Longest claimed identity written out; the rest is cut (it is the peer's text).
MAX_IDENTITY = 100


def printable(text: str) -> str:
    """``text`` with control and non-ASCII characters escaped, cut to ``MAX_IDENTITY``."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return escaped if len(escaped) <= MAX_IDENTITY else escaped[:MAX_IDENTITY] + "..."


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0


class AuthFailureLog:
    """Logs ``AuthenticationFailed`` events on ``logger`` at WARNING, rate limited."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, rate: float = 1.0) -> None:
        self.logger = logger
        self.burst = burst
        self.rate = rate
        self._buckets: dict[str, _Bucket] = {}

    def failure(self, peer: Address | None, event: AuthenticationFailed, now: float) -> bool:
        """Log one failure (``now``: monotonic seconds); False when it was suppressed."""
        bucket = self._refill(event.failure, now)
        if bucket.tokens < 1:
            bucket.suppressed += 1
            return False
        bucket.tokens -= 1
        self._summary(event.failure, bucket)
        where = f"{peer[0]}:{peer[1]}" if peer is not None else "unknown address"
        self.logger.warning("authentication failed (%s) from %s, claimed identity '%s': %s",
                            event.failure, where, printable(str(event.identity)),
                            event.reason)
        return True

    def flush(self, now: float) -> None:
        """Report suppressed failures of every class that may log again."""
        for failure in list(self._buckets):
            bucket = self._refill(failure, now)
            if bucket.suppressed and bucket.tokens >= 1:
                bucket.tokens -= 1
                self._summary(failure, bucket)

    def _refill(self, failure: str, now: float) -> _Bucket:
        bucket = self._buckets.get(failure)
        if bucket is None:
            bucket = self._buckets[failure] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def _summary(self, failure: str, bucket: _Bucket) -> None:
        if bucket.suppressed:
            self.logger.warning("%d similar authentication failures (%s) suppressed",
                                bucket.suppressed, failure)
            bucket.suppressed = 0
