"""EXTERNAL_SOURCE_IP4_NAT_INFO: the responder tells a NATed initiator its public IPv4
address and UDP port (3GPP TS 29.139 §6.2.1.3 and §7.1.1.1; IANA type 23).

Value: 4-octet IPv4 address then 2-octet UDP port, network byte order, 6 octets in CFG_REPLY
and empty in CFG_REQUEST. draft-so-ipsecme-ikev2-cpext-00 also allowed the address alone
(4 octets), which the initiator accepts. The draft's code point 16 collides with
MIP6_HOME_PREFIX (RFC 5026), so it is only used when explicitly asked for as legacy.

After a NAT rebinding the responder may push the new value in CP(CFG_SET) in an
INFORMATIONAL exchange (RFC 7296 §1.4, §3.15; ``ikecp.engine.config_push``): by default only
to peers that asked for the attribute in IKE_AUTH (``PushMode``).
"""

from __future__ import annotations

import enum
import logging

from .. import addr
from ..const import ConfigAttr
from ..events import NatInfoNotSupported, PublicAddressLearned
from .registry import CpContext

log = logging.getLogger("ikecp.cp.nat_info")

IANA_TYPE = ConfigAttr.EXTERNAL_SOURCE_IP4_NAT_INFO
LEGACY_DRAFT_TYPE = ConfigAttr.MIP6_HOME_PREFIX
PRIVATE_USE = range(16384, 32768)


class Mode(enum.Enum):
    """When the initiator asks: only when IKE_SA_INIT found us behind a NAT, always, never."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def check_code_point(code_point: int, *, legacy: bool = False) -> int:
    """Accept 23, a private-use type, or 16 only together with ``legacy=True``."""
    if code_point == IANA_TYPE or code_point in PRIVATE_USE:
        return code_point
    if code_point == LEGACY_DRAFT_TYPE and legacy:
        return code_point
    if code_point == LEGACY_DRAFT_TYPE:
        raise ValueError("type 16 is MIP6_HOME_PREFIX; pass legacy=True to use the draft's "
                         "code point")
    raise ValueError(f"NAT-info code point must be 23, 16384-32767 or legacy 16, "
                     f"not {code_point}")


def encode(address: str, port: int) -> bytes:
    """The 6-octet reply value for ``address:port``."""
    packed = addr.pack(address)
    if len(packed) != 4:
        raise ValueError("NAT-info carries an IPv4 address")
    return packed + port.to_bytes(2, "big")


def decode(value: bytes) -> tuple[str, int | None]:
    """(address, port) from a 6-octet value, (address, None) from the draft's 4 octets."""
    if len(value) == 6:
        return addr.unpack(value[:4]), int.from_bytes(value[4:], "big")
    if len(value) == 4:
        return addr.unpack(value), None
    raise ValueError(f"NAT-info value must be 6 or 4 octets, not {len(value)}")


class PushMode(enum.Enum):
    """Responder: to whom a changed NAT info is pushed in CFG_SET. ``requested`` (default):
    peers that asked for the attribute in IKE_AUTH, the only ones that can use it; ``always``:
    every IPv4 peer whose address changes (peers that do not know the push answer without
    CFG_ACK and are not asked again); ``never``."""

    REQUESTED = "requested"
    ALWAYS = "always"
    NEVER = "never"


class NatInfoHandler:
    """Initiator: asks according to ``mode`` and reports the answer as an event."""

    def __init__(self, mode: Mode = Mode.AUTO, code_point: int = IANA_TYPE, *,
                 legacy: bool = False) -> None:
        self.mode = Mode(mode)
        self.attr_type = check_code_point(code_point, legacy=legacy)

    def request(self, ctx: CpContext) -> bytes | None:
        if self.mode is Mode.ALWAYS or (self.mode is Mode.AUTO and ctx.local_behind_nat):
            return b""
        return None

    def handle(self, ctx: CpContext, values: list[bytes]) -> None:
        if not values:
            ctx.events.append(NatInfoNotSupported("attribute absent from CFG_REPLY"))
            return
        if len(values) > 1:
            log.warning("peer sent %d NAT-info attributes; using the first", len(values))
        try:
            address, port = decode(values[0])
        except ValueError as exc:
            log.warning("ignoring NAT-info attribute: %s", exc)
            ctx.events.append(NatInfoNotSupported(str(exc)))
            return
        ctx.events.append(PublicAddressLearned(address, port, self.attr_type))

    def pushed(self, ctx: CpContext, values: list[bytes]) -> bool:
        """A CFG_SET from the responder after our public address changed: taken unless we
        never ask for the attribute or the value is malformed."""
        if self.mode is Mode.NEVER:
            return False
        try:
            address, port = decode(values[0])
        except ValueError as exc:
            log.warning("ignoring pushed NAT-info attribute: %s", exc)
            return False
        ctx.events.append(PublicAddressLearned(address, port, self.attr_type, pushed=True))
        return True


class NatInfoProvider:
    """Responder: one attribute with the source address and port of the IKE_AUTH request,
    nothing for an IPv6 peer or when disabled."""

    def __init__(self, code_point: int = IANA_TYPE, *, legacy: bool = False,
                 enabled: bool = True, push: PushMode = PushMode.REQUESTED) -> None:
        self.attr_type = check_code_point(code_point, legacy=legacy)
        self.enabled = enabled
        self.push_mode = PushMode(push)
        self.answered = 0  # attributes sent: read by the metrics endpoint

    def provide(self, ctx: CpContext, requested: list[bytes]) -> list[bytes]:
        ip, port = ctx.remote_addr
        if not self.enabled or ":" in ip:
            return []
        value = encode(ip, port)
        ctx.reported[self.attr_type] = [value]
        self.answered += 1
        return [value]

    def push(self, ctx: CpContext) -> list[bytes] | None:
        """The peer's address changed: its new value, if this peer is to be told."""
        ip, port = ctx.remote_addr
        mode = self.push_mode
        if not self.enabled or mode is PushMode.NEVER or ":" in ip:
            return None
        if mode is PushMode.REQUESTED and self.attr_type not in ctx.reported:
            return None
        value = encode(ip, port)
        if ctx.reported.get(self.attr_type) == [value]:
            return None  # the peer already has it
        return [value]

    def release(self, ctx: CpContext) -> None:
        return None
