"""The IKEv2 message data model shared by both codec backends.

Decoders return these objects and encoders take them; the native and pure-Python backends
produce equal objects for equal bytes. Fields that the wire derives (lengths, next-payload
chaining, counts, "last substructure" markers, SPI sizes) are not stored: the encoder
computes them, so ``decode(encode(m)) == m`` and ``encode(decode(b)) == b`` for valid ``b``.
Sequences are tuples so messages are immutable and hashable.
"""

from __future__ import annotations

from typing import ClassVar

from .const import HeaderFlag, PayloadType
from .record import record

# --- SA payload (RFC 7296 §3.3) -------------------------------------------------------------


@record
class TransformAttribute:
    """A transform attribute; ``value`` is an ``int`` for TV format (AF=1, e.g. KEY_LENGTH)
    and ``bytes`` for TLV format. ``type`` excludes the AF bit."""

    type: int
    value: int | bytes


@record
class Transform:
    type: int
    id: int
    attributes: tuple[TransformAttribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        for attr in self.attributes:
            if attr.type == 14 and isinstance(attr.value, int):
                return attr.value
        return None


@record
class Proposal:
    number: int
    protocol_id: int
    spi: bytes
    transforms: tuple[Transform, ...]


@record
class SA:
    payload_type: ClassVar[int] = PayloadType.SA
    proposals: tuple[Proposal, ...]
    critical: bool = False


# --- simple payloads ------------------------------------------------------------------------


@record
class KE:
    payload_type: ClassVar[int] = PayloadType.KE
    group: int
    data: bytes
    critical: bool = False


@record
class IDi:
    payload_type: ClassVar[int] = PayloadType.IDi
    id_type: int
    data: bytes
    critical: bool = False


@record
class IDr:
    payload_type: ClassVar[int] = PayloadType.IDr
    id_type: int
    data: bytes
    critical: bool = False


@record
class Cert:
    payload_type: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes
    critical: bool = False


@record
class CertReq:
    payload_type: ClassVar[int] = PayloadType.CERTREQ
    encoding: int
    data: bytes
    critical: bool = False


@record
class Auth:
    payload_type: ClassVar[int] = PayloadType.AUTH
    method: int
    data: bytes
    critical: bool = False


@record
class Nonce:
    payload_type: ClassVar[int] = PayloadType.NONCE
    data: bytes
    critical: bool = False


@record
class Notify:
    """Notify payload (§3.10). The SPI size on the wire is ``len(spi)``."""

    payload_type: ClassVar[int] = PayloadType.NOTIFY
    protocol_id: int
    notify_type: int
    spi: bytes = b""
    data: bytes = b""
    critical: bool = False


@record
class Delete:
    """Delete payload (§3.11). ``spi_size`` is kept because an IKE SA delete has none."""

    payload_type: ClassVar[int] = PayloadType.DELETE
    protocol_id: int
    spi_size: int
    spis: tuple[bytes, ...] = ()
    critical: bool = False


@record
class VendorId:
    payload_type: ClassVar[int] = PayloadType.VENDOR_ID
    data: bytes
    critical: bool = False


# --- traffic selectors (§3.13) --------------------------------------------------------------


@record
class TrafficSelector:
    """TS_IPV4_ADDR_RANGE (7) with 4-byte addresses or TS_IPV6_ADDR_RANGE (8) with 16."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: bytes
    end_addr: bytes


@record
class TSi:
    payload_type: ClassVar[int] = PayloadType.TSi
    selectors: tuple[TrafficSelector, ...]
    critical: bool = False


@record
class TSr:
    payload_type: ClassVar[int] = PayloadType.TSr
    selectors: tuple[TrafficSelector, ...]
    critical: bool = False


# --- configuration (§3.15) ------------------------------------------------------------------


@record
class ConfigAttribute:
    """One CP attribute, ``type`` without the reserved top bit, raw ``value`` bytes."""

    type: int
    value: bytes = b""


@record
class CP:
    payload_type: ClassVar[int] = PayloadType.CP
    cfg_type: int
    attributes: tuple[ConfigAttribute, ...] = ()
    critical: bool = False


# --- encrypted and opaque payloads ----------------------------------------------------------


@record
class SK:
    """Encrypted payload as on the wire: ``data`` is IV | ciphertext | ICV, still sealed.
    ``next_payload`` is the type of the first inner payload."""

    payload_type: ClassVar[int] = PayloadType.SK
    next_payload: int
    data: bytes
    critical: bool = False


@record
class SKF:
    """Encrypted fragment (RFC 7383); ``next_payload`` is non-zero only in fragment 1."""

    payload_type: ClassVar[int] = PayloadType.SKF
    next_payload: int
    fragment_number: int
    total_fragments: int
    data: bytes
    critical: bool = False


@record
class EAP:
    payload_type: ClassVar[int] = PayloadType.EAP
    data: bytes
    critical: bool = False


@record
class UnknownPayload:
    """A payload type this codec does not know, kept whole so it can be skipped or rejected
    (when ``critical``) by the engine and re-encoded byte for byte."""

    type: int
    data: bytes
    critical: bool = False

    @property
    def payload_type(self) -> int:
        return self.type


Payload = (
    SA | KE | IDi | IDr | Cert | CertReq | Auth | Nonce | Notify | Delete | VendorId
    | TSi | TSr | SK | SKF | CP | EAP | UnknownPayload
)


# --- the message ----------------------------------------------------------------------------


@record
class Message:
    """An IKE message: header fields plus the payload chain in order.

    For a message that carries SK, ``payloads`` ends with the sealed ``SK`` when it comes from
    ``decode_message``; ``backend.open_message`` returns a Message whose payloads are the
    decrypted inner payloads instead.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: int
    flags: int
    message_id: int
    payloads: tuple[Payload, ...] = ()
    major_version: int = 2
    minor_version: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & HeaderFlag.RESPONSE)

    @property
    def from_initiator(self) -> bool:
        return bool(self.flags & HeaderFlag.INITIATOR)

    def find(self, cls: type) -> list:
        """All payloads of class ``cls``, in order."""
        return [p for p in self.payloads if isinstance(p, cls)]

    def first(self, cls: type):
        """The first payload of class ``cls``, or ``None``."""
        for p in self.payloads:
            if isinstance(p, cls):
                return p
        return None

    def notifies(self, notify_type: int) -> list[Notify]:
        return [p for p in self.payloads if isinstance(p, Notify) and p.notify_type == notify_type]
