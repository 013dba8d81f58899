"""The load generator against an in-process ikecp responder on loopback (real UDP), directly
and through the userspace NAPT; target refusal; bounded stop."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from ikecp import cli
from ikecp.cp import AddressPool, CpRegistry, NatInfoProvider, PoolProvider
from ikecp.engine import IkeProposal, PskAuthenticator, Settings
from ikecp.events import ChildSaFailed, SaFailed, failure_cause
from ikecp.lab.responder import serve_in_thread
from ikecp.loadgen.generator import (
    DEFAULT_PSK,
    LoadConfig,
    TargetRefusedError,
    WorkerResult,
    check_target,
    identity,
    run,
)
from ikecp.loadgen.report import middle_rate, percentile, summarize

PROPOSAL = "aes256gcm16-prfsha256-x25519"


def segw_settings(psk: bytes = DEFAULT_PSK) -> Settings:
    reg = (CpRegistry().add_provider(NatInfoProvider())
           .add_provider(PoolProvider(AddressPool("10.8.0.0/16"))))
    return Settings(local_id=identity("segw.lab.example"), auth=PskAuthenticator(psk), cp=reg,
                    ike_proposals=(IkeProposal.parse(PROPOSAL),))


@pytest.fixture
def segw():
    with serve_in_thread(segw_settings(), lifetime=60) as r:
        yield r


def test_fifty_faps_through_the_nat_all_established_and_nat_info_matches(segw):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=50, window=10, nat=True,
                     duration=20, timeout=8, ike_proposal=PROPOSAL)
    res = run(cfg)
    s = summarize(cfg, res)
    assert s["failures"] == {}
    assert s["started"] == s["established"] == res.child_established == 50
    # Every reply carried attribute 23 with the address:port the relay's NAPT gave that FAP.
    assert s["nat_info"] == {"returned": 50, "matched": 50, "missing": 0, "mismatches": []}
    assert s["inner_ip_assigned"] == 50 and s["deleted"] == 50
    assert segw.counters.established == segw.counters.children == 50
    # The SeGW saw 50 distinct identities, each from its own public (NATed) port.
    lat = s["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 8000
    assert s["rate_overall"] > 0 and s["cpu_seconds"] > 0 and s["stopped_by"] == "count"
    assert len(res.done_at) == 50 and all(res.t_start <= t <= res.t_end for t in res.done_at)


def test_rekeys_and_reauthentication_at_rate_through_the_nat(segw, capsys):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=20, window=10, nat=True,
                     duration=20, timeout=8, ike_proposal=PROPOSAL, rekey_after=0.2,
                     reauth_after=0.2)
    res = run(cfg)
    s = summarize(cfg, res)
    assert s["failures"] == {}
    assert s["established"] == 20 and s["ike_established"] == 20 and s["deleted"] == 20
    assert {k: r["done"] for k, r in s["renewals"].items()} == \
        {"child rekey": 20, "ike rekey": 20, "reauth": 20}
    for r in s["renewals"].values():
        assert 0 < r["p50"] <= r["p90"] <= r["max"] < 8000
    # The reauthenticated SA asked for NAT info again: 40 answers, all matching the NAPT.
    assert s["nat_info"]["returned"] == 40 and s["nat_info"]["matched"] == 40
    from ikecp.loadgen.report import format_text
    assert "ike rekey: 20 done" in format_text(s)


def test_renewal_failures_are_counted_by_cause(segw):
    """A CHILD rekey with PFS the responder does not accept: NO_PROPOSAL_CHOSEN."""
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=4, window=4,
                     duration=10, timeout=5, ike_proposal=PROPOSAL,
                     esp_proposal="aes256gcm16-x25519", rekey_after=0.0)
    res = run(cfg)
    s = summarize(cfg, res)
    assert s["established"] == 4
    assert s["failures"] == {"child rekey: child notify NO_PROPOSAL_CHOSEN": 4}
    assert s["renewals"] == {}


def test_identities_and_source_ports_are_per_fap(segw):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=6, window=6,
                     force_encap=True, teardown=False, hold=0.0, duration=10, timeout=8,
                     id_template="fap-{n}@lab.example")
    res = run(cfg)
    assert res.established == 6 and res.nat_info_matched == 6  # no NAT: our own sockets
    d = segw.dispatcher
    peers = {(str(sa.peer_id), sa.remote) for sa in d.sas() if sa.established}
    assert {p[0] for p in peers} == {f"fap-{n}@lab.example" for n in range(6)}
    assert len({p[1] for p in peers}) == 6


def test_wrong_psk_is_counted_as_auth_failure():
    with serve_in_thread(segw_settings(b"another key"), lifetime=30) as r:
        cfg = LoadConfig(port=r.port, natt_port=r.natt_port, count=4, window=4, duration=10,
                         timeout=5)
        res = run(cfg)
    assert res.established == 0 and res.failures == {"auth failure": 4}


def test_unanswered_target_times_out_and_the_run_is_bounded():
    # Nothing listens on this port: every handshake times out; the run stops by itself.
    cfg = LoadConfig(port=9, natt_port=10, count=1000, rate=20, duration=0.5, timeout=0.6,
                     window=1)
    start = time.monotonic()
    res = run(cfg)
    assert time.monotonic() - start < cfg.hard_stop + 1
    assert res.established == 0 and 1 <= res.started <= 20
    assert sum(res.failures.values()) == res.started
    assert set(res.failures) <= {"timeout (handshake time limit)", "timeout (no answer)"}


@pytest.mark.parametrize("host", ["8.8.8.8", "192.0.2.2", "10.0.0.1", "2001:db8::1"])
def test_non_test_targets_are_refused_without_the_flag(host):
    with pytest.raises(TargetRefusedError):
        check_target(host)
    with pytest.raises(TargetRefusedError):
        LoadConfig(target=host)
    check_target(host, i_own_this_target=True)
    assert LoadConfig(target=host, i_own_this_target=True).target == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1", "100.64.0.2",
                                  "100.127.255.254", "198.51.100.10"])
def test_test_targets_are_accepted(host):
    check_target(host)


def test_cli_refuses_a_foreign_target(capsys):
    assert cli.main(["loadgen", "203.0.113.5", "-n", "1"]) == 2
    assert "refused" in capsys.readouterr().err


def test_cli_runs_and_writes_json(segw, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = cli.main(["loadgen", "127.0.0.1", "--port", str(segw.port), "--natt-port",
                   str(segw.natt_port), "-n", "12", "-w", "4", "--force-encap", "--plain",
                   "--json", str(out), "--duration", "10", "--timeout", "8"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["established"] == 12 and report["nat_info"]["matched"] == 12
    assert "established 12" in capsys.readouterr().out


def test_failure_causes():
    assert failure_cause(SaFailed("x", 24)) == "auth failure"
    assert failure_cause(SaFailed("x", 14)) == "notify NO_PROPOSAL_CHOSEN"
    assert failure_cause(ChildSaFailed(36, "pool")) == "child notify INTERNAL_ADDRESS_FAILURE"
    assert failure_cause(SaFailed("peer did not answer (retransmission limit reached)")) \
        == "timeout (no answer)"


def test_report_statistics():
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) \
        == (50.0, 99.0, 100.0)
    # 100 completions evenly 10 ms apart: 100/s in the middle whatever the ramp did.
    assert middle_rate([i * 0.01 for i in range(100)]) == pytest.approx(100.0)
    assert middle_rate([0.0] * 5) is None


def test_worker_results_merge():
    a = WorkerResult(started=2, latencies=[0.1], t_start=5.0, t_end=6.0, stopped_by="count")
    a.failures["x"] += 1
    b = WorkerResult(started=3, latencies=[0.2], t_start=4.0, t_end=7.0, stopped_by="count")
    b.failures["x"] += 2
    a.merge(b)
    assert (a.started, a.latencies, a.t_start, a.t_end) == (5, [0.1, 0.2], 4.0, 7.0)
    assert a.failures == {"x": 3} and a.stopped_by == "count"


def test_two_worker_processes_share_the_faps(segw):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=20, window=8, workers=2,
                     force_encap=True, duration=20, timeout=8)
    res = run(cfg)
    assert res.started == res.established == 20 and res.nat_info_matched == 20
    assert segw.counters.established == 20


def test_source_addresses_from_a_loopback_range(segw):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=5, window=5,
                     source="127.0.3.0/29", force_encap=True, duration=10, timeout=8,
                     teardown=False)
    res = run(cfg)
    assert res.established == 5
    sources = {sa.remote[0] for sa in segw.dispatcher.sas() if sa.established}
    net = ipaddress.ip_network("127.0.3.0/29")
    assert len(sources) == 5 and all(ipaddress.ip_address(s) in net for s in sources)


def test_plot_writes_a_png(segw, tmp_path):
    from ikecp.loadgen.report import plot
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=20, window=5,
                     duration=10, timeout=8)
    res = run(cfg)
    path = tmp_path / "run.png"
    plot(str(path), res)
    assert res.established == 20 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_reaches_the_callback(segw):
    seen = []
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=8, window=2,
                     duration=10, timeout=8)
    res = run(cfg, progress=seen.append)
    assert res.established == 8 and seen and seen[-1].established == 8
    assert seen[-1].in_flight == 0


def test_open_loop_with_ramp_starts_at_the_rate(segw):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=30, rate=60, ramp=0.2,
                     duration=10, timeout=8, force_encap=True)
    res = run(cfg)
    assert res.started == res.established == 30 and res.nat_info_matched == 30
    # 30 handshakes at 60/s after a 0.2 s ramp cannot all have started before ~0.5 s.
    assert max(res.done_at) - res.t_start >= 0.45


def test_duration_stops_a_long_run_against_a_live_responder(segw):
    cfg = LoadConfig(port=segw.port, natt_port=segw.natt_port, count=100_000, rate=40,
                     duration=0.5, timeout=8, force_encap=True)
    start = time.monotonic()
    res = run(cfg)
    assert time.monotonic() - start < 0.5 + cfg.timeout
    assert res.stopped_by == "duration" and 10 <= res.started <= 25
    assert res.established == res.started and not res.failures


def test_invalid_configs_are_refused():
    for bad in ({"count": 0}, {"window": 0}, {"rate": -1.0}, {"workers": 0},
                {"auth": "eap"}, {"auth": "cert"}, {"nat": True, "target": "198.51.100.10"}):
        with pytest.raises(ValueError):
            LoadConfig(**bad)
