"""IKE SA keys in Wireshark's ``ikev2_decryption_table`` format, so a capture can be decrypted.

Off unless the user asks (``--keylog FILE``): these lines are the SA's secrets. One line per
IKE SA, eight comma-separated fields in the order of the UAT's columns: SPIi, SPIr, SK_ei,
SK_er, encryption algorithm, SK_ai, SK_ar, integrity algorithm. Octet fields are bare hex
(empty for the integrity keys of an AEAD), the algorithm names are double-quoted: the UAT
line syntax, which tshark also takes as ``-o "uat:ikev2_decryption_table:<line>"``.
The algorithm names must be exactly the ones Wireshark's UAT accepts; the ones below were
read from the value strings of Wireshark 4.0 (packet-isakmp.c, ``vs_ikev2_encr_algs`` and
``vs_ikev2_integr_algs``). AEAD keys include their 4-octet salt, as Wireshark expects.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .const import EncrId, IntegId

if TYPE_CHECKING:
    from .engine import IkeSa

log = logging.getLogger("ikecp.keylog")

_GCM_ICV: dict[int, int] = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12, EncrId.AES_GCM_16: 16}
_CCM_ICV: dict[int, int] = {EncrId.AES_CCM_8: 8, EncrId.AES_CCM_12: 12, EncrId.AES_CCM_16: 16}
_INTEG = {
    IntegId.NONE: "NONE [RFC4306]",
    IntegId.HMAC_SHA1_96: "HMAC_SHA1_96 [RFC2404]",
    IntegId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}


def encr_name(encr: int, key_bits: int | None) -> str | None:
    """Wireshark's name for an IKE SA encryption transform, or None if it has none."""
    if encr == EncrId.AES_CBC and key_bits in (128, 192, 256):
        return f"AES-CBC-{key_bits} [RFC3602]"
    if encr in _GCM_ICV and key_bits in (128, 192, 256):
        return f"AES-GCM-{key_bits} with {_GCM_ICV[encr]} octet ICV [RFC5282]"
    if encr in _CCM_ICV and key_bits in (128, 192, 256):
        return f"AES-CCM-{key_bits} with {_CCM_ICV[encr]} octet ICV [RFC5282]"
    return None


def integ_name(integ: int) -> str | None:
    return _INTEG.get(IntegId(integ)) if integ in IntegId._value2member_map_ else None


def line(sa: IkeSa) -> str | None:
    """The table line for ``sa`` (None before keys exist or for an algorithm Wireshark
    cannot decrypt)."""
    suite = sa.suite
    if suite is None or len(sa.key_material) != 4:
        return None
    encr, integ = encr_name(suite.encr, suite.encr_key_bits), integ_name(suite.integ)
    if encr is None or integ is None:
        return None
    sk_ei, sk_er, sk_ai, sk_ar = sa.key_material
    return ",".join((sa.spi_i.hex(), sa.spi_r.hex(), sk_ei.hex(), sk_er.hex(), f'"{encr}"',
                     sk_ai.hex(), sk_ar.hex(), f'"{integ}"'))


class KeyLog:
    """Appends one line per IKE SA to ``path`` (created with mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._written: set[bytes] = set()
        self.path.touch(mode=0o600, exist_ok=True)

    def write(self, sa: IkeSa) -> bool:
        """Log ``sa``'s keys once; False if there is nothing Wireshark could use."""
        key = sa.spi_i + sa.spi_r
        if key in self._written:
            return True
        text = line(sa)
        if text is None:
            log.warning("key log: no Wireshark name for this SA's algorithms; not logged")
            return False
        with self._lock, self.path.open("a", encoding="ascii") as f:
            f.write(text + "\n")
        self._written.add(key)
        return True
