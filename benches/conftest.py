"""Prints python/native median ratios per benchmark group, measured side by side in one run."""

from __future__ import annotations

import re

import pytest

_BACKEND = re.compile(r"\[(native|python)\b")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    medians: dict[str, dict[str, float]] = {}
    for bench in getattr(session, "benchmarks", []):
        found = _BACKEND.search(bench.name)
        if found and bench:  # a benchmark that errored has no stats
            medians.setdefault(bench.group or "", {})[found[1]] = bench["median"]
    rows = [(g, m) for g, m in sorted(medians.items()) if m.keys() == {"native", "python"}]
    if not rows:
        return
    terminalreporter.section("python / native (median)")
    for group, m in rows:
        terminalreporter.write_line(
            f"{m['python'] / m['native']:6.1f}x  {group}  "
            f"(native {m['native'] * 1e6:.2f} us, python {m['python'] * 1e6:.2f} us)")
