"""Prints python/native ratios (of the medians and of the minima) per benchmark group, both
backends measured side by side in one run; the minima are steadier on a loaded machine."""

from __future__ import annotations

import re

import pytest

_BACKEND = re.compile(r"\[(native|python)\b")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    for bench in getattr(session, "benchmarks", []):
        found = _BACKEND.search(bench.name)
        if found and bench:  # a benchmark that errored has no stats
            stats.setdefault(bench.group or "", {})[found[1]] = (bench["median"], bench["min"])
    rows = [(g, m) for g, m in sorted(stats.items()) if m.keys() == {"native", "python"}]
    if not rows:
        return
    terminalreporter.section("python / native: median ratio, min ratio")
    for group, m in rows:
        (nat_med, nat_min), (py_med, py_min) = m["native"], m["python"]
        terminalreporter.write_line(
            f"{py_med / nat_med:6.1f}x {py_min / nat_min:6.1f}x  {group}  (median: native "
            f"{nat_med * 1e6:.2f} us, python {py_med * 1e6:.2f} us)")
