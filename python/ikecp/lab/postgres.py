"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl, Unix socket only, removed after.

Debian's ``postgresql`` package puts the server binaries under ``/usr/lib/postgresql/<v>/bin``.
The server refuses to run as root, so when the tests run as root the cluster belongs to an
unprivileged account (``postgres`` if the package created it, else ``nobody``). It listens on
no TCP port at all: only on a Unix socket in its own temporary directory, so parallel test
runs never collide and nothing is reachable from outside the machine. ``fsync`` is off: the
data is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries, or whatever ``initdb`` is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def probe() -> str | None:
    """Why no throwaway cluster can be made here, or None."""
    b = bindir()
    if b is None or not (b / "pg_ctl").exists():
        return "PostgreSQL server missing (run .ci/install-peers.sh)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg missing (pip install 'ikecp[postgres]')"
    return None


@dataclass(frozen=True)
class Cluster:
    """A running cluster: ``url`` is a libpq URL of database ``ikecp`` on the socket."""

    root: Path
    socket_dir: Path
    url: str

    def database(self, name: str) -> str:
        """Create database ``name`` and return its URL (one per test keeps tests apart)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.replace("/ikecp?", f"/{name}?", 1)


def _account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
    raise RuntimeError("no unprivileged account to run PostgreSQL as")


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a new cluster; stop it and delete every file of it on exit."""
    b = bindir()
    if b is None:
        raise RuntimeError("PostgreSQL server missing")
    account = _account()
    root = Path(tempfile.mkdtemp(prefix="ikecp-pg-"))  # short: socket paths are limited
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if account is not None:
        for p in (root, sock):
            os.chown(p, *account)

    def run(*argv: str) -> None:
        kw: dict = {"user": account[0], "group": account[1],
                    "extra_groups": []} if account else {}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=root,
                              **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {proc.stdout}{proc.stderr}")

    started = False
    try:
        run(str(b / "initdb"), "-D", str(data), "-U", "ikecp", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions")
        opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        run(str(b / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w",
            "-t", "60", "start")
        started = True
        base = f"postgresql:///postgres?host={sock}&user=ikecp"
        import psycopg

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("CREATE DATABASE ikecp")
        yield Cluster(root, sock, f"postgresql:///ikecp?host={sock}&user=ikecp")
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run(str(b / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
