"""IKE message fragmentation (RFC 7383): split an SK message into SKF fragments, and put the
fragments a peer sends back together, within bounds.

Fragmentation happens at the IKE layer so that a NAT or firewall that drops IP fragments
does not break IKE_AUTH with a certificate chain. Every fragment is encrypted and
integrity-protected on its own (§2.5), so a receiver keeps a fragment only after its ICV
verified (§2.6): a forger cannot fill the reassembly buffer, only an authenticated peer can,
and the bounds of ``FragmentPolicy`` limit what even it may hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..const import HeaderFlag, NotifyType, PayloadType
from ..errors import IntegrityError
from ..message import SKF, Message, Notify, Payload

if TYPE_CHECKING:
    from .sa import IkeSa
    from .view import MessageView

MODES = ("yes", "accept", "force", "no")
_IKE_HEADER = 28
_SKF_HEADER = 8
_UDP_HEADER = 8
_NON_ESP_MARKER = 4
_RESPONSE = int(HeaderFlag.RESPONSE)


@dataclass(frozen=True, slots=True)
class FragmentPolicy:
    """When to fragment and how much a peer's fragments may cost (strongSwan's semantics for
    ``mode`` and ``size``).

    ``mode``: ``yes`` announces FRAGMENTATION_SUPPORTED and fragments an oversized message
    when the peer announced it too; ``accept`` announces but never fragments; ``force``
    fragments oversized messages even when the peer did not announce support; ``no`` does
    not announce. Fragments a peer sends are reassembled whatever the mode.

    ``size`` is the largest IP datagram a fragment may make, IP and UDP headers and the
    non-ESP marker included (strongSwan's ``fragment_size``); 0 picks the per-family
    minimum RFC 7383 §2.5.1 recommends: 576 octets for IPv4, 1280 for IPv6.
    """

    mode: str = "yes"
    size: int = 1280
    #: A fragment announcing more fragments than this is dropped.
    max_fragments: int = 32
    #: Largest reassembled message (decrypted octets); beyond it the message is abandoned.
    #: An IKE_AUTH with three RSA-4096 certificates is about 4.5 KB.
    max_message: int = 16384
    #: Decrypted octets one SA may hold for all the messages it is reassembling.
    max_memory: int = 32768
    #: Seconds a partial message may wait for its missing fragments.
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fragmentation must be one of {', '.join(MODES)}")
        if self.size != 0 and not 256 <= self.size <= 65535:
            raise ValueError("fragment size must be 0 or within 256-65535")
        if not 1 <= self.max_fragments <= 65535 or self.max_message < 1 \
                or self.max_memory < 1 or self.timeout <= 0:
            raise ValueError("fragment reassembly bounds must be positive")

    @property
    def announce(self) -> bool:
        return self.mode != "no"

    def may_fragment(self, peer_supports: bool) -> bool:
        return self.mode == "force" or (self.mode == "yes" and peer_supports)

    def max_ike_message(self, remote_ip: str, encapsulated: bool) -> int:
        """The longest IKE message (header included) that fits ``size`` towards a peer."""
        v6 = ":" in remote_ip  # an address literal; cheap enough for every message sent
        size = self.size or (1280 if v6 else 576)
        return size - (40 if v6 else 20) - _UDP_HEADER - (_NON_ESP_MARKER if encapsulated else 0)


# --- IKE_SA_INIT: announce and note support (§2.3) -----------------------------------------


#: Payloads are frozen records: one shared instance spares building it for every SA.
_SUPPORTED = Notify(0, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)


def announce(sa: IkeSa, out: list[Payload]) -> None:
    """Add FRAGMENTATION_SUPPORTED: the initiator when its mode announces, the responder only
    in answer to an initiator that announced it."""
    if sa.settings.fragmentation.announce and (sa.is_initiator or sa.peer_fragmentation):
        out.append(_SUPPORTED)


def note_peer(sa: IkeSa, msg: MessageView) -> None:
    sa.peer_fragmentation = bool(msg.notifies(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))


# --- sending (§2.5) ----------------------------------------------------------------------------


def split(backend: Any, cipher: Any, msg: Message, limit: int) -> tuple[bytes, ...]:
    """``msg`` as SKF fragments of at most ``limit`` octets each (IKE header included).

    The inner payloads are encoded once and their octets cut into pieces; the Next Payload
    of the first inner payload goes in fragment 1 only, every other fragment says 0. Each
    fragment is sealed on its own, with its own IV, under the IKE header and SKF header.
    """
    first_type, body = backend.encode_payloads(msg.payloads)
    header = bytearray(backend.encode_message(Message(
        msg.spi_i, msg.spi_r, msg.exchange, msg.flags, msg.message_id, (),
        msg.major_version, msg.minor_version)))
    header[16] = PayloadType.SKF
    room = limit - _IKE_HEADER - _SKF_HEADER - cipher.iv_size - cipher.icv_size
    # AEAD transforms (8-octet IVs) need only the pad-length octet; AES-CBC pads to 16.
    piece = room - 1 if cipher.iv_size != 16 else room // 16 * 16 - 1
    if piece < 1:
        raise ValueError(f"fragment size {limit} leaves no room for data")
    total = max(1, -(-len(body) // piece))
    if total > 0xFFFF:
        raise ValueError("message needs more than 65535 fragments")
    prefix = bytes(header)
    return tuple(
        cipher.seal_fragment(prefix, first_type if n == 1 else 0, n, total,
                             body[(n - 1) * piece:n * piece])
        for n in range(1, total + 1))


# --- receiving (§2.6) --------------------------------------------------------------------------


def refuse_replayed(cipher: Any, skf: SKF, data: bytes) -> str | None:
    """A fragment of a request already answered: None for fragment 1 whose ICV verifies
    (the answer is sent again, §2.6.1); otherwise why it is dropped (the others are
    ignored)."""
    if skf.fragment_number != 1:
        return f"fragment {skf.fragment_number} of an answered request"
    try:
        if cipher is not None:
            cipher.open_fragment(data)
            return None
    except (IntegrityError, ValueError):  # ParseError is a ValueError
        pass
    return "fragment 1 of an answered request failed its integrity check"


class FragmentDropped(Exception):  # noqa: N818 - a verdict, reported as a dropped datagram
    """A fragment was not kept; the text says why."""


class _Partial:
    """The verified fragments of one message so far."""

    __slots__ = ("deadline", "exchange", "first_type", "parts", "size", "total")

    def __init__(self, exchange: int, total: int, deadline: float) -> None:
        self.exchange, self.total, self.deadline = exchange, total, deadline
        self.parts: dict[int, bytes] = {}
        self.first_type = 0
        self.size = 0


class Reassembler:
    """Puts one SA's incoming fragmented messages back together: at most one request and
    one response at a time (the message-ID window is 1), within ``FragmentPolicy`` bounds.

    The caller has already checked the message ID (the expected request, or the response
    to the outstanding request); ``add`` checks the fragment fields, verifies the ICV, then
    keeps the fragment.
    """

    __slots__ = ("_partials", "policy")

    def __init__(self, policy: FragmentPolicy) -> None:
        self.policy = policy
        self._partials: dict[tuple[bool, int], _Partial] = {}

    @property
    def deadline(self) -> float | None:
        """When the oldest partial message expires, or None."""
        return min((p.deadline for p in self._partials.values()), default=None)

    @property
    def held(self) -> int:
        """Decrypted octets held for partial messages."""
        return sum(p.size for p in self._partials.values())

    def expire(self, now: float) -> list[int]:
        """Forget partial messages past their time limit; their message IDs."""
        gone = [key for key, p in self._partials.items() if now >= p.deadline]
        for key in gone:
            del self._partials[key]
        return [mid for _, mid in gone]

    def add(self, backend: Any, cipher: Any, msg: Message, skf: SKF, data: bytes,
            now: float) -> Message | None:
        """Keep the fragment ``data`` (decoded as ``msg``, whose last payload is ``skf``).
        Returns the whole message once the last fragment is in, None while some are
        missing; raises ``FragmentDropped`` for a fragment not kept, ``IntegrityError`` /
        ``ParseError`` from the cipher and codec."""
        self.expire(now)
        number, total = skf.fragment_number, skf.total_fragments
        policy = self.policy
        if not 1 <= number <= total:
            raise FragmentDropped(f"fragment number {number} of {total}")
        if total > policy.max_fragments:
            raise FragmentDropped(f"{total} fragments, more than the {policy.max_fragments} "
                                  "allowed")
        key = (bool(int(msg.flags) & _RESPONSE), msg.message_id)
        partial = self._partials.get(key)
        if partial is not None:
            # Cheap checks before the ICV: a known duplicate, or a smaller total (§2.6).
            if total < partial.total:
                raise FragmentDropped(f"fragment of {total}, message has {partial.total}")
            if total == partial.total and number in partial.parts:
                raise FragmentDropped(f"duplicate fragment {number}/{total}")
        next_payload, _, _, plain = cipher.open_fragment(data)
        # Verified: now the fragment is the peer's and may be kept.
        if partial is not None and (total > partial.total or msg.exchange != partial.exchange):
            # A larger total means the sender re-fragmented smaller (§2.5.2): start anew.
            del self._partials[key]
            partial = None
        if partial is None:
            partial = _Partial(msg.exchange, total, now + policy.timeout)
        if partial.size + len(plain) > policy.max_message:
            self._partials.pop(key, None)
            raise FragmentDropped(f"message {msg.message_id} exceeds {policy.max_message} "
                                  "octets; abandoned")
        if self.held + len(plain) > policy.max_memory:  # ``partial`` is counted if kept
            raise FragmentDropped(f"SA holds {self.held} octets of fragments, limit "
                                  f"{policy.max_memory}")
        self._partials[key] = partial
        partial.parts[number] = plain
        partial.size += len(plain)
        if number == 1:
            partial.first_type = next_payload
        if len(partial.parts) < partial.total:
            return None
        del self._partials[key]
        body = b"".join(partial.parts[n] for n in range(1, partial.total + 1))
        inner = backend.decode_payloads(partial.first_type, body)
        return Message(msg.spi_i, msg.spi_r, msg.exchange, msg.flags, msg.message_id, inner,
                       msg.major_version, msg.minor_version)
