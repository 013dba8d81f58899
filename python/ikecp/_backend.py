"""Selects the codec + crypto backend: the Rust extension (default) or the pure-Python twin.

``IKECP_BACKEND=python`` selects the reference implementation. Both implement ``Backend``
with the same signatures, return equal values and raise the same exception classes
(``ikecp.errors``); the differential tests hold them to that.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Protocol, TypeAlias

from .message import Message, Payload

#: Any buffer-protocol object (``collections.abc.Buffer`` from Python 3.12).
Buffer: TypeAlias = "bytes | bytearray | memoryview"
#: ``decode_header``: (spi_i, spi_r, next_payload, major, minor, exchange, flags, message_id,
#: length).
Header: TypeAlias = "tuple[bytes, bytes, int, int, int, int, int, int, int]"
#: ``walk_payloads``: (type, critical, offset, length) of one payload.
Frame: TypeAlias = "tuple[int, bool, int, int]"

#: Order of the tuple returned by ``ike_keys`` (RFC 7296 §2.14).
IKE_KEY_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")


class SkCipherLike(Protocol):
    """One direction's keyed SK payload protection (RFC 7296 §3.14, RFC 5282, RFC 7634).

    ``Backend.seal_message`` / ``open_message`` compose it with the codec.
    """

    iv_size: int
    icv_size: int

    def __init__(self, encr_id: int, encr_key: bytes, integ_id: int,
                 integ_key: bytes) -> None: ...
    def seal(self, prefix: bytes, next_payload: int, plaintext: bytes,
             *, iv: bytes | None = None) -> bytes: ...
    def open(self, data: bytes) -> tuple[int, bytes]: ...
    # one SKF fragment (RFC 7383 §2.5): Fragment Number and Total Fragments under the ICV
    def seal_fragment(self, prefix: bytes, next_payload: int, fragment_number: int,
                      total_fragments: int, plaintext: bytes, *,
                      iv: bytes | None = None) -> bytes: ...
    def open_fragment(self, data: bytes) -> tuple[int, int, int, bytes]: ...


class BatchSocketLike(Protocol):
    """A bound UDP socket moving datagrams in batches (``recvmmsg``/``sendmmsg`` natively).

    It owns its descriptor; ``fileno()`` is lent for readiness polling only.
    """

    MAX_BATCH: int

    def fileno(self) -> int: ...
    def getsockname(self) -> tuple[str, int]: ...
    def close(self) -> None: ...
    def recv_batch(self, max_datagrams: int,
                   timeout: float | None = None) -> list[tuple[bytes, tuple[str, int]]]: ...
    def send_batch(self, datagrams: Iterable[tuple[bytes, tuple[str, int]]]) -> int: ...


class Backend(Protocol):
    """The bytes-in / bytes-out API a pure-Python IKE codebase can call."""

    # codec
    def decode_message(self, data: bytes) -> Message: ...
    def encode_message(self, msg: Message) -> bytes: ...
    def decode_payloads(self, first_type: int, data: bytes) -> tuple[Payload, ...]: ...
    def encode_payloads(self, payloads: Sequence[Payload]) -> tuple[int, bytes]: ...
    # crypto
    def prf(self, prf_id: int, key: bytes, data: bytes) -> bytes: ...
    def prf_plus(self, prf_id: int, key: bytes, seed: bytes, length: int) -> bytes: ...
    def skeyseed(self, prf_id: int, nonce_i: bytes, nonce_r: bytes,
                 shared_secret: bytes) -> bytes: ...
    def rekey_skeyseed(self, prf_id: int, sk_d_old: bytes, shared_secret: bytes,
                       nonce_i: bytes, nonce_r: bytes) -> bytes: ...
    def ike_keys(self, prf_id: int, skeyseed: bytes, nonce_i: bytes, nonce_r: bytes,
                 spi_i: bytes, spi_r: bytes, encr_key_len: int,
                 integ_key_len: int) -> tuple[bytes, ...]: ...
    def child_keymat(self, prf_id: int, sk_d: bytes, nonce_i: bytes, nonce_r: bytes,
                     length: int, shared_secret: bytes = b"") -> bytes: ...
    def signed_octets(self, prf_id: int, message: bytes, nonce: bytes, sk_p: bytes,
                      id_type: int, id_data: bytes) -> bytes: ...
    def psk_auth(self, prf_id: int, psk: bytes, signed_octets: bytes) -> bytes: ...
    def nat_detection_hash(self, spi_i: bytes, spi_r: bytes, ip: bytes, port: int) -> bytes: ...
    # MODP Diffie-Hellman (group 14): g^x, and y^x after checking the peer's value
    def modp_public(self, group: int, private: bytes) -> bytes: ...
    def modp_shared(self, group: int, private: bytes, peer_public: bytes) -> bytes: ...
    SkCipher: type[SkCipherLike]
    # batched UDP I/O: BatchSocket(host, port) binds a new socket (native: Linux only)
    BatchSocket: type[BatchSocketLike]
    # whole messages: the codec and an SkCipher in one call
    def seal_message(self, cipher: SkCipherLike, msg: Message, *,
                     iv: bytes | None = None) -> bytes: ...
    def open_message(self, cipher: SkCipherLike, data: bytes) -> Message: ...
    # bytes-level calls for host codebases (``ikecp.lowlevel`` documents them)
    def integ_compute(self, integ_id: int, key: Buffer, data: Buffer) -> bytes: ...
    def integ_verify(self, integ_id: int, key: Buffer, data: Buffer, icv: Buffer) -> bool: ...
    def encrypt_body(self, encr_id: int, key: Buffer, iv: Buffer, aad: Buffer,
                     plaintext: Buffer) -> bytes: ...
    def decrypt_body(self, encr_id: int, key: Buffer, iv: Buffer, aad: Buffer,
                     body: Buffer) -> bytes: ...
    def seal_datagram(self, cipher: SkCipherLike, prefix: Buffer, next_payload: int,
                      plaintext: Buffer, *, iv: Buffer | None = None) -> bytes: ...
    def open_datagram(self, cipher: SkCipherLike, data: Buffer) -> tuple[int, bytes, bytes]: ...
    def decode_header(self, data: Buffer) -> Header: ...
    def walk_payloads(self, first_type: int, data: Buffer,
                      offset: int = 0) -> tuple[Frame, ...]: ...
    def walk_message(self, data: Buffer) -> tuple[Header, tuple[Frame, ...]]: ...
    def transform_supported(self, transform_type: int, transform_id: int,
                            key_length: int | None = None) -> bool: ...


def load(name: str | None = None) -> ModuleType:
    """Return the backend module called ``name`` ("native" or "python")."""
    name = name or os.environ.get("IKECP_BACKEND", "native")
    if name == "python":
        from . import _reference

        return _reference
    if name == "native":
        try:
            from . import _native
        except ImportError as exc:  # a source tree without the built extension
            raise ImportError(
                "ikecp's native extension is not built; run `pip install .` "
                "or set IKECP_BACKEND=python to use the pure-Python backend"
            ) from exc
        return _native
    raise ImportError(f"IKECP_BACKEND must be 'native' or 'python', not {name!r}")


_module = load()
backend: Backend = _module  # type: ignore[assignment]
NAME: str = "python" if _module.__name__.endswith("_reference") else "native"
