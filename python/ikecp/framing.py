"""The UDP/4500 view of a datagram (RFC 3948 §2, RFC 7296 §2.23), shared by both backends.

On port 4500 one socket carries three things: NAT keepalives (one octet 0xFF, RFC 3948 §2.3),
IKE messages behind the 4-octet zero non-ESP marker (§2.2), and UDP-encapsulated ESP, whose
first four octets are a non-zero SPI (§2.1; SPI 0 is reserved, RFC 4303 §2.1). An ESP header
is SPI + sequence number, so anything shorter than 8 octets that is not one of the others is
garbage rather than ESP.
"""

from __future__ import annotations

from enum import Enum

from .const import NAT_KEEPALIVE, NON_ESP_MARKER

#: ESP header: 4-octet SPI + 4-octet sequence number (RFC 4303 §2).
ESP_MIN_LEN = 8


class Kind(Enum):
    KEEPALIVE = "keepalive"
    IKE = "ike"
    ESP = "esp"
    INVALID = "invalid"


def classify(datagram: bytes) -> tuple[Kind, bytes]:
    """Say what a datagram received on UDP/4500 is.

    Returns ``(Kind.IKE, message_without_marker)``, ``(Kind.ESP, datagram)``,
    ``(Kind.KEEPALIVE, b"")`` or ``(Kind.INVALID, datagram)``.
    """
    if datagram == NAT_KEEPALIVE:
        return Kind.KEEPALIVE, b""
    if datagram[:4] == NON_ESP_MARKER:
        return Kind.IKE, datagram[4:]
    if len(datagram) >= ESP_MIN_LEN:
        return Kind.ESP, datagram
    return Kind.INVALID, datagram


def add_marker(message: bytes) -> bytes:
    """Prefix an IKE message with the non-ESP marker for sending on UDP/4500."""
    return NON_ESP_MARKER + message
