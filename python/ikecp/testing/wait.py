"""``wait_until``: poll a condition on the running asyncio loop, with a deadline, for the
tests that watch real sockets settle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once ``cond()`` is true; ``TimeoutError`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)
