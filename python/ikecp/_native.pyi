"""Type stubs for the Rust extension ``ikecp._native`` (same API as ``ikecp._reference``)."""

from collections.abc import Sequence

from .message import Message, Payload

__all__ = [
    # codec
    "decode_message",
    "decode_payloads",
    "encode_message",
    "encode_payloads",
]

# codec
def decode_message(data: bytes) -> Message: ...
def encode_message(msg: Message) -> bytes: ...
def decode_payloads(first_type: int, data: bytes) -> tuple[Payload, ...]: ...
def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]: ...
