"""Whole-message SK calls, native vs pure Python side by side in one run.

``open_message`` is the receive path of an IKE_AUTH request: verify + decrypt the SK payload,
parse header and inner payloads into ``ikecp.message`` objects; ``seal_message`` the send path of
the response. Run (release build of the extension, ``maturin develop --release``):

    python -m pytest benches/bench_message.py --benchmark-only --benchmark-group-by=group

``benches/conftest.py`` prints the python/native ratio of each group at the end.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from ikecp._backend import load
from ikecp.const import (
    AuthMethod,
    CfgType,
    ConfigAttr,
    EncrId,
    ExchangeType,
    HeaderFlag,
    IdType,
    IntegId,
    NotifyType,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from ikecp.message import (
    CP,
    SA,
    Auth,
    ConfigAttribute,
    IDi,
    IDr,
    Message,
    Notify,
    Proposal,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
)

SPI_I, SPI_R = bytes(range(1, 9)), bytes(range(9, 17))
# (encr id, key incl. salt, integ id, key)
TRANSFORMS = {
    "aes256gcm": (EncrId.AES_GCM_16, bytes(range(36)), 0, b""),
    "aes256cbc-sha256": (EncrId.AES_CBC, bytes(range(32)), IntegId.HMAC_SHA2_256_128,
                         bytes(range(32))),
}
KEY_256 = (TransformAttribute(TransformAttr.KEY_LENGTH, 256),)
ESP_GCM = Proposal(1, ProtocolId.ESP, b"\xc0\x01\xd0\x0d", (
    Transform(TransformType.ENCR, EncrId.AES_GCM_16, KEY_256),
    Transform(TransformType.ESN, 0),
))
ESP_CBC = Proposal(2, ProtocolId.ESP, b"\xc0\x01\xd0\x0d", (
    Transform(TransformType.ENCR, EncrId.AES_CBC, KEY_256),
    Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
    Transform(TransformType.ESN, 0),
))
ANY_V4 = TrafficSelector(TsType.IPV4_ADDR_RANGE, 0, 0, 65535, bytes(4), b"\xff" * 4)
ANY_V6 = TrafficSelector(TsType.IPV6_ADDR_RANGE, 0, 0, 65535, bytes(16), b"\xff" * 16)
HOME_NET = TrafficSelector(TsType.IPV4_ADDR_RANGE, 0, 0, 65535, bytes((10, 20, 0, 0)),
                           bytes((10, 20, 255, 255)))
FAP_ADDR = bytes((10, 20, 0, 7))

REQUEST = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1, (
    IDi(IdType.FQDN, b"0012345678@fap.operator.example"),
    Auth(AuthMethod.SHARED_KEY_MIC, bytes(range(32))),
    CP(CfgType.CFG_REQUEST, (
        ConfigAttribute(ConfigAttr.INTERNAL_IP4_ADDRESS),
        ConfigAttribute(ConfigAttr.INTERNAL_IP4_DNS),
        ConfigAttribute(ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO),
    )),
    SA((ESP_GCM, ESP_CBC)),
    TSi((ANY_V4, ANY_V6)),
    TSr((HOME_NET, ANY_V6)),
    Notify(0, NotifyType.INITIAL_CONTACT),
    Notify(0, NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED),
    IDr(IdType.FQDN, b"segw.operator.example"),
))
RESPONSE = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, HeaderFlag.RESPONSE, 1, (
    IDr(IdType.FQDN, b"segw.operator.example"),
    Auth(AuthMethod.SHARED_KEY_MIC, bytes(range(32, 64))),
    CP(CfgType.CFG_REPLY, (
        ConfigAttribute(ConfigAttr.INTERNAL_IP4_ADDRESS, FAP_ADDR),
        ConfigAttribute(ConfigAttr.INTERNAL_IP4_DNS, bytes((10, 20, 0, 1))),
        # the FAP's address + port as the SeGW saw them: 100.64.0.1:4500
        ConfigAttribute(ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO,
                        bytes((100, 64, 0, 1, 0x11, 0x94))),
    )),
    SA((ESP_GCM,)),
    TSi((TrafficSelector(TsType.IPV4_ADDR_RANGE, 0, 0, 65535, FAP_ADDR, FAP_ADDR),)),
    TSr((HOME_NET,)),
))


@pytest.fixture(params=["native", "python"])
def be(request: pytest.FixtureRequest) -> ModuleType:
    return load(request.param)


def test_request_size() -> None:
    """The inner payload chain is the size the issue asks for (~350 octets)."""
    _, body = load("python").encode_payloads(REQUEST.payloads)
    assert 320 <= len(body) <= 380, len(body)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_open_request(benchmark, be: ModuleType, name: str) -> None:
    benchmark.group = f"parse + open IKE_AUTH request, {name}"
    cipher = be.SkCipher(*TRANSFORMS[name])
    py = load("python")
    wire = py.seal_message(py.SkCipher(*TRANSFORMS[name]), REQUEST)
    assert benchmark(be.open_message, cipher, wire) == REQUEST


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_seal_response(benchmark, be: ModuleType, name: str) -> None:
    benchmark.group = f"seal IKE_AUTH response, {name}"
    cipher = be.SkCipher(*TRANSFORMS[name])
    wire = benchmark(be.seal_message, cipher, RESPONSE)
    py = load("python")
    assert py.open_message(py.SkCipher(*TRANSFORMS[name]), wire) == RESPONSE
