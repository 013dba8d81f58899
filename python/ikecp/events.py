"""What ikecp tells the application: the engine's events, read one at a time through
``IkeSa.next_event()`` (a role hands each to its ``on_event``), then the ones the roles give
their callbacks (``BindingChanged``, ``SaFailure``, ``PublicAddressUpdate``).

Every event is a frozen dataclass so it can be logged, compared and kept without aliasing
engine state. Addresses are ``(ip, port)`` tuples with the IP as text. This module imports
nothing of the engine or the CP extensions: both import it.
"""

from __future__ import annotations

from .addr import Address
from .const import NotifyType, notify_name
from .message import ConfigAttribute, TrafficSelector
from .record import record as _event


@_event
class NatDetected:
    """Result of NAT detection in IKE_SA_INIT (RFC 7296 §2.23). ``local_behind_nat`` is also
    true when encapsulation was forced with a fake source hash."""

    local_behind_nat: bool
    remote_behind_nat: bool


@_event
class IkeSaEstablished:
    """Both peers are authenticated; the IKE SA carries protected exchanges from now on."""

    spi_i: bytes
    spi_r: bytes
    local_id: object
    remote_id: object
    local_addr: Address
    remote_addr: Address
    encr: int
    encr_key_bits: int | None
    integ: int
    prf: int
    dh: int


@_event
class ChildSaEstablished:
    """An ESP SA pair with the keys a data plane needs (RFC 7296 §2.17).

    ``key_i_to_r`` / ``key_r_to_i`` are (encryption key incl. salt, integrity key) for traffic
    from the initiator of the exchange that created the SA (IKE_AUTH or CREATE_CHILD_SA) to
    its responder and back; ``initiator`` says whether that was us, ``key_out`` / ``key_in``
    pick ours. ``spi_in`` is the SPI this side receives on, ``spi_out`` the one it sends
    with. ``rekeys`` is the ``spi_in`` of the CHILD SA this one replaces, if any.
    """

    spi_in: bytes
    spi_out: bytes
    encr: int
    encr_key_bits: int | None
    integ: int
    esn: int
    ts_i: tuple[TrafficSelector, ...]
    ts_r: tuple[TrafficSelector, ...]
    key_i_to_r: tuple[bytes, bytes]
    key_r_to_i: tuple[bytes, bytes]
    encapsulated: bool
    initiator: bool
    rekeys: bytes | None = None

    @property
    def key_out(self) -> tuple[bytes, bytes]:
        return self.key_i_to_r if self.initiator else self.key_r_to_i

    @property
    def key_in(self) -> tuple[bytes, bytes]:
        return self.key_r_to_i if self.initiator else self.key_i_to_r


@_event
class ChildSaFailed:
    """The IKE SA is up but a CHILD_SA was refused: the first one in IKE_AUTH (e.g.
    INTERNAL_ADDRESS_FAILURE), or one created or rekeyed with CREATE_CHILD_SA
    (NO_PROPOSAL_CHOSEN, CHILD_SA_NOT_FOUND, TEMPORARY_FAILURE, ...)."""

    notify_type: int
    reason: str


@_event
class ChildSaRekeyed:
    """A CHILD SA was replaced by a new pair (RFC 7296 §2.8): the new one was announced by
    ``ChildSaEstablished`` just before; the old one is closed once deleted."""

    old_spi_in: bytes
    old_spi_out: bytes
    new_spi_in: bytes
    new_spi_out: bytes


@_event
class ChildSaClosed:
    """A CHILD SA is gone from this IKE SA, for whatever reason (deleted by either peer,
    replaced by a rekey, expired): a data plane removes it now."""

    spi_in: bytes
    spi_out: bytes
    reason: str


@_event
class IkeSaRekeyed:
    """This IKE SA was rekeyed (§2.18): ``sa`` is the new ``IkeSa`` with new SPIs and keys,
    which holds the CHILD SAs from now on. The application must route the new SPIs to it;
    this one only waits for its DELETE."""

    sa: object
    spi_i: bytes
    spi_r: bytes


@_event
class RedundantIkeSa:
    """A simultaneous IKE rekey (§2.8.2) left ``sa``, a new IKE SA nobody keeps: route its
    SPIs to it until its DELETE is done (sent by whoever created it)."""

    sa: object


@_event
class ReauthStarted:
    """Reauthentication, make-before-break (§2.8.3): ``sa`` is a new initiator ``IkeSa``
    the application must drive beside this one; once it is established, this one is
    deleted."""

    sa: object


@_event
class AuthLifetimeReceived:
    """The responder asked us to reauthenticate within ``lifetime`` seconds (RFC 4478)."""

    lifetime: int


@_event
class ConfigReceived:
    """Attributes of the CFG_REPLY the initiator got, as sent."""

    attributes: tuple[ConfigAttribute, ...]


@_event
class PublicAddressLearned:
    """The responder reported the address (and port, when it sent 6 octets) it saw for us in
    EXTERNAL_SOURCE_IP4_NAT_INFO (3GPP TS 29.139). ``pushed``: it came in a CFG_SET the
    responder sent after our address changed (a NAT rebinding), not in the CFG_REPLY."""

    address: str
    port: int | None
    attr_type: int
    pushed: bool = False


@_event
class CpValueDeferred:
    """Responder side: a CP provider returned ``deferred`` (an ``ikecp.cp.Deferred``) for
    ``attr_type``; the IKE_AUTH response waits until it is settled. A ``Gateway`` sends the
    response as soon as it is; a program driving the SA itself calls ``datagrams_to_send``
    on the SA once it is (``Deferred.add_done_callback`` says when)."""

    attr_type: int
    deferred: object


@_event
class NatInfoNotSupported:
    """We asked for the NAT-info attribute and got no usable answer; the SA stays up."""

    reason: str


@_event
class PeerBinding:
    """Responder side: what the mobile network needs to reach the peer. Emitted when the SA
    is established and again whenever the peer's public address changes."""

    peer_id: object
    inner_address: str | None
    public_address: str
    public_port: int
    spi_i: bytes
    spi_r: bytes
    child_spis: tuple[bytes, ...]


@_event
class InitialContact:
    """Responder side: the authenticated peer sent N(INITIAL_CONTACT) in IKE_AUTH (RFC 7296
    §2.4): this IKE SA is the only one it has with us, so older ones with ``peer_id`` are
    dead and may be deleted without waiting for a timeout."""

    peer_id: object


@_event
class ConfigSetAnswered:
    """The peer answered our CP(CFG_SET) in an INFORMATIONAL exchange. ``accepted`` lists
    the attribute types in its CFG_ACK (empty: it took none, e.g. a peer that does not know
    the push); ``error`` is an error notify it answered with, if any."""

    sent: tuple[int, ...]
    accepted: tuple[int, ...]
    error: int | None = None


@_event
class RemoteAddressChanged:
    """An authenticated request came from a new address (NAT rebinding or the float)."""

    old: Address
    new: Address


@_event
class ProtocolErrorSent:
    """We answered a request with an error notify."""

    notify_type: int
    reason: str


@_event
class ProtocolErrorReceived:
    """The peer answered one of our requests with an error notify."""

    notify_type: int
    exchange: int


@_event
class DatagramDropped:
    """A datagram was ignored (malformed, unauthenticated, unexpected); SA state unchanged."""

    reason: str


@_event
class LivenessConfirmed:
    """The peer answered an empty INFORMATIONAL request."""


@_event
class SaDeleted:
    """The IKE SA was deleted with an INFORMATIONAL DELETE; ``by_peer`` says who asked;
    ``replaced`` when a rekeyed or reauthenticated successor took over."""

    by_peer: bool
    replaced: bool = False


@_event
class ChildSaDeleted:
    """The peer deleted CHILD_SAs; ``spis`` are the SPIs it listed (its inbound SPIs)."""

    spis: tuple[bytes, ...]


@_event
class AuthenticationFailed:
    """The peer did not prove the identity it claimed (IKE_AUTH, either role). ``failure`` is
    the class (``auth.UNKNOWN_IDENTITY``, ``BAD_AUTH``, ``CERTIFICATE``, ``WRONG_IDENTITY``,
    ``WRONG_METHOD``); ``reason`` the detail, which never holds a secret. An ``SaFailed``
    follows."""

    identity: object
    failure: str
    reason: str


@_event
class SaFailed:
    """The SA is dead: authentication failure, no proposal, peer gone, and so on."""

    reason: str
    notify_type: int | None = None


Event = (
    NatDetected | IkeSaEstablished | ChildSaEstablished | ChildSaFailed | ChildSaRekeyed
    | ChildSaClosed | IkeSaRekeyed | RedundantIkeSa | ReauthStarted | AuthLifetimeReceived
    | ConfigReceived | InitialContact | ConfigSetAnswered
    | PublicAddressLearned | CpValueDeferred | NatInfoNotSupported | PeerBinding
    | RemoteAddressChanged
    | ProtocolErrorSent | ProtocolErrorReceived | DatagramDropped | LivenessConfirmed
    | SaDeleted | ChildSaDeleted | AuthenticationFailed | SaFailed
)


# --- what the roles (``ikecp.Gateway``, ``ikecp.Femto``) tell their callbacks ----------------


@_event
class BindingChanged:
    """SeGW (``on_binding``): a row of the binding table changed. ``kind`` is "up" (a new
    SA authenticated), "rebind" (its public address moved: ``reason`` is the previous one),
    "update" (same address, e.g. new CHILD SPIs), "rekey" (new IKE SPIs: ``reason`` is the
    old SPIr) or "down" (``reason`` says why: deleted by peer, expired, failed: ...).
    ``spi_r`` is our SPI as hex text."""

    kind: str
    identity: str
    inner_ip: str | None
    public_ip: str
    public_port: int
    spi_r: str
    reason: str | None = None


@_event
class SaFailure:
    """Either role (``on_sa_failed``): ``kind`` "auth" (the peer did not authenticate),
    "child" (a CHILD SA was refused; the IKE SA stays) or "sa" (the IKE SA is dead).
    ``peer`` is the peer's identity when it is known; ``notify_type`` the error notify
    sent or received, if there was one (e.g. AUTHENTICATION_FAILED)."""

    kind: str
    peer: str | None
    remote: Address
    reason: str
    notify_type: int | None = None


@_event
class PublicAddressUpdate:
    """FAP (``on_public_address``): the public address:port the SeGW saw us at
    (EXTERNAL_SOURCE_IP4_NAT_INFO), first learned (``previous`` None) or changed.
    ``pushed``: the SeGW pushed it after a NAT rebinding (CFG_SET)."""

    address: str
    port: int | None
    previous: tuple[str, int | None] | None
    pushed: bool


def failure_cause_of(notify: int) -> str:
    """``notify NAME`` for a notify type (its number when unknown)."""
    return f"notify {notify_name(notify)}"


def failure_cause(event: SaFailed | ChildSaFailed) -> str:
    """A short cause for reports and metrics: auth failure, a notify name, timeout, or the
    reason."""
    notify = event.notify_type
    if notify == NotifyType.AUTHENTICATION_FAILED:
        return "auth failure"
    if notify is not None:
        kind = "child " if isinstance(event, ChildSaFailed) else ""
        return f"{kind}notify {notify_name(notify)}"
    if "retransmission limit" in event.reason:
        return "timeout (no answer)"
    return event.reason
