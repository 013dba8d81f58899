"""What happens to a FAP, end to end through the kernel NAPT, with ``ikecp segw`` / ``ikecp
fap`` as programs and strongSwan 5.9.8 as the other side:

- a NAT rebinding (the router forgets its translations) reaches the ikecp FAP's status within
  one liveness interval through the SeGW's CFG_SET push, with no new IKE SA;
- the same push to a strongSwan FAP, which does not know it, leaves strongSwan's SA alone;
- a rebooted strongSwan FAP (INITIAL_CONTACT) leaves exactly one binding row;
- strongSwan as SeGW deleting the ikecp FAP's CHILD SA is logged, shown and repaired.
"""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from ikecp.lab import netns, strongswan
from ikecp.testing.facility import require
from ikecp_roles import role, wait_bindings
from interop_peers import FAP_ID, require_peers
from test_fap_to_strongswan import segw_config
from test_roles_with_strongswan import X25519, fap_toml, segw_toml
from test_strongswan_to_segw import fap_config

pytestmark = pytest.mark.netns


def _wait_file(path, pattern: str, timeout: float = 15.0) -> re.Match[str]:
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(path.read_text(errors="replace"))
        if m:
            return m
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never matched {pattern!r}")
        time.sleep(0.1)


def test_kernel_nat_rebinding_reaches_the_ikecp_fap_within_one_liveness_interval(tmp_path):
    require(netns.probe())
    require(netns.rebind_probe())
    interval = 4.0
    db = tmp_path / "bindings.sqlite"
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", segw_toml(tmp_path), tmp_path) as segw:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        with role(topo, "fap", "fap", {**fap_toml(), "dpd": interval}, tmp_path,
                  "--json") as fap:
            first = fap.wait_status(lambda s: s["state"] == "established")
            mapped = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
            assert (first["public_ip"], first["public_port"]) == mapped
            topo.rebind()
            t0 = time.monotonic()
            moved = fap.wait_status(lambda s: s["public_port"] != first["public_port"],
                                    timeout=3 * interval)
            elapsed = time.monotonic() - t0
            now_mapped = topo.nat_mappings()[(netns.FAP_ADDR, 4500)]
            assert now_mapped != mapped
            assert (moved["public_ip"], moved["public_port"]) == now_mapped
            # Within one liveness interval (its DPD carried the news), with slack for load.
            assert elapsed < interval + 2.5, elapsed
            # No teardown: the same IKE SA, still the first one.
            assert (moved["spi_i"], moved["spi_r"], moved["established"], moved["state"]) == \
                (first["spi_i"], first["spi_r"], 1, "established")
            (row,) = wait_bindings(db, lambda rows: len(rows) == 1
                                   and rows[0]["public_port"] == now_mapped[1])
            assert row["spi_i"] == first["spi_i"]
            _wait_file(fap.stderr_path, r"public address now 198\.51\.100\.1:\d+ "
                       r"\(pushed by the SeGW")


@pytest.mark.peer
def test_pushed_nat_info_leaves_a_strongswan_fap_alone(tmp_path):
    """strongSwan never asks for attribute 23, so only ``nat_info_push = "always"`` pushes to
    it. strongSwan answers the INFORMATIONAL without CFG_ACK; its SA must stay."""
    require_peers()
    require(netns.rebind_probe())
    db = tmp_path / "bindings.sqlite"
    fap = fap_config(X25519, "aes256gcm16", conn_extra={"dpd_delay": "2s"})
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", {**segw_toml(tmp_path), "nat_info_push": "always"},
                 tmp_path) as segw, \
            strongswan.charon(fap, netns=topo.fap) as ss:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        assert "initiate completed successfully" in ss.initiate("net")
        (first,) = wait_bindings(db, lambda rows: len(rows) == 1)
        sa = ss.wait_for_sa()
        topo.rebind()
        (moved,) = wait_bindings(
            db, lambda rows: len(rows) == 1 and rows[0]["public_port"] != first["public_port"],
            timeout=15)
        _wait_file(segw.stderr_path, r"did not take the pushed attributes \[23\] "
                   r"\(no CFG_ACK\)")
        # strongSwan 5.9.8 names the attribute and answers with an empty response.
        ss.wait_for_log(r"parsed INFORMATIONAL request (\d+) \[ CPS\(EXTSRC4\) \]\n.*"
                        r"generating INFORMATIONAL response \1 \[ \]", timeout=5)
        time.sleep(5)  # two more of strongSwan's liveness checks
        (after,) = ss.list_sas()
        assert after.state == "ESTABLISHED"
        assert after.raw["initiator-spi"] == sa.raw["initiator-spi"] == moved["spi_i"]
        assert [c["state"] for c in after.children.values()] == ["INSTALLED"]
        assert "deleting IKE_SA" not in ss.log()
        # A second rebinding moves the binding again but is not pushed: the peer said no.
        topo.rebind()
        wait_bindings(db, lambda rows: len(rows) == 1
                      and rows[0]["public_port"] != moved["public_port"], timeout=15)
        time.sleep(1)
        assert len(re.findall(r"INFORMATIONAL request \d+ \[ CPS", ss.log())) == 1
        assert ss.list_sas()[0].raw["initiator-spi"] == sa.raw["initiator-spi"]


@pytest.mark.peer
def test_rebooted_strongswan_fap_leaves_exactly_one_binding(tmp_path):
    require_peers()
    db = tmp_path / "bindings.sqlite"
    cfg = fap_config(X25519, "aes256gcm16")
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", segw_toml(tmp_path), tmp_path) as segw:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        with strongswan.charon(cfg, netns=topo.fap) as before:
            assert "initiate completed successfully" in before.initiate("net")
            (first,) = wait_bindings(db, lambda rows: len(rows) == 1)
            before.kill()  # a reboot: no DELETE reaches the SeGW
        with strongswan.charon(cfg, netns=topo.fap) as after:
            assert "initiate completed successfully" in after.initiate("net")
            assert re.search(r"generating IKE_AUTH request 1 \[ .*N\(INIT_CONTACT\)",
                             after.log())
            (row,) = wait_bindings(
                db, lambda rows: len(rows) == 1 and rows[0]["spi_i"] != first["spi_i"])
            sa = after.wait_for_sa()
            assert (row["spi_i"], row["spi_r"]) == (sa.raw["initiator-spi"],
                                                    sa.raw["responder-spi"])
            assert row["identity"] == FAP_ID
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                downs = con.execute("SELECT reason, spi_r FROM history WHERE event = 'down'"
                                    ).fetchall()
            assert len(downs) == 1 and downs[0][1] == first["spi_r"]
            assert "INITIAL_CONTACT" in downs[0][0]
            time.sleep(1)
            assert after.wait_for_sa().raw["initiator-spi"] == row["spi_i"]


@pytest.mark.peer
def test_ikecp_fap_repairs_the_child_sa_strongswan_deletes(tmp_path):
    require_peers()
    with netns.nat_topology() as topo, \
            strongswan.charon(segw_config(X25519, "aes256gcm16"), netns=topo.segw) as ss, \
            role(topo, "fap", "fap", {**fap_toml(), "reconnect": 0.5}, tmp_path,
                 "--json") as fap:
        first = fap.wait_status(lambda s: s["state"] == "established"
                                and s["child_state"] == "installed")
        ss.swanctl("--terminate", "--child", "net", "--timeout", "10")
        lost = fap.wait_status(lambda s: s["child_state"] == "deleted")
        assert (lost["child_reason"], lost["child_losses"]) == ("deleted by the SeGW", 1)
        assert lost["spi_i"] == first["spi_i"]
        _wait_file(fap.stderr_path, r"WARNING ikecp\.fap: CHILD SA deleted: deleted by the "
                   r"SeGW")
        again = fap.wait_status(lambda s: s["state"] == "established"
                                and s["child_state"] == "installed", timeout=20)
        assert again["spi_i"] != first["spi_i"] and again["established"] == 2
        r = ss.wait_for_sa()
        assert r.raw["initiator-spi"] == again["spi_i"]
        (child,) = r.children.values()
        assert child["state"] == "INSTALLED"
        assert [s.raw["initiator-spi"] for s in ss.list_sas()] == [again["spi_i"]]
