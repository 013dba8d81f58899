"""Configuration of an IKE SA: identities, credentials, proposals, selectors, timers.

One ``Settings`` object is meant to be shared by every SA of a role (a gateway's thousands of
responder SAs, a load generator's initiators), so it is frozen; stateful parts such as an
address pool live in the CP registry it points to.
"""

from __future__ import annotations

import ipaddress
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..const import IdType, TsType
from ..cp.registry import CpRegistry
from ..message import TrafficSelector
from .auth import Authenticator
from .fragments import FragmentPolicy
from .transforms import ChildProposal, IkeProposal


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity (RFC 7296 §3.5): type and the raw identification data."""

    id_type: int
    data: bytes

    @classmethod
    def fqdn(cls, name: str) -> Identity:
        return cls(IdType.FQDN, name.encode("ascii"))

    @classmethod
    def rfc822(cls, addr: str) -> Identity:
        return cls(IdType.RFC822_ADDR, addr.encode("ascii"))

    @classmethod
    def ipv4(cls, addr: str) -> Identity:
        return cls(IdType.IPV4_ADDR, ipaddress.IPv4Address(addr).packed)

    @classmethod
    def der_dn(cls, der: bytes) -> Identity:
        return cls(IdType.DER_ASN1_DN, bytes(der))

    @classmethod
    def key_id(cls, key_id: bytes) -> Identity:
        return cls(IdType.KEY_ID, bytes(key_id))

    def __str__(self) -> str:
        if self.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
            return self.data.decode("ascii", "replace")
        if self.id_type == IdType.IPV4_ADDR and len(self.data) == 4:
            return str(ipaddress.IPv4Address(self.data))
        return f"{self.id_type}:{self.data.hex()}"


def new_spi(settings: Settings, size: int) -> bytes:
    """A random nonzero SPI of ``size`` octets whose first octet is ``settings.spi_tag``."""
    while True:
        spi = os.urandom(size)
        if settings.spi_tag is not None:
            spi = bytes((settings.spi_tag,)) + spi[1:]
        if any(spi):  # zero is no SPI (RFC 7296 §3.1, RFC 4303 §2.1)
            return spi


def selector(cidr: str, protocol: int = 0, ports: tuple[int, int] = (0, 65535)
             ) -> TrafficSelector:
    """A traffic selector covering ``cidr`` (e.g. ``"10.0.0.0/8"``, ``"::/0"``)."""
    net = ipaddress.ip_network(cidr, strict=False)
    ts_type = TsType.IPV4_ADDR_RANGE if net.version == 4 else TsType.IPV6_ADDR_RANGE
    return TrafficSelector(ts_type, protocol, ports[0], ports[1],
                           net.network_address.packed, net.broadcast_address.packed)


ANY_V4 = selector("0.0.0.0/0")


@dataclass(frozen=True, slots=True)
class RetransmitPolicy:
    """RFC 7296 §2.1/§2.4: resend after ``timeout * backoff**n`` seconds, give up after
    ``tries`` resends."""

    timeout: float = 1.0
    backoff: float = 2.0
    tries: int = 5

    def delay(self, attempt: int) -> float:
        return self.timeout * self.backoff ** attempt


@dataclass(frozen=True, slots=True)
class IkeLifetime:
    """When an IKE SA is renewed, with strongSwan's meaning and defaults (swanctl.conf):
    rekey (new keys, same authentication) after ``rekey_time``, reauthentication (a new IKE
    SA from scratch) after ``reauth_time``, each minus a random part of ``rand_time`` so two
    peers rarely start at once; closed ``over_time`` after the earlier of the two if the
    renewal did not succeed. None switches a timer off. Either role keeps these timers;
    only an original initiator reauthenticates (a responder sends its reauthentication
    time as AUTH_LIFETIME, RFC 4478)."""

    rekey_time: float | None = 4 * 3600.0
    reauth_time: float | None = None
    #: Default: 10 % of the larger of rekey_time and reauth_time.
    over_time: float | None = None
    #: Default: over_time.
    rand_time: float | None = None

    #: over_time and rand_time with their defaults applied (computed once: read per SA).
    over: float = field(init=False, repr=False, compare=False)
    rand: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        over = self.over_time
        if over is None:
            over = 0.1 * max(self.rekey_time or 0.0, self.reauth_time or 0.0)
        object.__setattr__(self, "over", over)
        object.__setattr__(self, "rand", over if self.rand_time is None else self.rand_time)


@dataclass(frozen=True, slots=True)
class ChildLifetime:
    """When a CHILD SA is rekeyed (``rekey_time`` minus a random part of ``rand_time``) and
    when it is deleted if that did not succeed (``life_time``); strongSwan's defaults:
    rekey after 1 h, life_time 10 % longer, rand_time the difference."""

    rekey_time: float | None = 3600.0
    life_time: float | None = None
    rand_time: float | None = None

    #: life_time and rand_time with their defaults applied (computed once: read per SA).
    life: float | None = field(init=False, repr=False, compare=False)
    rand: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        life, rekey = self.life_time, self.rekey_time
        if life is None and rekey is not None:
            life = 1.1 * rekey
        rand = self.rand_time
        if rand is None:
            rand = 0.0 if life is None or rekey is None else life - rekey
        object.__setattr__(self, "life", life)
        object.__setattr__(self, "rand", rand)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything an ``IkeSa`` needs besides addresses. ``remote_id`` None accepts any peer
    identity that authenticates; ``peer_auth`` (default: ``auth``) verifies the peer."""

    local_id: Identity
    auth: Authenticator
    remote_id: Identity | None = None
    peer_auth: Authenticator | None = None
    ike_proposals: tuple[IkeProposal, ...] = field(default_factory=lambda: (
        IkeProposal.parse("aes256gcm16-prfsha256-x25519-ecp256-modp2048"),
        IkeProposal.parse("aes256-sha256-x25519-ecp256-modp2048"),
    ))
    child_proposals: tuple[ChildProposal, ...] = field(default_factory=lambda: (
        ChildProposal.parse("aes256gcm16"),
        ChildProposal.parse("aes256-sha256"),
    ))
    local_ts: tuple[TrafficSelector, ...] = (ANY_V4,)
    remote_ts: tuple[TrafficSelector, ...] = (ANY_V4,)
    cp: CpRegistry = field(default_factory=CpRegistry)
    #: Send a fake NAT_DETECTION_SOURCE_IP so both sides float and encapsulate (strongSwan's
    #: ``encap = yes``).
    force_encap: bool = False
    natt_port: int = 4500
    retransmit: RetransmitPolicy = RetransmitPolicy()
    #: IKE fragmentation (RFC 7383): when to fragment, fragment size, reassembly bounds.
    fragmentation: FragmentPolicy = field(default_factory=FragmentPolicy)
    #: Responder: give up on an SA whose IKE_AUTH does not arrive in time.
    half_open_timeout: float = 30.0
    #: Send an empty INFORMATIONAL after this much time without one (None: never).
    dpd_interval: float | None = None
    #: When this side is behind a NAT, send a NAT keepalive this often (RFC 3948 §2.3).
    keepalive_interval: float | None = 20.0
    nonce_size: int = 32
    #: Initiator: send N(INITIAL_CONTACT) in IKE_AUTH (RFC 7296 §2.4). True only for the
    #: first IKE SA after start: it tells the responder to drop older SAs of our identity.
    initial_contact: bool = False
    #: Initiator: the first KE group to send (default: the first group of the first proposal).
    initial_dh: int | None = None
    ike_lifetime: IkeLifetime = IkeLifetime()
    child_lifetime: ChildLifetime = ChildLifetime()
    #: Uniform random numbers in [0, 1) for the jitter of rekey/reauth times (tests pin it).
    jitter: Callable[[], float] = random.random
    #: After TEMPORARY_FAILURE or a lost collision, try a rekey again this much later.
    rekey_retry: float = 10.0
    #: Seconds since the epoch, for certificate validity: the engine's only wall-clock read
    #: (``now`` passed to an SA is monotonic and says nothing about dates). Tests pin it.
    wall_clock: Callable[[], float] = time.time
    #: Keep each IKE SA's SK_e/SK_a keys in ``IkeSa.key_material`` for a key log
    #: (``ikecp.keylog``); off, they live only inside the SA's two SK ciphers.
    keep_keys: bool = False
    #: The event types the application reads (None: all). The engine builds no other, except
    #: those a driver needs to follow SAs: the new SA of an IKE rekey, a collision or a
    #: reauthentication (``IkeSaRekeyed``, ``RedundantIkeSa``, ``ReauthStarted``) and the end
    #: of one (``SaDeleted``, ``SaFailed``), always built.
    events: frozenset[type] | None = None
    #: The first octet of every SPI this side allocates (IKE SPIs, inbound ESP SPIs), None:
    #: all random. A multi-process SeGW puts its worker index there, and the kernel steers
    #: each datagram to the worker that owns the SA by it (``ikecp.net.reuseport``).
    spi_tag: int | None = None
