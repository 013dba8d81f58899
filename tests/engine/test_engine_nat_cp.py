"""NAT traversal, the CP registry and the EXTERNAL_SOURCE_IP4_NAT_INFO extension."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from engine_pair import NAT_PUBLIC_IP, Pair, fap_settings, segw_settings
from ikecp.const import CfgType, ConfigAttr, NotifyType
from ikecp.cp import (
    AddressPool,
    CpRegistry,
    Deferred,
    Mode,
    NatInfoHandler,
    NatInfoProvider,
    PoolProvider,
    RequestHandler,
    StaticProvider,
    nat_info,
)
from ikecp.errors import LocalProtocolError
from ikecp.events import (
    ChildSaEstablished,
    ChildSaFailed,
    ConfigReceived,
    CpValueDeferred,
    IkeSaEstablished,
    NatDetected,
    NatInfoNotSupported,
    PeerBinding,
    PublicAddressLearned,
)

NAT_INFO = ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO


class RecordingProvider(NatInfoProvider):
    """Counts what it was asked, to check what the initiator requested."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.calls: list[tuple[tuple[str, int], list[bytes]]] = []

    def provide(self, ctx, requested):
        self.calls.append((ctx.remote_addr, requested))
        return super().provide(ctx, requested)


def _segw(provider, *more) -> CpRegistry:
    reg = CpRegistry().add_provider(provider)
    for p in more:
        reg.add_provider(p)
    return reg


# --- NAT detection and the float --------------------------------------------------------------


def test_nat_on_initiator_floats_and_reply_carries_the_rewritten_address(backend):
    provider = RecordingProvider()
    pair = Pair(backend, fap_settings(), segw_settings(_segw(provider)), nat=True).run()
    assert pair.i.established and pair.r.established
    assert pair.events("i", NatDetected) == [NatDetected(True, False)]
    assert pair.events("r", NatDetected) == [NatDetected(False, True)]
    # IKE_SA_INIT on 500 without marker, IKE_AUTH on 4500 with it, both directions.
    ports = [(f.datagram.local_port, f.datagram.remote[1], f.datagram.encapsulated,
              f.wire[:4] == b"\0\0\0\0") for f in pair.log]
    assert ports == [(500, 500, False, False),
                     (500, pair.public(("100.64.0.2", 500))[1], False, False),
                     (4500, 4500, True, True),
                     (4500, pair.public(("100.64.0.2", 4500))[1], True, True)]
    public = pair.public(("100.64.0.2", 4500))
    assert public[0] == NAT_PUBLIC_IP and public != pair.public(("100.64.0.2", 500))
    assert provider.calls == [(public, [b""])]
    (learned,) = pair.events("i", PublicAddressLearned)
    assert (learned.address, learned.port, learned.attr_type) == (public[0], public[1], 23)
    (config,) = pair.events("i", ConfigReceived)
    assert config.attributes[0].value == ipaddress.IPv4Address(public[0]).packed + \
        public[1].to_bytes(2, "big")
    (binding,) = pair.events("r", PeerBinding)
    assert (binding.public_address, binding.public_port) == public
    assert binding.peer_id == pair.i_settings.local_id
    assert binding.spi_i == pair.i.spi_i and binding.spi_r == pair.r.spi_r
    assert all(c.encapsulated for c in pair.events("i", ChildSaEstablished))


def test_no_nat_auto_mode_does_not_ask(backend):
    provider = RecordingProvider()
    pair = Pair(backend, fap_settings(), segw_settings(_segw(provider))).run()
    assert pair.i.established and pair.r.established
    assert pair.events("i", NatDetected) == [NatDetected(False, False)]
    assert provider.calls == []
    assert not pair.events("i", PublicAddressLearned)
    assert not pair.events("i", NatInfoNotSupported)
    assert all(f.datagram.local_port == 500 and not f.datagram.encapsulated for f in pair.log)


def test_always_mode_without_nat_reports_the_real_address(backend):
    provider = RecordingProvider()
    fap = fap_settings(CpRegistry().add_handler(NatInfoHandler(Mode.ALWAYS)))
    pair = Pair(backend, fap, segw_settings(_segw(provider))).run()
    assert provider.calls == [(("100.64.0.2", 500), [b""])]
    (learned,) = pair.events("i", PublicAddressLearned)
    assert (learned.address, learned.port) == ("100.64.0.2", 500)


def test_never_mode_behind_nat(backend):
    provider = RecordingProvider()
    fap = fap_settings(CpRegistry().add_handler(NatInfoHandler(Mode.NEVER)))
    pair = Pair(backend, fap, segw_settings(_segw(provider)), nat=True).run()
    assert pair.i.established and provider.calls == []


def test_forced_encapsulation_floats_without_nat(backend):
    pair = Pair(backend, fap_settings(force_encap=True), segw_settings()).run()
    assert pair.i.established and pair.r.established
    assert pair.events("i", NatDetected) == [NatDetected(True, False)]
    assert pair.events("r", NatDetected) == [NatDetected(False, True)]
    assert pair.log[-1].datagram.encapsulated and pair.log[-1].datagram.local_port == 4500
    # auto mode: a forced float counts as "behind NAT", so the FAP asks.
    assert pair.events("i", PublicAddressLearned)[0].port == 4500


def test_legacy_code_point_16_when_both_opt_in(backend):
    fap = fap_settings(CpRegistry().add_handler(NatInfoHandler(code_point=16, legacy=True)))
    segw = segw_settings(_segw(NatInfoProvider(code_point=16, legacy=True)))
    pair = Pair(backend, fap, segw, nat=True).run()
    (learned,) = pair.events("i", PublicAddressLearned)
    assert learned.attr_type == 16 and learned.address == NAT_PUBLIC_IP
    # A 23-only responder ignores type 16: the FAP is told it is not supported.
    pair = Pair(backend, fap, segw_settings(), nat=True).run()
    assert pair.i.established and pair.events("i", NatInfoNotSupported)


def test_private_use_code_point(backend):
    fap = fap_settings(CpRegistry().add_handler(NatInfoHandler(code_point=20000)))
    segw = segw_settings(_segw(NatInfoProvider(code_point=20000)))
    pair = Pair(backend, fap, segw, nat=True).run()
    assert pair.events("i", PublicAddressLearned)[0].attr_type == 20000


@pytest.mark.parametrize("code_point", [16, 1, 24, 16383, 32768])
def test_code_point_validation(code_point):
    with pytest.raises(ValueError):
        nat_info.check_code_point(code_point)
    assert nat_info.check_code_point(16, legacy=True) == 16
    assert nat_info.check_code_point(23) == 23


def test_responder_with_feature_off(backend):
    for segw in (segw_settings(CpRegistry()),
                 segw_settings(_segw(NatInfoProvider(enabled=False)))):
        pair = Pair(backend, fap_settings(), segw, nat=True).run()
        assert pair.i.established and pair.r.established
        assert len(pair.events("i", NatInfoNotSupported)) == 1
        assert not pair.events("i", PublicAddressLearned)
        assert len(pair.events("i", ChildSaEstablished)) == 1


def test_ipv6_peer_gets_no_nat_info(backend):
    fap = fap_settings(CpRegistry().add_handler(NatInfoHandler(Mode.ALWAYS)))
    pair = Pair(backend, fap, segw_settings(), i_addr=("fd00::2", 500),
                r_addr=("fd00::1", 500)).run()
    assert pair.i.established
    assert pair.events("i", NatInfoNotSupported) and not pair.events("i", PublicAddressLearned)


class _RawProvider:
    attr_type = NAT_INFO

    def __init__(self, *values: bytes) -> None:
        self.values = list(values)

    def provide(self, ctx, requested):
        return self.values

    def release(self, ctx):
        return None


def test_initiator_accepts_four_octets_address_only(backend):
    segw = segw_settings(_segw(_RawProvider(bytes([203, 0, 113, 7]))))
    pair = Pair(backend, fap_settings(), segw, nat=True).run()
    (learned,) = pair.events("i", PublicAddressLearned)
    assert (learned.address, learned.port) == ("203.0.113.7", None)


@pytest.mark.parametrize("value", [b"", b"\x01", b"\x01\x02\x03\x04\x05", bytes(7), bytes(16)])
def test_initiator_rejects_other_lengths_but_keeps_the_sa(backend, value, caplog):
    segw = segw_settings(_segw(_RawProvider(value)))
    with caplog.at_level(logging.WARNING, logger="ikecp.cp.nat_info"):
        pair = Pair(backend, fap_settings(), segw, nat=True).run()
    assert pair.i.established and pair.r.established
    assert not pair.events("i", PublicAddressLearned)
    assert pair.events("i", NatInfoNotSupported)
    assert any("NAT-info" in r.message for r in caplog.records)


def test_nat_info_value_helpers():
    assert nat_info.encode("198.51.100.1", 4500) == bytes([198, 51, 100, 1, 0x11, 0x94])
    assert nat_info.decode(bytes([198, 51, 100, 1, 0x11, 0x94])) == ("198.51.100.1", 4500)
    assert nat_info.decode(bytes([198, 51, 100, 1])) == ("198.51.100.1", None)
    with pytest.raises(ValueError):
        nat_info.decode(bytes(5))


# --- standard attributes and the pool ---------------------------------------------------------


def _pool_segw(pool: AddressPool):
    return segw_settings(_segw(
        NatInfoProvider(), PoolProvider(pool),
        StaticProvider.addresses(ConfigAttr.INTERNAL_IP4_NETMASK, ["255.255.255.0"]),
        StaticProvider.addresses(ConfigAttr.INTERNAL_IP4_DNS, ["198.51.100.53"]),
    ))


def _pool_fap():
    reg = CpRegistry().add_handler(NatInfoHandler())
    for t in (ConfigAttr.INTERNAL_IP4_ADDRESS, ConfigAttr.INTERNAL_IP4_NETMASK,
              ConfigAttr.INTERNAL_IP4_DNS, ConfigAttr.APPLICATION_VERSION, 30000):
        reg.add_handler(RequestHandler(t))  # the last two have no provider: ignored
    return fap_settings(reg)


def test_address_pool_binding_and_narrowed_selectors(backend):
    pool = AddressPool("10.20.0.0/24")
    pair = Pair(backend, _pool_fap(), _pool_segw(pool), nat=True).run()
    assert pair.i.established and pair.r.established
    (config,) = pair.events("i", ConfigReceived)
    got = {a.type: a.value for a in config.attributes}
    assert got[ConfigAttr.INTERNAL_IP4_ADDRESS] == bytes([10, 20, 0, 1])
    assert got[ConfigAttr.INTERNAL_IP4_NETMASK] == bytes([255, 255, 255, 0])
    assert got[ConfigAttr.INTERNAL_IP4_DNS] == bytes([198, 51, 100, 53])
    assert len(got) == 4 and NAT_INFO in got
    (binding,) = pair.events("r", PeerBinding)
    assert binding.inner_address == "10.20.0.1"
    (child,) = pair.events("i", ChildSaEstablished)
    assert child.ts_i[0].start_addr == child.ts_i[0].end_addr == bytes([10, 20, 0, 1])
    assert binding.child_spis == (pair.events("r", ChildSaEstablished)[0].spi_in,
                                  child.spi_in)


def test_pool_exhaustion_keeps_ike_sa_and_refuses_child(backend):
    pool = AddressPool("10.20.0.0/30")  # two host addresses
    segw = _pool_segw(pool)
    pairs = [Pair(backend, _pool_fap(), segw, nat=True).run() for _ in range(3)]
    assert all(p.i.established and p.r.established for p in pairs)
    assert [len(p.events("i", ChildSaEstablished)) for p in pairs] == [1, 1, 0]
    (failed,) = pairs[2].events("i", ChildSaFailed)
    assert failed.notify_type == NotifyType.INTERNAL_ADDRESS_FAILURE
    assert pairs[2].events("r", ChildSaFailed)[0].notify_type == \
        NotifyType.INTERNAL_ADDRESS_FAILURE
    assert pairs[2].events("r", PeerBinding)[0].inner_address is None
    assert len(pool.in_use) == 2
    # The rest of the CP reply still goes out (RFC 7296 §3.15.4 refuses the CHILD_SA, not
    # the IKE SA): the FAP learns its public address even from an exhausted pool.
    (config,) = pairs[2].events("i", ConfigReceived)
    got = {a.type: a.value for a in config.attributes}
    assert NAT_INFO in got and ConfigAttr.INTERNAL_IP4_ADDRESS not in got
    assert pairs[2].events("i", PublicAddressLearned)
    # Deleting an SA gives its address back for the next FAP.
    pairs[0].i.delete()
    pairs[0].run()
    assert pairs[0].r.closed and len(pool.in_use) == 1
    again = Pair(backend, _pool_fap(), segw, nat=True).run()
    assert again.events("r", PeerBinding)[0].inner_address == "10.20.0.1"


def test_custom_attribute_without_touching_the_engine(backend):
    class Greeting:
        attr_type = 31000

        def request(self, ctx):
            return b"hello?"

        def handle(self, ctx, values):
            ctx.events.append(("greeting", values))

    class Greeter:
        attr_type = 31000

        def provide(self, ctx, requested):
            return [b"hello " + str(ctx.peer_id).encode()]

        def release(self, ctx):
            return None

    fap = fap_settings(CpRegistry().add_handler(Greeting()))
    pair = Pair(backend, fap, segw_settings(_segw(Greeter()))).run()
    assert ("greeting", [b"hello fap-0001.example.net"]) in pair.i_events


def test_cfg_types():
    assert CfgType.CFG_REQUEST == 1 and CfgType.CFG_REPLY == 2
    assert IkeSaEstablished.__dataclass_params__.frozen  # events are frozen dataclasses


class _LaterPool:
    """An address provider whose answer arrives after the request (like an IPAM lookup)."""

    attr_type = ConfigAttr.INTERNAL_IP4_ADDRESS

    def __init__(self) -> None:
        self.pending: list[Deferred] = []

    def provide(self, ctx, requested):
        self.pending.append(Deferred())
        return self.pending[-1]

    def release(self, ctx):
        return None


@pytest.mark.parametrize("outcome", ["resolve", "fail"])
def test_deferred_provider_holds_the_response(backend, outcome):
    later = _LaterPool()
    segw = segw_settings(_segw(NatInfoProvider(), later))
    pair = Pair(backend, _pool_fap(), segw, nat=True)
    for _ in range(8):  # IKE_AUTH arrives, is parked; retransmissions are dropped meanwhile
        pair.step()
    assert len(later.pending) == 1 and not pair.r.established
    assert pair.r.stats.requests_processed == 2 and pair.i.stats.retransmissions >= 1
    (waiting,) = pair.events("r", CpValueDeferred)  # tells the application which SA waits
    assert waiting.deferred is later.pending[0]
    assert waiting.attr_type == ConfigAttr.INTERNAL_IP4_ADDRESS
    if outcome == "resolve":
        later.pending[0].resolve([bytes([10, 99, 0, 7])])
    else:
        later.pending[0].fail(NotifyType.INTERNAL_ADDRESS_FAILURE, "IPAM says no")
    pair.run()
    assert pair.i.established and pair.r.established
    assert pair.r.stats.requests_processed == 2
    if outcome == "resolve":
        (config,) = pair.events("i", ConfigReceived)
        got = {a.type: a.value for a in config.attributes}
        assert got[ConfigAttr.INTERNAL_IP4_ADDRESS] == bytes([10, 99, 0, 7])
        assert NAT_INFO in got
        assert len(pair.events("i", ChildSaEstablished)) == 1
    else:
        assert pair.events("i", ChildSaFailed)[0].notify_type == \
            NotifyType.INTERNAL_ADDRESS_FAILURE
    with pytest.raises(LocalProtocolError):
        later.pending[0].resolve([])


def test_initiator_floats_to_its_own_natt_port(backend):
    pair = Pair(backend, fap_settings(), segw_settings(), nat=True)
    pair.i = type(pair.i).initiator(pair.i_settings, ("100.64.0.2", 20500), pair.r_addr,
                                    backend=backend, natt_local_port=24500)
    pair.run()
    assert pair.i.established and pair.i.local == ("100.64.0.2", 24500)
    assert pair.i.remote == (pair.r_addr[0], 4500)
    public = pair.public(("100.64.0.2", 24500))
    assert pair.events("i", PublicAddressLearned)[0].port == public[1]
