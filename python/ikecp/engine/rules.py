"""Which payloads each exchange may carry, how many, and whether they must be encrypted
(RFC 7296 §1.2-§1.4, §3). One table, checked before any task sees a message."""

from __future__ import annotations

from collections.abc import Sequence

from ..const import ExchangeType as X
from ..const import NotifyType
from ..const import PayloadType as P
from ..errors import RemoteProtocolError
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
    Delete,
    IDi,
    IDr,
    Nonce,
    Notify,
    Payload,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
)

_MANY = (0, 1 << 16)
_ONE = (1, 1)
_OPT = (0, 1)
_COMMON: dict[int, tuple[int, int]] = {P.NOTIFY: _MANY, P.VENDOR_ID: _MANY}

#: (exchange, is_response) -> (must be encrypted, {payload type: (min, max)}).
_RULES: dict[tuple[int, bool], tuple[bool, dict[int, tuple[int, int]]]] = {
    # CERTREQ: in the IKE_SA_INIT response and the IKE_AUTH request only (§1.2, §3.7)
    (X.IKE_SA_INIT, False): (False, {P.SA: _ONE, P.KE: _ONE, P.NONCE: _ONE, **_COMMON}),
    (X.IKE_SA_INIT, True): (False, {P.SA: _ONE, P.KE: _ONE, P.NONCE: _ONE,
                                    P.CERTREQ: _MANY, **_COMMON}),
    (X.IKE_AUTH, False): (True, {P.IDi: _ONE, P.AUTH: _ONE, P.CERT: _MANY, P.CERTREQ: _MANY,
                                 P.IDr: _OPT, P.CP: _OPT, P.SA: _OPT, P.TSi: _OPT,
                                 P.TSr: _OPT, **_COMMON}),
    (X.IKE_AUTH, True): (True, {P.IDr: _ONE, P.AUTH: _ONE, P.CERT: _MANY, P.CP: _OPT,
                                P.SA: _OPT, P.TSi: _OPT, P.TSr: _OPT, **_COMMON}),
    (X.CREATE_CHILD_SA, False): (True, {P.SA: _OPT, P.NONCE: _OPT, P.KE: _OPT, P.TSi: _OPT,
                                        P.TSr: _OPT, **_COMMON}),
    (X.INFORMATIONAL, False): (True, {P.DELETE: _MANY, P.CP: _OPT, **_COMMON}),
    (X.INFORMATIONAL, True): (True, {P.DELETE: _MANY, P.CP: _OPT, **_COMMON}),
}
#: The same with plain-int keys for the per-message lookups.
RULES = {(int(x), r): (enc, {int(t): n for t, n in table.items()})
         for (x, r), (enc, table) in _RULES.items()}


#: Payload-class sequences already found valid, per exchange and direction: at most
#: ``_PASSED_MAX`` shapes of at most ``_SHAPE_MAX`` payloads (a hostile peer can make
#: endless distinct long shapes; real exchanges have short, recurring ones).
_PASSED: set[tuple] = set()
_PASSED_MAX = 4096
_SHAPE_MAX = 24

_TYPE_OF: dict[type, int] = {
    cls: int(cls.payload_type) for cls in (SA, KE, IDi, IDr, Cert, CertReq, Auth, Nonce, Notify,
                                            Delete, VendorId, TSi, TSr, SK, SKF, CP, EAP)
}


def check(exchange: int, is_response: bool, payloads: Sequence[Payload]) -> None:
    """Raise ``RemoteProtocolError`` for a critical unknown payload or a payload count the
    exchange does not allow; non-critical unknown payloads are skipped (§2.5). A response
    carrying an error notify or a COOKIE request may omit the required payloads."""
    exchange = int(exchange)  # hashing an IntEnum member runs Python code
    shape = (exchange, is_response, *map(type, payloads))
    if shape in _PASSED:
        return
    rule = RULES.get((exchange, is_response))
    if rule is None:
        raise RemoteProtocolError(NotifyType.INVALID_SYNTAX, f"unexpected exchange {exchange}")
    allowed = rule[1]
    counts: dict[int, int] = {}
    relaxed = False
    for p in payloads:
        t = _TYPE_OF.get(type(p)) or p.payload_type  # plain ints, as above
        if t not in allowed:
            if type(p) is UnknownPayload:
                if p.critical:
                    raise RemoteProtocolError(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                                              f"critical payload {t}", bytes((t & 0xFF,)))
                continue
            raise RemoteProtocolError(NotifyType.INVALID_SYNTAX,
                                      f"payload {t} not allowed here")
        counts[t] = counts.get(t, 0) + 1
        if is_response and isinstance(p, Notify) and (p.notify_type < 16384
                                                      or p.notify_type == NotifyType.COOKIE):
            relaxed = True
    for t, (low, high) in allowed.items():
        n = counts.get(t, 0)
        if n > high or (n < low and not relaxed):
            raise RemoteProtocolError(NotifyType.INVALID_SYNTAX,
                                      f"payload {t} appears {n} times")
    if not relaxed and len(payloads) <= _SHAPE_MAX and UnknownPayload not in shape \
            and len(_PASSED) < _PASSED_MAX:
        _PASSED.add(shape)  # the verdict depends on nothing else: skip the walk next time


def must_encrypt(exchange: int) -> bool:
    rule = RULES.get((exchange, False))
    return rule is not None and rule[0]
