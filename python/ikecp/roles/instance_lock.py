"""One SeGW per binding registry: an exclusive lock on a file beside the database.

The lock is an open-file-description lock (Linux ``F_OFD_SETLK``; ``flock`` elsewhere): the
kernel drops it when the process dies, kill -9 included, so a crash never leaves a stale
lock behind, and another process (``ikecp bindings``) can ask whether anyone holds it
without taking it (``F_OFD_GETLK``), which is how it tells live rows from rows a crash
left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct

_OFD_SET = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_GET = getattr(fcntl, "F_OFD_GETLK", None)


def lock_path(db: str) -> str | None:
    """The lock file of the registry at ``db`` (None for an in-memory registry)."""
    return None if db == ":memory:" or db.startswith("file::memory:") else db + ".lock"


def _flock(kind: int) -> bytes:
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks), padding.
    return struct.pack("hhqqixxxx", kind, os.SEEK_SET, 0, 0, 0)


class InstanceBusyError(OSError):
    """Another process holds the registry's lock."""


class InstanceLock:
    """Held from ``acquire`` until ``release`` (or the process ends)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``InstanceBusyError`` naming the registry."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _OFD_SET is not None:
                fcntl.fcntl(fd, _OFD_SET, _flock(fcntl.F_WRLCK))
            else:  # pragma: no cover - non-Linux
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise InstanceBusyError(
                    errno.EADDRINUSE, f"registry {self.path.removesuffix('.lock')} is in use "
                    f"by another SeGW (lock {self.path})") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (a no-op if this object does not hold it)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the description drops the lock
            self._fd = None


def is_held(path: str) -> bool | None:
    """Whether some process holds the lock at ``path``; None if this platform cannot tell."""
    if _OFD_GET is None:  # pragma: no cover - non-Linux
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        answer = fcntl.fcntl(fd, _OFD_GET, _flock(fcntl.F_WRLCK))
        return struct.unpack("hhqqixxxx", answer)[0] != fcntl.F_UNLCK
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
