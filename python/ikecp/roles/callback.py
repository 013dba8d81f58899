"""``call``: run an application's callback without letting its exception reach the I/O loop.

A role calls back while it is in the middle of a batch of engine events; an exception there
would abandon the rest of the batch (binding rows not written, SAs not followed). It is
logged with its traceback instead, as asyncio does for its own callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


def call(log: logging.Logger, callback: Callable[..., object] | None, *args: Any) -> None:
    """``callback(*args)`` if there is one; an exception is logged, not raised."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        log.exception("the application's callback %s raised",
                      getattr(callback, "__qualname__", callback))
