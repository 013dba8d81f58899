"""Hand-built IKEv2 messages used by the codec tests, benches and the fuzz seed corpus."""

from __future__ import annotations

from ikecp.const import (
    AuthMethod,
    CfgType,
    ConfigAttr,
    DhGroup,
    EncrId,
    ExchangeType,
    HeaderFlag,
    IdType,
    IntegId,
    NotifyType,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from ikecp.message import (
    CP,
    EAP,
    KE,
    SA,
    SK,
    SKF,
    Auth,
    Cert,
    CertReq,
    ConfigAttribute,
    Delete,
    IDi,
    IDr,
    Message,
    Nonce,
    Notify,
    Payload,
    Proposal,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
)

SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")
ZERO_SPI = bytes(8)

IKE_PROPOSAL = Proposal(1, ProtocolId.IKE, b"", (
    Transform(TransformType.ENCR, EncrId.AES_GCM_16,
              (TransformAttribute(TransformAttr.KEY_LENGTH, 256),)),
    Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
    Transform(TransformType.DH, DhGroup.CURVE25519),
))
ESP_PROPOSAL = Proposal(1, ProtocolId.ESP, b"\xc0\x01\xd0\x0d", (
    Transform(TransformType.ENCR, EncrId.AES_CBC,
              (TransformAttribute(TransformAttr.KEY_LENGTH, 128),)),
    Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
    Transform(TransformType.ESN, 0),
))
TS_V4 = TrafficSelector(TsType.IPV4_ADDR_RANGE, 0, 0, 65535, bytes(4), b"\xff" * 4)
TS_V6 = TrafficSelector(TsType.IPV6_ADDR_RANGE, 17, 500, 4500,
                        bytes.fromhex("20010db8" + "00" * 12),
                        bytes.fromhex("20010db8" + "ff" * 12))


def sa_init_request() -> Message:
    """IKE_SA_INIT request: SA, KE, Ni, N(NAT_DETECTION_*), V."""
    return Message(SPI_I, ZERO_SPI, ExchangeType.IKE_SA_INIT, HeaderFlag.INITIATOR, 0, (
        SA((IKE_PROPOSAL,)),
        KE(DhGroup.CURVE25519, bytes(range(32))),
        Nonce(bytes(range(100, 132))),
        Notify(0, NotifyType.NAT_DETECTION_SOURCE_IP, b"", b"\x11" * 20),
        Notify(0, NotifyType.NAT_DETECTION_DESTINATION_IP, b"", b"\x22" * 20),
        Notify(0, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
        VendorId(b"ikecp test vendor id"),
    ))


def ike_auth_request(sk_len: int = 600) -> Message:
    """An IKE_AUTH-sized message as received: header + sealed SK."""
    return Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1,
                   (SK(35, bytes(i & 0xFF for i in range(sk_len))),))


def inner_auth_payloads() -> tuple[Payload, ...]:
    """What the SK of an IKE_AUTH request from a femtocell carries once opened."""
    return (
        IDi(IdType.FQDN, b"fap-0001@femto.example"),
        Cert(4, b"\x30\x82\x01\x00" + bytes(16)),
        CertReq(4, b"\xaa" * 20),
        IDr(IdType.FQDN, b"segw.example"),
        Auth(AuthMethod.SHARED_KEY_MIC, b"\x5a" * 32),
        CP(CfgType.CFG_REQUEST, (
            ConfigAttribute(ConfigAttr.INTERNAL_IP4_ADDRESS),
            ConfigAttribute(ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO),
        )),
        SA((ESP_PROPOSAL,)),
        TSi((TS_V4, TS_V6)),
        TSr((TS_V4,)),
        Notify(ProtocolId.ESP, NotifyType.REKEY_SA, b"\x01\x02\x03\x04"),
        EAP(b"\x01\x01\x00\x05\x01"),
    )


def all_payloads_message() -> Message:
    """A message holding every payload type the codec knows (SK last), plus an unknown one."""
    return Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, HeaderFlag.RESPONSE, 7, (
        *inner_auth_payloads(),
        CP(CfgType.CFG_REPLY, (ConfigAttribute(ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO,
                                               bytes([100, 64, 0, 1, 0x04, 0xA3])),)),
        Delete(ProtocolId.IKE, 0),
        Delete(ProtocolId.ESP, 4, (b"\x00\x00\x00\x01", b"\xff\xff\xff\xff")),
        UnknownPayload(200, b"opaque", critical=True),
        UnknownPayload(1, b""),
        KE(14, b"\x00" * 8, critical=True),
        SK(41, b"\xee" * 40),
    ))


def fragment_message() -> Message:
    return Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, HeaderFlag.INITIATOR, 1,
                   (SKF(35, 1, 3, b"\x99" * 64),))


def all_samples() -> list[Message]:
    return [sa_init_request(), ike_auth_request(), all_payloads_message(), fragment_message(),
            Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 2)]
