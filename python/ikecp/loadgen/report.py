"""Turning a load run's raw measurements into a report: text, JSON, a plot, live progress.

Kept apart from ``loadgen`` so the driver loop imports nothing it does not need; ``rich`` and
``matplotlib`` are optional extras (``pip install ikecp[loadgen]``) and only imported here.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .generator import LoadConfig, Progress, WorkerResult


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def middle_rate(done_at: list[float]) -> float | None:
    """Completions per second between the 10th and the 90th percentile completion: the
    steady state, without the ramp-up and the tail."""
    times = sorted(done_at)
    if len(times) < 10:
        return None
    lo, hi = times[len(times) // 10], times[(len(times) * 9) // 10]
    n = (len(times) * 9) // 10 - len(times) // 10
    return n / (hi - lo) if hi > lo else None


def summarize(cfg: LoadConfig, res: WorkerResult) -> dict[str, Any]:
    """The report as plain data (what ``--json`` writes)."""
    lat = sorted(res.latencies)
    ok = len(lat)
    wall = max(res.t_end - res.t_start, 1e-9)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1e3, 3)

    return {
        "target": f"{cfg.target}:{cfg.port}/{cfg.natt_port}",
        "mode": f"open loop {cfg.rate}/s (ramp {cfg.ramp}s)" if cfg.rate
        else f"closed loop, window {cfg.window}",
        "auth": cfg.auth, "ike_proposal": cfg.ike_proposal, "nat": cfg.nat,
        "workers": cfg.workers,
        "started": res.started,
        "established": ok,
        "ike_established": res.established,
        "failed": sum(res.failures.values()),
        "failures": dict(res.failures.most_common()),
        "deleted": res.deleted,
        "retransmissions": res.retransmissions,
        "wall_seconds": round(wall, 3),
        "rate_overall": round(ok / wall, 1),
        "rate_middle_80": None if (r := middle_rate(res.done_at)) is None else round(r, 1),
        "latency_ms": {"p50": ms(percentile(lat, 50)), "p90": ms(percentile(lat, 90)),
                       "p99": ms(percentile(lat, 99)), "max": ms(lat[-1] if lat else None)},
        "nat_info": {"returned": res.nat_info_returned, "matched": res.nat_info_matched,
                     "missing": res.nat_info_missing,
                     "mismatches": list(res.nat_info_mismatched)},
        "inner_ip_assigned": res.inner_ip_assigned,
        "renewals": {step: {"done": len(v), "p50": ms(percentile(v, 50)),
                            "p90": ms(percentile(v, 90)), "p99": ms(percentile(v, 99)),
                            "max": ms(v[-1] if v else None)}
                     for step, v in ((k, sorted(x)) for k, x in res.renewals.items())},
        "cpu_seconds": round(res.cpu_seconds, 3),
        "cpu_us_per_handshake": round(res.cpu_seconds / ok * 1e6, 1) if ok else None,
        "stopped_by": res.stopped_by,
    }


def format_text(summary: dict[str, Any]) -> str:
    s = summary
    lat = s["latency_ms"]
    nat = s["nat_info"]
    lines = [
        f"target {s['target']}, {s['mode']}, {s['workers']} worker(s), auth {s['auth']}, "
        f"{s['ike_proposal']}{', behind NAT' if s['nat'] else ''}",
        f"started {s['started']}, established {s['established']}, failed {s['failed']}, "
        f"deleted {s['deleted']}, retransmissions {s['retransmissions']} "
        f"(stopped by {s['stopped_by']})",
        f"rate {s['rate_middle_80']} hs/s over the middle 80 % "
        f"({s['rate_overall']} hs/s over {s['wall_seconds']} s)",
        f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}",
        f"NAT-info: returned {nat['returned']}, matched {nat['matched']}, "
        f"missing {nat['missing']}; inner IP assigned {s['inner_ip_assigned']}",
        f"CPU {s['cpu_seconds']} s ({s['cpu_us_per_handshake']} us per handshake)",
    ]
    lines += [f"{step}: {r['done']} done, latency ms p50 {r['p50']}  p90 {r['p90']}  "
              f"p99 {r['p99']}  max {r['max']}" for step, r in s["renewals"].items()]
    lines += [f"  failure: {n} x {cause}" for cause, n in s["failures"].items()]
    lines += [f"  NAT-info mismatch: {m}" for m in nat["mismatches"]]
    return "\n".join(lines)


def write_json(path: str, summary: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")


def plot(path: str, res: WorkerResult) -> None:
    """A latency histogram and the completion rate over time (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.hist([v * 1e3 for v in res.latencies], bins=50)
    ax1.set(xlabel="handshake latency (ms)", ylabel="handshakes", title="latency")
    if res.done_at:
        t0 = res.t_start
        secs = [t - t0 for t in res.done_at]
        width = max(0.1, (max(secs) + 1e-9) / 50)
        bins = int(max(secs) / width) + 1
        counts = [0] * bins
        for t in secs:
            counts[min(bins - 1, int(t / width))] += 1
        ax2.plot([i * width for i in range(bins)], [c / width for c in counts])
    ax2.set(xlabel="time (s)", ylabel="handshakes/s", title="rate")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class _Totals:
    """Adds up the latest snapshot of every worker."""

    def __init__(self) -> None:
        self.latest: dict[int, Progress] = {}
        self.t0 = time.monotonic()

    def update(self, p: Progress) -> None:
        self.latest[p.worker] = p

    def line(self) -> str:
        ps = list(self.latest.values())
        failures: dict[str, int] = {}
        for p in ps:
            for k, v in p.failures.items():
                failures[k] = failures.get(k, 0) + v
        elapsed = time.monotonic() - self.t0
        est = sum(p.established for p in ps)
        fail = ", ".join(f"{k}: {v}" for k, v in failures.items()) or "none"
        return (f"{elapsed:6.1f}s  established {est}  ({est / max(elapsed, 1e-9):.0f}/s)  "
                f"in flight {sum(p.in_flight for p in ps)}  "
                f"retransmissions {sum(p.retransmissions for p in ps)}  failures: {fail}")


@contextmanager
def live_progress(plain: bool = False) -> Iterator[Callable[[Progress], None]]:
    """A progress callback: a ``rich`` live line when rich is installed and the output is a
    terminal, else a plain line at most once a second."""
    totals = _Totals()
    live: Any = None
    if not plain and sys.stdout.isatty():
        try:
            from rich.live import Live
            live = Live("", refresh_per_second=4, transient=False)
        except ImportError:
            live = None
    if live is not None:
        with live:
            def show(p: Progress) -> None:
                totals.update(p)
                live.update(totals.line())
            yield show
        return
    last = [0.0]

    def plain_line(p: Progress) -> None:
        totals.update(p)
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            print(totals.line(), flush=True)
    yield plain_line
