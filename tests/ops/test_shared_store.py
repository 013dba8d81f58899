"""Two ``ikecp segw`` processes write one PostgreSQL binding store at the same time, each
under its own load generator; ``ikecp bindings`` reads across them and ``--follow`` streams
every change from the LISTEN/NOTIFY feed."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections import Counter
from contextlib import ExitStack

from ikecp.loadgen import generator as loadgen
from ikecp.roles.bindings import open_store
from ops_helpers import CLI, ENV, segw_process, segw_toml, wait_for

N = 60  # handshakes per SeGW


def bindings_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "bindings", *args], capture_output=True, text=True,
                          timeout=60, env=ENV)


def test_two_segws_share_one_postgres_store(tmp_path, pg_url) -> None:
    follow = subprocess.Popen([*CLI, "bindings", "--db", pg_url, "--follow"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV)
    reader = open_store(pg_url, reader=True)
    try:
        with ExitStack() as stack:
            segws = {name: stack.enter_context(segw_process(
                tmp_path, segw_toml(pg_url, f'instance = "{name}"'), name=name))
                for name in ("segw-a", "segw-b")}
            results: dict[str, loadgen.WorkerResult] = {}

            def load(name: str) -> None:
                s = segws[name]
                results[name] = loadgen.run(loadgen.LoadConfig(
                    port=s.port, natt_port=s.natt_port, count=N, window=12,
                    id_template=f"{name}-fap-{{n}}@lab.example", teardown=False,
                    timeout=30.0))

            runs = [threading.Thread(target=load, args=(name,)) for name in segws]
            for t in runs:
                t.start()
            for t in runs:
                t.join(120)
            assert all(results[n].established == N for n in segws), \
                {n: r.failures for n, r in results.items()}

            # Every binding once, at the instance that made it (the last ones may be written
            # just after their IKE_AUTH response went out).
            assert wait_for(lambda: len(reader.all()) >= 2 * N, 10)
            rows = reader.all()
            assert len(rows) == 2 * N
            assert Counter(b.instance for b in rows) == {"segw-a": N, "segw-b": N}
            assert all(b.identity.startswith(f"{b.instance}-fap-") for b in rows)
            assert len({(b.instance, b.spi_r) for b in rows}) == 2 * N
            assert len({b.identity for b in rows}) == 2 * N
            listed = bindings_cli("--db", pg_url, "--json")
            assert listed.returncode == 0, listed.stderr
            assert len(listed.stdout.splitlines()) == 2 * N
            only_b = bindings_cli("--db", pg_url, "--instance", "segw-b", "--json")
            assert {json.loads(x)["instance"] for x in only_b.stdout.splitlines()} == \
                {"segw-b"}
            table = bindings_cli("--db", pg_url)
            assert "segw-a" in table.stdout and "segw-b" in table.stdout

            # A stops: its rows close (its FAPs are gone, the DELETEs go unanswered),
            # B's stay.
            a = segws["segw-a"].proc
            a.send_signal(signal.SIGTERM)
            assert a.wait(30) == 0
            assert Counter(b.instance for b in reader.all()) == {"segw-b": N}
        assert reader.all() == []
        ups = Counter(h[8] for h in reader.history() if h[1] == "up")
        downs = Counter(h[8] for h in reader.history() if h[1] == "down")
        assert ups == downs == {"segw-a": N, "segw-b": N}

        # The change feed saw all of it, as it happened.
        lines: list[str] = []
        assert follow.stdout is not None

        def read_feed() -> None:
            for line in follow.stdout:  # type: ignore[union-attr]
                lines.append(line)

        threading.Thread(target=read_feed, daemon=True).start()
        assert wait_for(lambda: len(lines) >= 4 * N, 20), len(lines)
        feed = Counter((c["event"], c["instance"]) for c in map(json.loads, lines))
        assert feed == {("up", "segw-a"): N, ("up", "segw-b"): N, ("down", "segw-a"): N,
                        ("down", "segw-b"): N}
    finally:
        reader.close()
        follow.send_signal(signal.SIGTERM)
        assert follow.wait(15) == 0, follow.stderr.read() if follow.stderr else ""
