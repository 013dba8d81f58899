"""Tunnels through their lifetimes against strongSwan 5.9.8 through the kernel NAPT, both
roles, with lifetimes of seconds: at least three cycles each of CHILD SA rekeying, IKE SA
rekeying and reauthentication, started by either side. At every sample the FAP is
connected, a CHILD SA is installed, and (ikecp SeGW) the FAP's binding row is present;
strongSwan never says NO_ADDITIONAL_SAS or falls back to reauthentication, and no IKE SA is
deleted except the ones a reauthentication replaced."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ikecp.lab import netns, strongswan
from ikecp.lab.strongswan import Child
from ikecp.roles.bindings import BindingRegistry
from ikecp_roles import Role, role
from interop_peers import FAP_ID, require_peers
from test_fap_to_strongswan import segw_config
from test_roles_with_strongswan import X25519, fap_toml, segw_toml
from test_strongswan_to_segw import fap_config

pytestmark = [pytest.mark.peer, pytest.mark.netns]

#: strongSwan's log lines that would mean a lifecycle step went wrong.
BAD_LOG = ("NO_ADD_SAS", "peer seems to not support", "initiator did not reauthenticate",
           "rekeying failed", "TEMPORARY_FAILURE")
#: Attribute 23 in strongSwan's pool (static: enough to see it learned on every new SA);
#: swanctl passes the text as the octets: "d@ABCD" is 100.64.65.66:17220.
NAT_INFO_ATTR = {"vip4": {"23": "d@ABCD"}}


def sample(seconds: float, check: Callable[[], None], period: float = 0.4) -> int:
    """Run ``check`` every ``period`` seconds for ``seconds``; it raises on a bad sample."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        check()
        n += 1
        time.sleep(period)
    return n


def ss_check(ss: strongswan.Charon, ike_spis: set, child_spis: set) -> Callable[[], None]:
    """strongSwan holds an ESTABLISHED IKE SA with an INSTALLED CHILD SA; SPIs are noted.
    Between deleting the old CHILD SA and marking the new one INSTALLED strongSwan lists
    neither for a moment (seen under load): such a sample is taken again 0.3 s later."""
    def installed_children() -> tuple[list, list]:
        sas = [sa for sa in ss.list_sas() if sa.state == "ESTABLISHED"]
        return sas, [c for sa in sas for c in sa.children.values()
                     if c["state"] == "INSTALLED"]

    def check() -> None:
        sas, installed = installed_children()
        if not installed:
            time.sleep(0.3)
            sas, installed = installed_children()
        assert sas and installed, \
            f"no established IKE SA with a CHILD SA: {ss.list_sas()}\n{ss.log_tail(120)}"
        ike_spis.update(sa.raw["initiator-spi"] + sa.raw["responder-spi"] for sa in sas)
        child_spis.update(c["spi-in"] for c in installed)
    return check


def fap_statuses(fap: Role) -> list[dict]:
    """Every ``ikecp fap --json`` status line printed so far."""
    while not fap.lines.empty():
        fap.seen.append(fap.lines.get())
    out = []
    for line in fap.seen:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def fap_connected(fap: Role) -> Callable[[], None]:
    def check() -> None:
        statuses = fap_statuses(fap)
        assert statuses and statuses[-1]["state"] == "established", statuses[-3:]
        assert all(s["state"] == "established" for s in statuses[1:]), statuses
        last = statuses[-1]  # never a new SA from scratch but for reauthentication
        assert last["established"] - last["reauths"] == 1, last
    return check


def no_bad_lines(ss: strongswan.Charon) -> None:
    log = ss.log()
    for bad in BAD_LOG:
        assert bad not in log, f"strongSwan logged {bad!r}:\n{ss.log_tail(60)}"


def deleted_from(log: str) -> list[str]:
    """The state each IKE SA strongSwan deleted was in: REKEYED for one a rekey replaced."""
    return re.findall(r"IKE_SA \w+\[\d+\] state change: (\w+) => DELETING", log)


# --- ikecp FAP program, strongSwan SeGW ---------------------------------------------------

def run_fap_program(tmp_path, ss_cfg, fap_extra: dict, seconds: float):
    """``ikecp fap`` against a strongSwan SeGW, sampled for ``seconds``; returns strongSwan's
    log, the IKE and CHILD SPIs seen and the FAP's status lines."""
    ike, child = set(), set()
    with netns.nat_topology() as topo, strongswan.charon(ss_cfg, netns=topo.segw) as ss, \
            role(topo, "fap", "fap", {**fap_toml(), **fap_extra}, tmp_path, "--json") as fap:
        fap.wait_status(lambda s: s["state"] == "established")
        checks = (ss_check(ss, ike, child), fap_connected(fap))
        sample(seconds, lambda: [c() for c in checks])
        no_bad_lines(ss)
        return ss.log(), ike, child, fap_statuses(fap)


FAST = {"rekey_time": 5.0, "over_time": 20.0, "rand_time": 1.0,
        "child_rekey_time": 3.0, "child_life_time": 20.0, "child_rand_time": 1.0}
QUIET = {"rekey_time": 0, "child_rekey_time": 0}
#: The same short lifetimes for strongSwan (swanctl.conf connection and child settings).
SS_FAST_IKE = {"rekey_time": "5s", "over_time": "20s", "rand_time": "1s"}
SS_FAST_CHILD = {"rekey_time": "3s", "life_time": "20s", "rand_time": "1s"}


def test_strongswan_segw_rekeys_child_and_ike_sas_of_the_ikecp_fap(tmp_path):
    require_peers()
    cfg = dataclasses.replace(
        segw_config(X25519, "aes256gcm16"), conn_extra=SS_FAST_IKE,
        children=(Child(local_ts=("0.0.0.0/0",), extra=SS_FAST_CHILD),))
    log, ike, child, statuses = run_fap_program(tmp_path, cfg, QUIET, 22.0)
    assert len(ike) >= 4 and len(child) >= 4, (ike, child)
    assert statuses[-1]["rekeys"] >= 3
    assert set(deleted_from(log)) == {"REKEYED"}  # only rekeyed ones went


def test_ikecp_fap_rekeys_child_and_ike_sas_with_strongswan_segw(tmp_path):
    require_peers()
    cfg = dataclasses.replace(segw_config(X25519, "aes256gcm16"),
                              conn_extra={"rekey_time": "0", "over_time": "0"})
    log, ike, child, statuses = run_fap_program(tmp_path, cfg, FAST, 22.0)
    assert len(ike) >= 4 and len(child) >= 4, (ike, child)
    assert statuses[-1]["rekeys"] >= 3
    assert log.count("parsed CREATE_CHILD_SA request") >= 6
    assert set(deleted_from(log)) == {"REKEYED"}


def test_ikecp_fap_reauthenticates_make_before_break_with_strongswan_segw(tmp_path):
    require_peers()
    cfg = dataclasses.replace(segw_config(X25519, "aes256gcm16"), pool_attrs=NAT_INFO_ATTR)
    fast = {**QUIET, "reauth_time": 5.0, "over_time": 20.0, "rand_time": 1.0}
    log, ike, _child, statuses = run_fap_program(tmp_path, cfg, fast, 20.0)
    reauths = statuses[-1]["reauths"]
    assert reauths >= 3 and len(ike) >= 4, statuses[-1]
    # Each new IKE SA asked for the NAT info again and got it.
    assert log.count("CPRP(ADDR EXTSRC4)") == reauths + 1
    assert all((s["public_ip"], s["public_port"]) == ("100.64.65.66", 17220)
               for s in statuses if s["reauths"] >= 1)
    # Only replaced IKE SAs were deleted, each after its successor was up.
    assert len(deleted_from(log)) == reauths


# --- strongSwan FAP, ikecp SeGW program -----------------------------------------------------

def binding_present(db: Path, rows_seen: list) -> Callable[[], None]:
    reader = BindingRegistry.reader(db)

    def check() -> None:
        rows = reader.by_identity(FAP_ID)
        assert rows, "no binding row for the FAP"
        rows_seen.append(rows)
    return check


def run_strongswan_fap(tmp_path, ss_cfg, segw_extra: dict, seconds: float):
    db = tmp_path / "bindings.sqlite"
    ike, child, rows = set(), set(), []
    with netns.nat_topology() as topo, \
            role(topo, "segw", "segw", {**segw_toml(tmp_path), **segw_extra},
                 tmp_path) as segw, \
            strongswan.charon(ss_cfg, netns=topo.fap) as ss:
        segw.wait_line(lambda line: line.startswith("SeGW "))
        assert "initiate completed successfully" in ss.initiate("net")
        deadline = time.monotonic() + 10
        while not BindingRegistry.reader(db).all() and time.monotonic() < deadline:
            time.sleep(0.1)
        checks = (ss_check(ss, ike, child), binding_present(db, rows))
        sample(seconds, lambda: [c() for c in checks])
        no_bad_lines(ss)
        history = BindingRegistry.reader(db).history()
        return ss.log(), ike, child, history, topo.nat_mappings()


def test_strongswan_fap_rekeys_with_the_ikecp_segw(tmp_path):
    require_peers()
    cfg = dataclasses.replace(
        fap_config(X25519, "aes256gcm16"), conn_extra=SS_FAST_IKE,
        children=(Child(remote_ts=("198.51.100.0/24",), extra=SS_FAST_CHILD),))
    log, ike, child, history, _ = run_strongswan_fap(tmp_path, cfg, QUIET, 22.0)
    assert len(ike) >= 4 and len(child) >= 4, (ike, child)
    kinds = [h[1] for h in history]
    assert kinds.count("rekey") >= 3 and "down" not in kinds, kinds
    assert set(deleted_from(log)) == {"REKEYED"}


def test_ikecp_segw_rekeys_child_and_ike_sas_of_a_strongswan_fap(tmp_path):
    require_peers()
    cfg = dataclasses.replace(fap_config(X25519, "aes256gcm16"),
                              conn_extra={"rekey_time": "0", "over_time": "0"})
    log, ike, child, history, _ = run_strongswan_fap(tmp_path, cfg, FAST, 22.0)
    assert len(ike) >= 4 and len(child) >= 4, (ike, child)
    assert [h[1] for h in history].count("rekey") >= 3
    assert log.count("parsed CREATE_CHILD_SA request") >= 6
    assert set(deleted_from(log)) == {"REKEYED"}


def test_strongswan_fap_reauthenticates_with_the_ikecp_segw(tmp_path):
    """strongSwan's make-before-break reauthentication (``make_before_break = yes``): a new
    IKE SA with IKE_AUTH and CP, then the old one deleted; the binding row is replaced with
    no gap and carries the NAT mapping the kernel NAPT really made."""
    require_peers()
    cfg = dataclasses.replace(
        fap_config(X25519, "aes256gcm16"),
        conn_extra={"rekey_time": "0", "reauth_time": "5s", "over_time": "20s",
                    "rand_time": "1s"},
        daemon_extra={"make_before_break": True})
    log, ike, _child, history, mappings = run_strongswan_fap(tmp_path, cfg, QUIET, 20.0)
    ups = [h for h in history if h[1] == "up"]
    downs = [h for h in history if h[1] == "down"]
    assert len(ups) >= 4 and len(downs) >= 3, history
    assert len(ike) >= 4
    public = mappings[(netns.FAP_ADDR, 4500)]
    assert all((h[6], h[7]) == public for h in ups)
    assert len(deleted_from(log)) == len(downs)
