"""Pure-Python twin of ``ikecp._native``: the same functions with the same signatures.

It is the oracle for the differential tests and the fallback where no wheel fits.
"""

from .codec import decode_message, decode_payloads, encode_message, encode_payloads
from .crypto import (
    SkCipher,
    child_keymat,
    ike_keys,
    nat_detection_hash,
    prf,
    prf_plus,
    psk_auth,
    rekey_skeyseed,
    signed_octets,
    skeyseed,
)
from .dataplane import Dataplane
from .esp import EspTransform, ReplayWindow
from .io import BatchSocket
from .lowlevel import (
    decode_header,
    decrypt_body,
    encrypt_body,
    integ_compute,
    integ_verify,
    open_datagram,
    seal_datagram,
    transform_supported,
    walk_message,
    walk_payloads,
)
from .modp import modp_public, modp_shared
from .sk import open_message, seal_message

__all__ = [
    "BatchSocket",
    "Dataplane",
    "EspTransform",
    "ReplayWindow",
    "SkCipher",
    "child_keymat",
    "decode_header",
    "decode_message",
    "decode_payloads",
    "decrypt_body",
    "encode_message",
    "encode_payloads",
    "encrypt_body",
    "ike_keys",
    "integ_compute",
    "integ_verify",
    "modp_public",
    "modp_shared",
    "nat_detection_hash",
    "open_datagram",
    "open_message",
    "prf",
    "prf_plus",
    "psk_auth",
    "rekey_skeyseed",
    "seal_datagram",
    "seal_message",
    "signed_octets",
    "skeyseed",
    "transform_supported",
    "walk_message",
    "walk_payloads",
]
