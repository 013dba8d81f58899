"""Pure-Python IKEv2 parse/serialize (RFC 7296 §3, RFC 7383 §2.5): the oracle for the Rust codec.

Every check happens in the same order as in ``rust/src/codec/decode.rs`` so both backends raise
``ParseError`` with the same ``what``/``offset``/``payload`` for the same bytes. Offsets are
relative to the buffer handed in; ``payload`` is the type of the payload being decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ..errors import ParseError
from ..message import (
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
from .buf import as_bytes

_HDR = struct.Struct(">8s8sBBBBII")
_GEN = struct.Struct(">BBH")
_PROP = struct.Struct(">BBHBBBB")
_XFORM = struct.Struct(">BBHBBH")
_HH = struct.Struct(">HH")
_TS = struct.Struct(">BBHHH")
_B3 = struct.Struct(">B3x")
_H2 = struct.Struct(">H2x")
_NOTIFY = struct.Struct(">BBH")
_DELETE = struct.Struct(">BBH")
_SKF = struct.Struct(">HH")

_u16 = _GEN.unpack_from

# What a ParseError can say; the Rust codec uses the same phrases.
TRUNCATED_HEADER = "truncated header"
LENGTH_MISMATCH = "length mismatch"
TRUNCATED_PAYLOAD = "truncated payload"
BAD_PAYLOAD_LENGTH = "bad payload length"
TRAILING_DATA = "trailing data"
BAD_PROPOSAL = "bad proposal"
BAD_TRANSFORM = "bad transform"
BAD_ATTRIBUTE = "bad attribute"
BAD_TRAFFIC_SELECTOR = "bad traffic selector"
BAD_SPI_SIZE = "bad spi size"
BAD_FRAGMENT_NUMBER = "bad fragment number"

# Fixed part of each payload body after the generic header (RFC 7296 §3.3-§3.16, RFC 7383).
_MIN_BODY = {33: 0, 34: 4, 35: 4, 36: 4, 37: 1, 38: 1, 39: 4, 40: 0, 41: 4, 42: 4, 43: 0,
             44: 4, 45: 4, 46: 0, 47: 4, 48: 0, 53: 4}
_TS_LEN = {7: 16, 8: 40}


# --- decoding -------------------------------------------------------------------------------


def decode_message(data: bytes) -> Message:
    """Parse one IKE message (header + payload chain); SK stays sealed."""
    data = as_bytes(data)
    if len(data) < 28:
        raise ParseError(TRUNCATED_HEADER, 0, None)
    spi_i, spi_r, first, version, exchange, flags, message_id, length = _HDR.unpack_from(data)
    if length != len(data):
        raise ParseError(LENGTH_MISMATCH, 0, None)
    return Message(spi_i, spi_r, exchange, flags, message_id, _chain(first, data, 28),
                   version >> 4, version & 0x0F)


def decode_payloads(first_type: int, data: bytes) -> tuple[Payload, ...]:
    """Parse a payload chain starting with type ``first_type`` (e.g. decrypted SK contents)."""
    data = as_bytes(data)  # argument order as the native call checks them
    return _chain(_uint(first_type, 255, "first_type"), data, 0)


def _chain(ptype: int, data: bytes, pos: int) -> tuple[Payload, ...]:
    end = len(data)
    out: list[Payload] = []
    last = None
    while ptype:
        if end - pos < 4:
            raise ParseError(TRUNCATED_PAYLOAD, pos, ptype)
        nxt, flags, plen = _GEN.unpack_from(data, pos)
        if plen < 4 + _MIN_BODY.get(ptype, 0):
            raise ParseError(BAD_PAYLOAD_LENGTH, pos, ptype)
        if plen > end - pos:
            raise ParseError(TRUNCATED_PAYLOAD, pos, ptype)
        crit = flags >= 0x80
        dec = _DECODERS.get(ptype)
        if dec is None:
            out.append(UnknownPayload(ptype, data[pos + 4:pos + plen], crit))
        else:
            out.append(dec(data, pos, pos + plen, nxt, crit))
        last = ptype
        pos += plen
        if ptype == 46 or ptype == 53:  # SK/SKF: next_payload names the inner payload
            break
        ptype = nxt
    if pos != end:
        raise ParseError(TRAILING_DATA, pos, last)
    return tuple(out)


def _sa(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> SA:
    props = []
    p = pos + 4
    while True:
        if end - p < 8:
            raise ParseError(BAD_PROPOSAL, p, 33)
        last, _r, plen, num, proto, spi_size, ntrans = _PROP.unpack_from(data, p)
        if last != 0 and last != 2:
            raise ParseError(BAD_PROPOSAL, p, 33)
        if plen < 8 or plen > end - p:
            raise ParseError(BAD_PROPOSAL, p, 33)
        if 8 + spi_size > plen:
            raise ParseError(BAD_SPI_SIZE, p, 33)
        pend = p + plen
        t = p + 8 + spi_size
        transforms = []
        for i in range(ntrans):
            if pend - t < 8:
                raise ParseError(BAD_TRANSFORM, t, 33)
            tlast, _r, tlen, ttype, _r2, tid = _XFORM.unpack_from(data, t)
            if tlast != (0 if i == ntrans - 1 else 3):
                raise ParseError(BAD_TRANSFORM, t, 33)
            if tlen < 8 or tlen > pend - t:
                raise ParseError(BAD_TRANSFORM, t, 33)
            tend = t + tlen
            attrs = []
            a = t + 8
            while a < tend:
                if tend - a < 4:
                    raise ParseError(BAD_ATTRIBUTE, a, 33)
                atype, aval = _HH.unpack_from(data, a)
                if atype >= 0x8000:
                    attrs.append(TransformAttribute(atype & 0x7FFF, aval))
                    a += 4
                else:
                    if aval > tend - a - 4:
                        raise ParseError(BAD_ATTRIBUTE, a, 33)
                    attrs.append(TransformAttribute(atype, data[a + 4:a + 4 + aval]))
                    a += 4 + aval
            transforms.append(Transform(ttype, tid, tuple(attrs)))
            t = tend
        if t != pend:
            raise ParseError(BAD_PROPOSAL, p, 33)
        props.append(Proposal(num, proto, data[p + 8:p + 8 + spi_size], tuple(transforms)))
        p = pend
        if last == 0:
            break
    if p != end:
        raise ParseError(BAD_PROPOSAL, p, 33)
    return SA(tuple(props), crit)


def _ke(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> KE:
    return KE(_H2.unpack_from(data, pos + 4)[0], data[pos + 8:end], crit)


def _typed(cls: Callable[..., Payload]) -> Callable[[bytes, int, int, int, bool], Payload]:
    """Decoder for the "1-octet type, 3 reserved, data" layout (ID, AUTH)."""

    def dec(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> Payload:
        return cls(data[pos + 4], data[pos + 8:end], crit)

    return dec


def _cert(cls: Callable[..., Payload]) -> Callable[[bytes, int, int, int, bool], Payload]:
    """Decoder for the "1-octet encoding, data" layout (CERT, CERTREQ)."""

    def dec(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> Payload:
        return cls(data[pos + 4], data[pos + 5:end], crit)

    return dec


def _raw(cls: Callable[..., Payload]) -> Callable[[bytes, int, int, int, bool], Payload]:
    """Decoder for payloads whose body is opaque data (Nonce, Vendor ID, EAP)."""

    def dec(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> Payload:
        return cls(data[pos + 4:end], crit)

    return dec


def _notify(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> Notify:
    proto, spi_size, ntype = _NOTIFY.unpack_from(data, pos + 4)
    s = pos + 8
    if spi_size > end - s:
        raise ParseError(BAD_SPI_SIZE, pos, 41)
    return Notify(proto, ntype, data[s:s + spi_size], data[s + spi_size:end], crit)


def _delete(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> Delete:
    proto, spi_size, num = _DELETE.unpack_from(data, pos + 4)
    s = pos + 8
    if num * spi_size != end - s or (spi_size == 0 and num != 0):
        raise ParseError(BAD_SPI_SIZE, pos, 42)
    spis = tuple(data[i:i + spi_size] for i in range(s, end, spi_size)) if spi_size else ()
    return Delete(proto, spi_size, spis, crit)


def _ts(cls: Callable[..., Payload], ptype: int) -> Callable[[bytes, int, int, int, bool], Payload]:
    def dec(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> Payload:
        num = data[pos + 4]
        s = pos + 8
        sels = []
        for _ in range(num):
            if end - s < 8:
                raise ParseError(BAD_TRAFFIC_SELECTOR, s, ptype)
            ts_type, proto, slen, sport, eport = _TS.unpack_from(data, s)
            if slen != _TS_LEN.get(ts_type) or slen > end - s:
                raise ParseError(BAD_TRAFFIC_SELECTOR, s, ptype)
            half = (slen - 8) >> 1
            a = s + 8
            sels.append(TrafficSelector(ts_type, proto, sport, eport, data[a:a + half],
                                        data[a + half:s + slen]))
            s += slen
        if s != end:
            raise ParseError(BAD_TRAFFIC_SELECTOR, s, ptype)
        return cls(tuple(sels), crit)

    return dec


def _sk(data: bytes, pos: int, end: int, nxt: int, crit: bool) -> SK:
    return SK(nxt, data[pos + 4:end], crit)


def _skf(data: bytes, pos: int, end: int, nxt: int, crit: bool) -> SKF:
    num, total = _SKF.unpack_from(data, pos + 4)
    if num == 0 or num > total:
        raise ParseError(BAD_FRAGMENT_NUMBER, pos, 53)
    return SKF(nxt, num, total, data[pos + 8:end], crit)


def _cp(data: bytes, pos: int, end: int, _nxt: int, crit: bool) -> CP:
    attrs = []
    a = pos + 8
    while a < end:
        if end - a < 4:
            raise ParseError(BAD_ATTRIBUTE, a, 47)
        atype, alen = _HH.unpack_from(data, a)
        if alen > end - a - 4:
            raise ParseError(BAD_ATTRIBUTE, a, 47)
        attrs.append(ConfigAttribute(atype & 0x7FFF, data[a + 4:a + 4 + alen]))
        a += 4 + alen
    return CP(data[pos + 4], tuple(attrs), crit)


_DECODERS: dict[int, Callable[[bytes, int, int, int, bool], Payload]] = {
    33: _sa, 34: _ke, 35: _typed(IDi), 36: _typed(IDr), 37: _cert(Cert), 38: _cert(CertReq),
    39: _typed(Auth), 40: _raw(Nonce), 41: _notify, 42: _delete, 43: _raw(VendorId),
    44: _ts(TSi, 44), 45: _ts(TSr, 45), 46: _sk, 47: _cp, 48: _raw(EAP), 53: _skf,
}


# --- encoding -------------------------------------------------------------------------------


def encode_message(msg: Message) -> bytes:
    """Serialize ``msg``; lengths, chaining and counts are computed here."""
    if not isinstance(msg.spi_i, bytes) or not isinstance(msg.spi_r, bytes):
        raise TypeError("Message.spi_i/spi_r must be bytes")
    if len(msg.spi_i) != 8 or len(msg.spi_r) != 8:
        raise ValueError("Message.spi_i/spi_r must be 8 bytes")
    first, body = encode_payloads(msg.payloads)
    if not (0 <= msg.major_version <= 15 and 0 <= msg.minor_version <= 15):
        raise ValueError("Message major/minor version must be 0..15")
    try:
        head = _HDR.pack(msg.spi_i, msg.spi_r, first, (msg.major_version << 4) | msg.minor_version,
                         msg.exchange, msg.flags, msg.message_id, 28 + len(body))
    except struct.error as exc:
        raise _field_error("Message", exc) from None
    return head + body


def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Serialize a chain; returns (type of the first payload or 0, bytes)."""
    n = len(payloads)
    if n == 0:
        return 0, b""
    parts = []
    types = []
    for i, p in enumerate(payloads):
        enc = _ENCODERS.get(type(p))
        if enc is None:
            raise TypeError(f"not an ikecp.message payload: {type(p).__name__}")
        name = type(p).__name__
        try:
            ptype, nxt, body = enc(p)
        except struct.error as exc:
            raise _field_error(name, exc) from None
        if nxt is not None and i != n - 1:
            raise ValueError(f"{name} must be the last payload of a chain")
        if len(body) > 0xFFFF - 4:
            raise ValueError(f"{name} too long: {len(body) + 4} bytes > 65535")
        types.append(ptype)
        parts.append((nxt, 0x80 if p.critical else 0, body))
    out = []
    for i, (nxt, flags, body) in enumerate(parts):
        if nxt is None:
            nxt = types[i + 1] if i + 1 < n else 0
        out.append(_GEN.pack(nxt, flags, 4 + len(body)))
        out.append(body)
    return types[0], b"".join(out)


def _field_error(name: str, exc: struct.error) -> Exception:
    """Turn ``struct``'s error into the TypeError/ValueError the native encoder raises."""
    if "integer" in str(exc) and "requires" not in str(exc):
        return TypeError(f"{name}: an integer field is not an int ({exc})")
    return ValueError(f"{name}: a field is out of range ({exc})")


_Enc = tuple[int, "int | None", bytes]


def _enc_sa(p: SA) -> _Enc:
    props = p.proposals
    if len(props) == 0:
        raise ValueError("SA needs at least one proposal")
    out = []
    last_i = len(props) - 1
    for i, pr in enumerate(props):
        xforms = []
        tlast = len(pr.transforms) - 1
        for j, t in enumerate(pr.transforms):
            attrs = []
            for a in t.attributes:
                v = a.value
                if isinstance(v, bytes):
                    if not 0 <= a.type <= 0x7FFF:
                        raise ValueError("TransformAttribute.type must be 0..32767")
                    attrs.append(_HH.pack(a.type, len(v)) + v)
                elif isinstance(v, int):
                    if not 0 <= a.type <= 0x7FFF:
                        raise ValueError("TransformAttribute.type must be 0..32767")
                    attrs.append(_HH.pack(a.type | 0x8000, v))
                else:
                    raise TypeError("TransformAttribute.value must be int or bytes")
            ab = b"".join(attrs)
            xforms.append(_XFORM.pack(0 if j == tlast else 3, 0, 8 + len(ab), t.type, 0, t.id) + ab)
        if not isinstance(pr.spi, bytes):
            raise TypeError("Proposal.spi must be bytes")
        if len(pr.transforms) > 255 or len(pr.spi) > 255:
            raise ValueError("Proposal: more than 255 transforms or SPI longer than 255 bytes")
        xb = b"".join(xforms)
        out.append(_PROP.pack(0 if i == last_i else 2, 0, 8 + len(pr.spi) + len(xb), pr.number,
                              pr.protocol_id, len(pr.spi), len(pr.transforms)) + pr.spi + xb)
    return 33, None, b"".join(out)


def _enc_ke(p: KE) -> _Enc:
    return 34, None, _H2.pack(p.group) + p.data


def _enc_typed(ptype: int, field: str) -> Callable[[Payload], _Enc]:
    def enc(p: Payload) -> _Enc:
        return ptype, None, _B3.pack(getattr(p, field)) + p.data  # type: ignore[union-attr]

    return enc


def _enc_cert(ptype: int) -> Callable[[Payload], _Enc]:
    def enc(p: Payload) -> _Enc:
        return ptype, None, bytes((p.encoding,)) + p.data  # type: ignore[union-attr]

    return enc


def _enc_raw(ptype: int) -> Callable[[Payload], _Enc]:
    def enc(p: Payload) -> _Enc:
        return ptype, None, b"" + p.data  # type: ignore[union-attr]

    return enc


def _enc_notify(p: Notify) -> _Enc:
    if len(p.spi) > 255:
        raise ValueError("Notify.spi longer than 255 bytes")
    return 41, None, _NOTIFY.pack(p.protocol_id, len(p.spi), p.notify_type) + p.spi + p.data


def _enc_delete(p: Delete) -> _Enc:
    size = p.spi_size
    if not isinstance(size, int):
        raise TypeError("Delete.spi_size must be an int")
    for s in p.spis:
        if not isinstance(s, bytes):
            raise TypeError("Delete.spis must hold bytes")
        if len(s) != size:
            raise ValueError("Delete: every SPI must be spi_size bytes")
    if size == 0 and p.spis:
        raise ValueError("Delete: SPIs need a non-zero spi_size")
    return 42, None, _DELETE.pack(p.protocol_id, size, len(p.spis)) + b"".join(p.spis)


def _enc_ts(ptype: int) -> Callable[[Payload], _Enc]:
    def enc(p: Payload) -> _Enc:
        sels = p.selectors  # type: ignore[union-attr]
        if len(sels) > 255:
            raise ValueError("more than 255 traffic selectors")
        out = [_B3.pack(len(sels))]
        for s in sels:
            n = _TS_LEN.get(_uint(s.ts_type, 255, "TrafficSelector.ts_type"))
            if n is None:
                raise ValueError("TrafficSelector.ts_type must be 7 (IPv4) or 8 (IPv6)")
            if not isinstance(s.start_addr, bytes) or not isinstance(s.end_addr, bytes):
                raise TypeError("TrafficSelector addresses must be bytes")
            if len(s.start_addr) != (n - 8) >> 1 or len(s.end_addr) != (n - 8) >> 1:
                raise ValueError("TrafficSelector address length does not match ts_type")
            out.append(_TS.pack(s.ts_type, s.ip_protocol, n, s.start_port, s.end_port))
            out.append(s.start_addr)
            out.append(s.end_addr)
        return ptype, None, b"".join(out)

    return enc


def _uint(value: object, limit: int, what: str) -> int:
    """``value`` as a wire integer in 0..limit, else the TypeError/ValueError native raises."""
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if not 0 <= value <= limit:
        raise ValueError(f"{what} must be an int in 0..{limit}")
    return value


def _enc_sk(p: SK) -> _Enc:
    return 46, _uint(p.next_payload, 255, "SK.next_payload"), b"" + p.data


def _enc_skf(p: SKF) -> _Enc:
    if not 1 <= p.fragment_number <= p.total_fragments:
        raise ValueError("SKF needs 1 <= fragment_number <= total_fragments")
    nxt = _uint(p.next_payload, 255, "SKF.next_payload")
    return 53, nxt, _SKF.pack(p.fragment_number, p.total_fragments) + p.data


def _enc_cp(p: CP) -> _Enc:
    out = [_B3.pack(p.cfg_type)]
    for a in p.attributes:
        if not 0 <= a.type <= 0x7FFF:
            raise ValueError("ConfigAttribute.type must be 0..32767")
        out.append(_HH.pack(a.type, len(a.value)))
        out.append(a.value)
    return 47, None, b"".join(out)


def _enc_unknown(p: UnknownPayload) -> _Enc:
    if _uint(p.type, 255, "UnknownPayload.type") == 0 or p.type in _DECODERS:
        raise ValueError(f"UnknownPayload.type {p.type} must be 1..255 and not a known type")
    return p.type, None, b"" + p.data


_ENCODERS: dict[type, Callable[..., _Enc]] = {
    SA: _enc_sa, KE: _enc_ke, IDi: _enc_typed(35, "id_type"), IDr: _enc_typed(36, "id_type"),
    Cert: _enc_cert(37), CertReq: _enc_cert(38), Auth: _enc_typed(39, "method"),
    Nonce: _enc_raw(40), Notify: _enc_notify, Delete: _enc_delete, VendorId: _enc_raw(43),
    TSi: _enc_ts(44), TSr: _enc_ts(45), SK: _enc_sk, SKF: _enc_skf, CP: _enc_cp,
    EAP: _enc_raw(48), UnknownPayload: _enc_unknown,
}
