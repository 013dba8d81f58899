"""ikecp's own programs (``ikecp segw`` / ``ikecp fap`` / ``ikecp bindings``) as processes in
the test namespaces, configured with TOML files the way an operator would."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ikecp.lab import netns

CLI = [sys.executable, "-m", "ikecp.cli"]


def toml(values: dict[str, Any]) -> str:
    """Flat TOML: strings, numbers, booleans and lists of strings are all the tests need."""
    def one(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(one(x) for x in v) + "]"
        return json.dumps(str(v))
    return "".join(f"{k} = {one(v)}\n" for k, v in values.items())


class Role:
    """One ikecp process; its stdout lines are collected on a thread."""

    def __init__(self, proc: subprocess.Popen[str], name: str, stderr_path: Path) -> None:
        self.proc, self.name, self.stderr_path = proc, name, stderr_path
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, match: Callable[[str], bool], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no matching line in {timeout} s: {self.seen}"
                                   f"\nstderr: {self.stderr_tail()}")
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                       f"{self.seen}\nstderr: {self.stderr_tail()}") from None
                continue
            self.seen.append(line)
            if match(line):
                return line

    def wait_status(self, match: Callable[[dict[str, Any]], bool],
                    timeout: float = 15.0) -> dict[str, Any]:
        """The first ``ikecp fap --json`` status line that ``match`` accepts."""
        def ok(line: str) -> bool:
            try:
                return bool(match(json.loads(line)))
            except ValueError:
                return False
        return json.loads(self.wait_line(ok, timeout))  # type: ignore[no-any-return]

    def stderr_tail(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (the roles then DELETE their SAs) and wait."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


@contextlib.contextmanager
def role(topo: netns.NatTopology, where: str, command: str, config: dict[str, Any],
         workdir: Path, *extra: str) -> Iterator[Role]:
    """Run ``ikecp <command> --config <toml> <extra...>`` in namespace ``where``."""
    cfg_path = workdir / f"{command}.toml"
    cfg_path.write_text(toml(config))
    err_path = workdir / f"{command}.stderr"
    with open(err_path, "w") as err:
        proc = topo.popen(where, [*CLI, "-v", command, "--config", str(cfg_path), *extra],
                          stdout=subprocess.PIPE, stderr=err, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    r = Role(proc, f"ikecp {command}", err_path)
    try:
        yield r
    finally:
        r.stop()


def bindings(db: Path, *args: str) -> list[dict[str, Any]]:
    """``ikecp bindings --db <db> --json [filter]``: the SeGW's registry as a user reads it."""
    done = subprocess.run([*CLI, "bindings", "--db", str(db), "--json", *args],
                          capture_output=True, text=True, timeout=30)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"ikecp bindings failed: {done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def wait_bindings(db: Path, match: Callable[[list[dict[str, Any]]], bool],
                  timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = bindings(db)
        if match(rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"bindings never matched: {rows}")
        time.sleep(0.2)
