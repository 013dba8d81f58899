"""SeGW and FAPs on real UDP sockets on loopback, through the userspace NAPT relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import replace

import pytest
from ikecp.events import LivenessConfirmed, SaDeleted
from ikecp.lab.demo import Topology
from ikecp.roles.bindings import BindingRegistry
from ikecp.roles.gateway import Gateway
from ikecp.testing.facility import require
from ikecp.testing.wait import wait_until
from test_udp import has_ipv6


def test_demo_learned_address_equals_napt_mapping(tmp_path) -> None:
    db = tmp_path / "b.sqlite"

    async def main() -> None:
        topo = Topology(4, registry=BindingRegistry(db))
        try:
            await topo.start()
            result = topo.result()
            # A second reader sees the same table while the gateway runs (WAL).
            reader = BindingRegistry.reader(db)
            rows = reader.all()
            reader.close()
        finally:
            await topo.stop()
        assert result.ok
        assert len({f.nat_mapping for f in result.faps}) == 4
        for f in result.faps:
            assert f.status.nat_detected is True
            assert (f.status.public_ip, f.status.public_port) == f.nat_mapping
            b = [r for r in rows if r.identity == f.identity]
            assert len(b) == 1
            assert (b[0].public_ip, b[0].public_port) == f.nat_mapping
            assert b[0].inner_ip == f.status.inner_ip and b[0].inner_ip.startswith("10.99.")
            assert b[0].spi_i == f.status.spi_i and b[0].spi_r == f.status.spi_r

    asyncio.run(main())


def test_lookups_by_inner_ip_identity_public() -> None:
    async def main() -> None:
        topo = Topology(2)
        try:
            await topo.start()
            reg = topo.registry
            fap = topo.faps[1]
            st = fap.status
            assert [b.identity for b in reg.by_inner_ip(st.inner_ip)] == [fap.config.identity]
            assert [b.inner_ip for b in reg.by_identity(fap.config.identity)] == [st.inner_ip]
            got = reg.by_public(st.public_ip, st.public_port)
            assert [b.identity for b in got] == [fap.config.identity]
            assert reg.by_public("127.0.0.1", 1) == []
        finally:
            await topo.stop()

    asyncio.run(main())


@pytest.mark.parametrize("trigger", ["explicit", "dpd"])
def test_nat_rebinding_shows_up_in_registry(trigger: str) -> None:
    async def main() -> None:
        # "dpd": the FAP's own periodic liveness check carries the news.
        topo = Topology(2, fap_options={"dpd": 0.2} if trigger == "dpd" else None)
        try:
            await topo.start()
            fap = topo.faps[0]
            old = topo.mapping_of(fap)
            assert topo.relay is not None
            new = await topo.relay.rebind((fap.config.local, topo.ports[1]))
            assert new != old
            if trigger == "explicit":
                assert fap.check_liveness()  # an authenticated request from the new port

            def moved() -> bool:
                rows = topo.registry.by_identity(fap.config.identity)
                return bool(rows) and (rows[0].public_ip, rows[0].public_port) == new

            await wait_until(moved)
            other = topo.registry.by_identity(topo.faps[1].config.identity)[0]
            assert (other.public_ip, other.public_port) == topo.mapping_of(topo.faps[1])
            kinds = [(h[1], h[3]) for h in topo.registry.history()]
            assert ("rebind", fap.status.spi_r) in kinds
        finally:
            await topo.stop()

    asyncio.run(main())


def test_clean_shutdown_deletes_every_sa_and_loses_no_binding(tmp_path) -> None:
    events = tmp_path / "events.jsonl"
    db = tmp_path / "segw.sqlite"

    async def main() -> None:
        topo = Topology(3, fap_options={"reconnect": 30.0})
        deleted: list[str] = []
        try:
            # A gateway that owns its registry (SQLite file) and JSON lines stream.
            cfg = replace(topo.segw_config(), bindings=str(db), events=str(events))
            gw = Gateway(cfg)
            await topo.start(gateway=gw)
            for f in topo.faps:
                f.on_event = lambda sa, ev: deleted.append(ev) if isinstance(ev, SaDeleted) \
                    else None
            assert len(gw.store) == 3
            await gw.stop()
            topo.gateway = None
            assert all(e.by_peer for e in deleted) and len(deleted) == 3
            assert all(f.status.state == "down" for f in topo.faps)
        finally:
            await topo.stop()
        reg = BindingRegistry.reader(db)
        assert len(reg) == 0
        downs = [h for h in reg.history() if h[1] == "down"]
        reg.close()
        assert len(downs) == 3 and {h[2] for h in downs} == {"shutdown"}
        lines = [json.loads(x) for x in events.read_text().splitlines()]
        assert [x["event"] for x in lines].count("up") == 3
        assert [x["event"] for x in lines].count("down") == 3
        assert {x["identity"] for x in lines} == {f.config.identity for f in topo.faps}

    asyncio.run(main())


def test_fap_reestablishes_after_segw_restart() -> None:
    async def main() -> None:
        fast = {"dpd": 0.3, "retries": 1, "retransmit_timeout": 0.2, "reconnect": 0.2}
        topo = Topology(2, fap_options=fast)
        try:
            await topo.start()
            first = [f.status.spi_r for f in topo.faps]
            assert topo.gateway is not None
            # Crash: the SeGW vanishes without DELETE; the FAPs notice by liveness checks.
            await topo.gateway.stop(delete=False)
            await wait_until(lambda: all(f.status.state != "established" for f in topo.faps))
            await topo.start_gateway()  # same ports, fresh SA table; stale bindings closed
            await wait_until(lambda: all(f.status.state == "established"
                                         and f.status.established == 2 for f in topo.faps))
            assert all(f.status.spi_r not in first for f in topo.faps)
            assert len(topo.registry) == 2
            stale = [h for h in topo.registry.history() if h[2] == "stale at startup"]
            assert len(stale) == 2
            # The new SAs carry NAT-info again, equal to the NAPT mapping.
            assert all((f.status.public_ip, f.status.public_port) == topo.mapping_of(f)
                       for f in topo.faps)
        finally:
            await topo.stop()

    asyncio.run(main())


def test_hostile_datagrams_on_real_sockets() -> None:
    async def main() -> None:
        topo = Topology(1)
        try:
            await topo.start()
            assert topo.gateway is not None and topo.gateway.dispatcher is not None
            port, natt = topo.ports
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.9", 0))
                for p in (port, natt):
                    for data in (b"", b"\xff", b"\x00" * 3, b"\x00" * 4 + b"junk",
                                 bytes(range(40)), b"\x01" * 500, b"\x00\x00\x00\x00" * 20):
                        s.sendto(data, ("127.0.0.1", p))
            st = topo.gateway.dispatcher.stats
            await wait_until(lambda: st.datagrams >= 14)
            assert st.invalid + st.keepalives + st.esp + st.unknown_spi >= 10
            assert len(topo.gateway.dispatcher) == 1
            # Still serving: the FAP's liveness check is answered.
            fap = topo.faps[0]
            confirmed: list[object] = []
            fap.on_event = lambda sa, ev: confirmed.append(ev) \
                if isinstance(ev, LivenessConfirmed) else None
            assert fap.check_liveness()
            await wait_until(lambda: bool(confirmed))
            assert fap.status.state == "established"
        finally:
            await topo.stop()

    asyncio.run(main())


def test_certificate_auth_through_config_files(tmp_path) -> None:
    from ikecp.lab.ca import CertAuthority

    root = CertAuthority("wire test root")
    files = {}
    for name, ident, kt in (("segw", "segw.demo.ikecp", "rsa2048"),
                            ("fap", "fap-001.demo.ikecp", "ecdsa-p256")):
        issued = root.issue([ident], key_type=kt)
        (tmp_path / f"{name}.pem").write_bytes(issued.cert_pem)
        (tmp_path / f"{name}.key").write_bytes(issued.key_pem)
        files[name] = {"cert": str(tmp_path / f"{name}.pem"),
                       "key": str(tmp_path / f"{name}.key"), "ca": (str(tmp_path / "ca.pem"),)}
    (tmp_path / "ca.pem").write_bytes(root.cert_pem)

    async def main() -> None:
        topo = Topology(1, segw_options=files["segw"], fap_options=files["fap"])
        try:
            await topo.start()
            result = topo.result()
        finally:
            await topo.stop()
        assert result.ok
        assert result.bindings[0].identity == "fap-001.demo.ikecp"

    asyncio.run(main())


def test_wrong_ca_is_refused(tmp_path) -> None:
    from ikecp.lab.ca import CertAuthority

    good, rogue = CertAuthority("good root"), CertAuthority("rogue root")
    for name, ca, ident in (("segw", good, "segw.demo.ikecp"),
                            ("fap", rogue, "fap-001.demo.ikecp")):
        issued = ca.issue([ident])
        (tmp_path / f"{name}.pem").write_bytes(issued.cert_pem)
        (tmp_path / f"{name}.key").write_bytes(issued.key_pem)
    (tmp_path / "good.pem").write_bytes(good.cert_pem)

    def opts(name: str) -> dict:
        return {"cert": str(tmp_path / f"{name}.pem"), "key": str(tmp_path / f"{name}.key"),
                "ca": (str(tmp_path / "good.pem"),)}

    async def main() -> None:
        topo = Topology(1, segw_options=opts("segw"),
                        fap_options={**opts("fap"), "reconnect": 30.0})
        try:
            with contextlib.suppress(TimeoutError):
                await topo.start(timeout=2.0)
            fap = topo.faps[0]
            assert fap.status.state == "down" and fap.status.established == 0
            assert fap.status.reason == "peer refused IKE_AUTH"
            assert len(topo.registry) == 0
        finally:
            await topo.stop()

    asyncio.run(main())


def test_keepalives_reach_the_segw_and_are_counted() -> None:
    async def main() -> None:
        topo = Topology(1, fap_options={"keepalive": 0.05})
        try:
            await topo.start()
            assert topo.gateway is not None and topo.gateway.dispatcher is not None
            st = topo.gateway.dispatcher.stats
            await wait_until(lambda: st.keepalives >= 3)
            assert topo.faps[0].status.state == "established"
        finally:
            await topo.stop()

    asyncio.run(main())


def test_idle_binding_expires_and_its_sa_is_deleted() -> None:
    async def main() -> None:
        topo = Topology(1, segw_options={"binding_expiry": 0.3, "dpd": 0},
                        fap_options={"dpd": 0, "reconnect": 30.0})
        try:
            await topo.start()
            fap = topo.faps[0]
            await wait_until(lambda: fap.status.state == "down", timeout=5)
            assert fap.status.reason == "deleted by the SeGW"
            assert len(topo.registry) == 0
            downs = [h[2] for h in topo.registry.history() if h[1] == "down"]
            assert downs == ["expired"]
        finally:
            await topo.stop()

    asyncio.run(main())


def test_answered_liveness_checks_keep_the_binding() -> None:
    async def main() -> None:
        topo = Topology(1, segw_options={"binding_expiry": 0.6, "dpd": 0.1},
                        fap_options={"dpd": 0, "reconnect": 30.0})
        try:
            await topo.start()
            first = topo.registry.all()[0]
            await asyncio.sleep(1.5)  # well past the expiry: only the SeGW's checks run
            assert topo.faps[0].status.state == "established"
            (now,) = topo.registry.all()
            assert now.spi_r == first.spi_r and now.last_seen > first.last_seen + 0.5
        finally:
            await topo.stop()

    asyncio.run(main())


def test_dual_stack_segw_serves_ipv4_and_ipv6_faps() -> None:
    from ikecp.config import FapConfig, SegwConfig
    from ikecp.roles.femto import Femto

    require(None if has_ipv6() else "no IPv6 loopback on this machine")

    async def main() -> None:
        reg = BindingRegistry()
        gw = Gateway(SegwConfig(psk="dual", listen=("127.0.0.1", "::1"), port=0, natt_port=0,
                                nat_info=True), store=reg)
        await gw.start()
        port, natt = gw.ports
        faps = [Femto(FapConfig(psk="dual", identity=f"fap-v{v}.example", segw=host,
                                local=local, port=0, natt_port=0, segw_port=port,
                                segw_natt_port=natt, nat_info_mode="always"))
                for v, host, local in ((4, "127.0.0.1", "127.0.6.1"), (6, "::1", "::1"))]
        try:
            for f in faps:
                await f.start()
            for f in faps:
                await f.wait_established(10)
            v4, v6 = (reg.by_identity(f"fap-v{v}.example") for v in (4, 6))
            assert v4[0].public_ip == "127.0.6.1" and v6[0].public_ip == "::1"
            assert v4[0].inner_ip and v6[0].inner_ip and v4[0].inner_ip != v6[0].inner_ip
            # NAT-info is IPv4-only: the v4 FAP learns its address, the v6 FAP gets none.
            assert faps[0].status.public_ip == "127.0.6.1"
            assert faps[1].status.public_ip is None and faps[1].status.nat_info
            assert faps[0].status.nat_detected is False and faps[1].status.nat_detected is False
        finally:
            for f in faps:
                await f.stop()
            await gw.stop()
            reg.close()

    asyncio.run(main())


@pytest.mark.parametrize("fap_secret", ["secret of fap 1", "the shared psk"])
def test_per_peer_psk(fap_secret: str) -> None:
    async def main() -> None:
        topo = Topology(1, segw_options={"peers": {"fap-001.demo.ikecp": "secret of fap 1"}},
                        fap_options={"psk": fap_secret, "reconnect": 30.0})
        topo.psk = "the shared psk"  # what peers without their own entry use
        try:
            with contextlib.suppress(TimeoutError):
                await topo.start(timeout=3.0)
            status = topo.faps[0].status
            if fap_secret == "secret of fap 1":
                assert status.state == "established" and len(topo.registry) == 1
            else:  # the peer has its own secret: the shared one must not work for it
                assert status.state == "down" and len(topo.registry) == 0
        finally:
            await topo.stop()

    asyncio.run(main())


def test_segw_engine_builds_only_the_events_it_reads() -> None:
    """Without an on_event callback or a data plane, the SeGW's SAs build no CHILD SA or NAT
    events (nobody reads them); the binding still lands in the registry. With a callback,
    every event is built."""
    from collections.abc import Callable

    from ikecp.config import FapConfig, SegwConfig
    from ikecp.events import ChildSaEstablished, NatDetected, PeerBinding
    from ikecp.roles.femto import Femto

    async def main(on_event: Callable | None) -> frozenset[type] | None:
        reg = BindingRegistry()
        gw = Gateway(SegwConfig(psk="lean", port=0, natt_port=0), store=reg,
                     on_event=on_event)
        await gw.start()
        port, natt = gw.ports
        fap = Femto(FapConfig(psk="lean", identity="fap-lean.example", port=0, natt_port=0,
                              segw_port=port, segw_natt_port=natt))
        try:
            await fap.start()
            await fap.wait_established(10)
            assert reg.by_identity("fap-lean.example")
            assert gw.dispatcher is not None and gw.dispatcher.responder is not None
            return gw.dispatcher.responder.events
        finally:
            await fap.stop()
            await gw.stop()
            reg.close()

    seen: list[type] = []
    reads = asyncio.run(main(None))
    assert reads is not None and PeerBinding in reads
    assert ChildSaEstablished not in reads and NatDetected not in reads
    assert asyncio.run(main(lambda sa, ev: seen.append(type(ev)))) is None
    assert ChildSaEstablished in seen and PeerBinding in seen
