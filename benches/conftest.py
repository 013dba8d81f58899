"""Prints python/native ratios (of the medians and of the minima) per benchmark group, both
backends measured side by side in one run; the minima are steadier on a loaded machine.
Groups that also hold a ``cryptography`` entry (what ikecp used before, e.g. finite-field DH)
get a cryptography/native line too."""

from __future__ import annotations

import re

import pytest

_BACKEND = re.compile(r"\[(native|python)\b|_(cryptography)_before")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    for bench in getattr(session, "benchmarks", []):
        found = _BACKEND.search(bench.name)
        if found and bench:  # a benchmark that errored has no stats
            kind = found[1] or found[2]
            stats.setdefault(bench.group or "", {})[kind] = (bench["median"], bench["min"])
    rows = [(g, m) for g, m in sorted(stats.items()) if {"native", "python"} <= m.keys()]
    if not rows:
        return
    terminalreporter.section("python / native: median ratio, min ratio")
    for group, m in rows:
        (nat_med, nat_min), (py_med, py_min) = m["native"], m["python"]
        terminalreporter.write_line(
            f"{py_med / nat_med:6.1f}x {py_min / nat_min:6.1f}x  {group}  (median: native "
            f"{nat_med * 1e6:.2f} us, python {py_med * 1e6:.2f} us)")
        if "cryptography" in m:
            old_med, old_min = m["cryptography"]
            terminalreporter.write_line(
                f"{old_med / nat_med:6.2f}x {old_min / nat_min:6.2f}x  {group}: cryptography / "
                f"native (median: cryptography {old_med * 1e6:.2f} us)")
