"""Bytes-level accelerator calls for a pure-Python IKEv2 codebase that keeps its own payload
objects, state machine and I/O and wants only ikecp's hot paths.

Everything here takes ``bytes`` or any buffer-protocol object (``bytearray``, ``memoryview``,
``array``, ``mmap``) and returns ``bytes``, ints, bools and plain tuples, never ikecp's own
records. Each call is the active backend's (``ikecp._native`` unless
``IKECP_BACKEND=python``); the pure-Python twins in ``ikecp._reference`` have the same
signatures, results and exceptions. ``docs/accelerating.md`` gives every contract, the
measured speed-ups and a migration path call by call.

Errors: ``CryptoError`` (a ``ValueError``) for the caller's own arguments (unsupported
transform, wrong key or IV length), ``IntegrityError`` (no detail) for anything keyed that
fails, ``ParseError(what, offset, payload)`` (a ``ValueError``) for malformed structure, with
``offset`` into the buffer given, ``UnsupportedCriticalPayloadError`` (a ``ParseError``) from the
framing walk, ``TypeError`` for an argument of the wrong kind.

Error precedence of the framing walk: the first fault in wire order wins (see
``walk_payloads``). The record decoders (``backend.decode_message``) instead parse the whole
chain first and return unknown critical payloads as ``UnknownPayload(critical=True)``, so
there a framing error anywhere wins.
"""

from __future__ import annotations

from ._backend import IKE_KEY_NAMES, Buffer, Frame, Header, backend
from .errors import CryptoError, IntegrityError, ParseError, UnsupportedCriticalPayloadError

# Integrity transforms (RFC 2404, RFC 4868): ICV compute and constant-time verify.
integ_compute = backend.integ_compute
integ_verify = backend.integ_verify
# The SK body alone: plaintext | padding | pad length, encrypted (AEAD: ICV appended).
encrypt_body = backend.encrypt_body
decrypt_body = backend.decrypt_body
# Whole datagrams through a keyed SkCipher (one per direction).
SkCipher = backend.SkCipher
seal_datagram = backend.seal_datagram
open_datagram = backend.open_datagram
# Structure without payload objects.
decode_header = backend.decode_header
walk_payloads = backend.walk_payloads
walk_message = backend.walk_message
# "Is this supported?" before keying anything.
transform_supported = backend.transform_supported
# The key schedule and AUTH helpers, which already work on bytes.
prf = backend.prf
prf_plus = backend.prf_plus
skeyseed = backend.skeyseed
rekey_skeyseed = backend.rekey_skeyseed
ike_keys = backend.ike_keys
child_keymat = backend.child_keymat
signed_octets = backend.signed_octets
psk_auth = backend.psk_auth
nat_detection_hash = backend.nat_detection_hash

__all__ = [
    "IKE_KEY_NAMES",
    "Buffer",
    "CryptoError",
    "Frame",
    "Header",
    "IntegrityError",
    "ParseError",
    "SkCipher",
    "UnsupportedCriticalPayloadError",
    "child_keymat",
    "decode_header",
    "decrypt_body",
    "encrypt_body",
    "ike_keys",
    "integ_compute",
    "integ_verify",
    "nat_detection_hash",
    "open_datagram",
    "prf",
    "prf_plus",
    "psk_auth",
    "rekey_skeyseed",
    "seal_datagram",
    "signed_octets",
    "skeyseed",
    "transform_supported",
    "walk_message",
    "walk_payloads",
]
