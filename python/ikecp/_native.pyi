"""Type stubs for the Rust extension ``ikecp._native`` (same API as ``ikecp._reference``)."""

from collections.abc import Iterable, Sequence
from typing import ClassVar, final

from ._backend import SkCipherLike
from .message import Message, Payload

__all__ = [
    "BatchSocket",
    "SkCipher",
    "child_keymat",
    "decode_message",
    "decode_payloads",
    "encode_message",
    "encode_payloads",
    "ike_keys",
    "modp_public",
    "modp_shared",
    "nat_detection_hash",
    "open_message",
    "prf",
    "prf_plus",
    "psk_auth",
    "rekey_skeyseed",
    "seal_message",
    "signed_octets",
    "skeyseed",
]

# codec
def decode_message(data: bytes) -> Message: ...
def encode_message(msg: Message) -> bytes: ...
def decode_payloads(first_type: int, data: bytes) -> tuple[Payload, ...]: ...
def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]: ...

# crypto
@final
class SkCipher:
    """One direction's keyed SK payload protection (RFC 7296 §3.14, RFC 5282, RFC 7634)."""

    @property
    def iv_size(self) -> int: ...
    @property
    def icv_size(self) -> int: ...
    def __new__(
        cls, encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes
    ) -> SkCipher: ...
    def seal(
        self, prefix: bytes, next_payload: int, plaintext: bytes, *, iv: bytes | None = None
    ) -> bytes: ...
    def open(self, data: bytes) -> tuple[int, bytes]: ...

def prf(prf_id: int, key: bytes, data: bytes) -> bytes: ...
def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes: ...
def skeyseed(prf_id: int, nonce_i: bytes, nonce_r: bytes, shared_secret: bytes) -> bytes: ...
def rekey_skeyseed(
    prf_id: int, sk_d_old: bytes, shared_secret: bytes, nonce_i: bytes, nonce_r: bytes
) -> bytes: ...
def ike_keys(
    prf_id: int,
    skeyseed: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int,
) -> tuple[bytes, ...]: ...
def child_keymat(
    prf_id: int,
    sk_d: bytes,
    nonce_i: bytes,
    nonce_r: bytes,
    length: int,
    shared_secret: bytes = ...,
) -> bytes: ...
def signed_octets(
    prf_id: int, message: bytes, nonce: bytes, sk_p: bytes, id_type: int, id_data: bytes
) -> bytes: ...
def psk_auth(prf_id: int, psk: bytes, signed_octets: bytes) -> bytes: ...
def nat_detection_hash(spi_i: bytes, spi_r: bytes, ip: bytes, port: int) -> bytes: ...
def modp_public(group: int, private: bytes) -> bytes: ...
def modp_shared(group: int, private: bytes, peer_public: bytes) -> bytes: ...

# batched UDP I/O (Linux)
@final
class BatchSocket:
    """UDP socket with batched receive (recvmmsg) and send (sendmmsg); owns its descriptor."""

    MAX_BATCH: ClassVar[int]
    def __new__(cls, host: str, port: int) -> BatchSocket: ...
    def fileno(self) -> int: ...
    def getsockname(self) -> tuple[str, int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> BatchSocket: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> None: ...
    def recv_batch(
        self, max_datagrams: int, timeout: float | None = None
    ) -> list[tuple[bytes, tuple[str, int]]]: ...
    def send_batch(self, datagrams: Iterable[tuple[bytes, tuple[str, int]]]) -> int: ...
# whole messages: codec + SkCipher in one call
def seal_message(cipher: SkCipherLike, msg: Message, *, iv: bytes | None = None) -> bytes: ...
def open_message(cipher: SkCipherLike, data: bytes) -> Message: ...
