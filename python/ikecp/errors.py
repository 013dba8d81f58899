"""Exceptions shared by both backends and the engine.

The native module raises these same classes (it imports them), so callers catch one set of
exceptions whichever backend is active.
"""

from __future__ import annotations


class IkeError(Exception):
    """Base class of every ikecp exception."""


class ParseError(IkeError, ValueError):
    """A datagram or payload is malformed.

    ``what`` is a short fixed phrase (stable across backends), ``offset`` the byte offset from
    the start of the buffer handed to the decoder where the bad structure starts, ``payload``
    the payload type being decoded (``None`` for the IKE header).
    """

    def __init__(self, what: str, offset: int, payload: int | None = None) -> None:
        super().__init__(what, offset, payload)
        self.what = what
        self.offset = offset
        self.payload = payload

    def __str__(self) -> str:
        where = "header" if self.payload is None else f"payload type {self.payload}"
        return f"{self.what} at offset {self.offset} ({where})"


class UnsupportedCriticalPayloadError(ParseError):
    """A payload of a type this codec does not know has the critical bit set (RFC 7296 §2.5).

    Raised by the framing walk (``ikecp.lowlevel.walk_payloads``) at the first such payload in
    wire order; ``payload`` is its type, the one octet of notify data for the
    UNSUPPORTED_CRITICAL_PAYLOAD answer. ``what`` is "unsupported critical payload".
    """


class IntegrityError(IkeError):
    """An SK/SKF payload failed its integrity check. Deliberately carries no detail."""


class CryptoError(IkeError, ValueError):
    """Bad crypto input from the caller or the peer: unsupported transform, wrong key size,
    or an invalid Diffie-Hellman public value (RFC 7296 §5, RFC 6989)."""


class RemoteProtocolError(IkeError):
    """The peer broke the protocol. ``notify_type`` is the error notify to answer with
    (RFC 7296 §3.10.1) and ``data`` its notification data."""

    def __init__(self, notify_type: int, reason: str, data: bytes = b"") -> None:
        super().__init__(notify_type, reason)
        self.notify_type = notify_type
        self.reason = reason
        self.data = data

    def __str__(self) -> str:
        return f"{self.reason} (notify {self.notify_type})"


class LocalProtocolError(IkeError):
    """The application drove the engine wrongly: bad settings or a call in the wrong state."""


class AuthenticationError(IkeError):
    """The peer could not be authenticated: bad AUTH signature, untrusted or invalid
    certificate chain, or an identity its certificate does not carry.

    ``reason`` is a short phrase naming what failed; it never contains key material, so the
    engine may log it before answering AUTHENTICATION_FAILED.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
