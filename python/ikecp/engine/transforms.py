"""Proposals: strongSwan-style strings, SA payload building, selection and key sizes.

Selection keeps the initiator's proposal order and, inside a proposal, the first transform of
each type that the responder also allows (RFC 7296 §2.7, §3.3.6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..const import DhGroup, EncrId, Esn, IntegId, PrfId, ProtocolId, TransformAttr
from ..const import TransformType as T
from ..message import Proposal, Transform, TransformAttribute

#: AEAD ciphers: no INTEG transform, 4-octet salt after the key (RFC 5282 §7.1, RFC 7634 §2).
AEAD = frozenset({EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305})
_SALT: dict[int, int] = {EncrId.AES_GCM_16: 4, EncrId.CHACHA20_POLY1305: 4}
_FIXED_KEY_BITS: dict[int, int] = {EncrId.CHACHA20_POLY1305: 256}
#: Integrity key sizes in octets (RFC 2404, RFC 4868 §2.1).
INTEG_KEY_BYTES: dict[int, int] = {
    IntegId.NONE: 0,
    IntegId.HMAC_SHA1_96: 20,
    IntegId.HMAC_SHA2_256_128: 32,
    IntegId.HMAC_SHA2_384_192: 48,
    IntegId.HMAC_SHA2_512_256: 64,
}

_ENCR_TOKENS = {
    "aes128": (EncrId.AES_CBC, 128),
    "aes256": (EncrId.AES_CBC, 256),
    "aes128gcm16": (EncrId.AES_GCM_16, 128),
    "aes256gcm16": (EncrId.AES_GCM_16, 256),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, None),
}
_INTEG_TOKENS = {
    "sha1": IntegId.HMAC_SHA1_96,
    "sha256": IntegId.HMAC_SHA2_256_128,
    "sha384": IntegId.HMAC_SHA2_384_192,
    "sha512": IntegId.HMAC_SHA2_512_256,
}
_INTEG_TO_PRF: dict[int, int] = {
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
}
_PRF_TOKENS = {
    "prfsha1": PrfId.HMAC_SHA1,
    "prfsha256": PrfId.HMAC_SHA2_256,
    "prfsha384": PrfId.HMAC_SHA2_384,
    "prfsha512": PrfId.HMAC_SHA2_512,
}
#: The groups ``ikecp.dh`` implements.
_DH_TOKENS = {
    "modp2048": DhGroup.MODP_2048,
    "ecp256": DhGroup.ECP_256,
    "ecp384": DhGroup.ECP_384,
    "x25519": DhGroup.CURVE25519,
    "curve25519": DhGroup.CURVE25519,
}
_ESN_TOKENS = {"esn": Esn.YES, "noesn": Esn.NO}

EncrSpec = tuple[int, "int | None"]


def encr_key_bytes(encr_id: int, key_bits: int | None) -> int:
    """Octets of keying material for an encryption transform, salt included."""
    bits = key_bits if key_bits is not None else _FIXED_KEY_BITS.get(encr_id, 0)
    return bits // 8 + _SALT.get(encr_id, 0)


def _split(text: str) -> list[str]:
    tokens = [t for t in text.strip().lower().split("-") if t]
    if not tokens:
        raise ValueError("empty proposal string")
    return tokens


@dataclass(frozen=True, slots=True)
class IkeProposal:
    """Transforms offered or accepted for the IKE SA, each list in preference order."""

    encryption: tuple[EncrSpec, ...]
    integrity: tuple[int, ...]
    prf: tuple[int, ...]
    dh: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> IkeProposal:
        """Read a strongSwan-style string such as ``aes256gcm16-prfsha256-x25519``."""
        encr: list[EncrSpec] = []
        integ: list[int] = []
        prf: list[int] = []
        dh: list[int] = []
        for tok in _split(text):
            if tok in _ENCR_TOKENS:
                encr.append(_ENCR_TOKENS[tok])
            elif tok in _INTEG_TOKENS:
                integ.append(_INTEG_TOKENS[tok])
            elif tok in _PRF_TOKENS:
                prf.append(_PRF_TOKENS[tok])
            elif tok in _DH_TOKENS:
                dh.append(_DH_TOKENS[tok])
            else:
                raise ValueError(f"unknown IKE proposal token {tok!r}")
        aead = [e for e in encr if e[0] in AEAD]
        if not encr or not dh or (aead and len(aead) != len(encr)):
            raise ValueError(f"incomplete or mixed IKE proposal {text!r}")
        if not prf:  # strongSwan: the PRF follows the integrity algorithm unless named
            prf = [_INTEG_TO_PRF[i] for i in integ]
        if not prf or (not aead and not integ) or (aead and integ):
            raise ValueError(f"IKE proposal {text!r} needs a PRF and, for non-AEAD, integrity")
        return cls(tuple(encr), tuple(integ), tuple(prf), tuple(dh))

    def transforms(self, dh_first: int | None = None) -> tuple[Transform, ...]:
        groups = list(self.dh)
        if dh_first is not None and dh_first in groups:
            groups.remove(dh_first)
            groups.insert(0, dh_first)
        return (
            tuple(_encr_transform(e) for e in self.encryption)
            + tuple(Transform(T.PRF, p) for p in self.prf)
            + tuple(Transform(T.INTEG, i) for i in self.integrity)
            + tuple(Transform(T.DH, g) for g in groups)
        )


@dataclass(frozen=True, slots=True)
class ChildProposal:
    """ESP transforms for a CHILD_SA. ``dh`` groups give perfect forward secrecy to CHILD SAs
    created or rekeyed with CREATE_CHILD_SA (a KE payload each); IKE_AUTH never carries them
    (RFC 7296 §1.2)."""

    encryption: tuple[EncrSpec, ...]
    integrity: tuple[int, ...] = ()
    esn: tuple[int, ...] = (Esn.NO,)
    dh: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ChildProposal:
        """Read a strongSwan-style ESP string such as ``aes256gcm16``, ``aes256-sha256`` or,
        with PFS, ``aes256gcm16-x25519``."""
        encr: list[EncrSpec] = []
        integ: list[int] = []
        esn: list[int] = []
        dh: list[int] = []
        for tok in _split(text):
            if tok in _ENCR_TOKENS:
                encr.append(_ENCR_TOKENS[tok])
            elif tok in _INTEG_TOKENS:
                integ.append(_INTEG_TOKENS[tok])
            elif tok in _ESN_TOKENS:
                esn.append(_ESN_TOKENS[tok])
            elif tok in _DH_TOKENS:
                dh.append(_DH_TOKENS[tok])
            else:
                raise ValueError(f"unknown ESP proposal token {tok!r}")
        aead = all(e[0] in AEAD for e in encr)
        if not encr or (aead and integ) or (not aead and not integ):
            raise ValueError(f"incomplete or mixed ESP proposal {text!r}")
        return cls(tuple(encr), tuple(integ), tuple(esn) or (Esn.NO,), tuple(dh))

    def transforms(self, pfs: bool = False) -> tuple[Transform, ...]:
        return (
            tuple(_encr_transform(e) for e in self.encryption)
            + tuple(Transform(T.INTEG, i) for i in self.integrity)
            + (tuple(Transform(T.DH, g) for g in self.dh) if pfs else ())
            + tuple(Transform(T.ESN, e) for e in self.esn)
        )


def _encr_transform(spec: EncrSpec) -> Transform:
    encr_id, bits = spec
    if bits is None:
        return Transform(T.ENCR, encr_id)
    return Transform(T.ENCR, encr_id, (TransformAttribute(TransformAttr.KEY_LENGTH, bits),))


def sa_proposals(protocol: int, transform_sets: Iterable[tuple[Transform, ...]],
                 spi: bytes = b"") -> tuple[Proposal, ...]:
    return tuple(Proposal(n, protocol, spi, ts) for n, ts in enumerate(transform_sets, 1))


#: (id(proposals), extra) -> (proposals, result): per-Settings tables looked up by identity,
#: since hashing a tuple of proposal dataclasses runs Python code for every member. The
#: proposals object is kept so a recycled id() can never match.
_BY_ID: dict[tuple[int, object], tuple[object, object]] = {}


def _by_id(proposals: tuple, extra: object, build: Callable[[], Any]) -> Any:
    key = (id(proposals), extra)
    hit = _BY_ID.get(key)
    if hit is None or hit[0] is not proposals:
        if len(_BY_ID) >= 1024:
            _BY_ID.clear()
        hit = _BY_ID[key] = (proposals, build())
    return hit[1]


def ike_offer(proposals: tuple[IkeProposal, ...], dh_first: int) -> tuple[Proposal, ...]:
    """The initiator's IKE SA payload proposals, the KE group first in each."""
    return _by_id(proposals, dh_first, lambda: sa_proposals(
        ProtocolId.IKE, (p.transforms(dh_first=dh_first) for p in proposals)))


def child_offer(proposals: tuple[ChildProposal, ...], pfs: bool = False
                ) -> tuple[tuple[Transform, ...], ...]:
    """Transform sets of the initiator's ESP proposals (the SPI is added per SA); with
    ``pfs`` (CREATE_CHILD_SA) their DH groups too."""
    return _by_id(proposals, pfs, lambda: tuple(p.transforms(pfs) for p in proposals))


@dataclass(frozen=True, slots=True)
class Suite:
    """One transform of each type: what a selected proposal boils down to."""

    encr: int
    encr_key_bits: int | None
    integ: int
    prf: int
    dh: int
    esn: int

    @property
    def encr_key_len(self) -> int:
        return encr_key_bytes(self.encr, self.encr_key_bits)

    @property
    def integ_key_len(self) -> int:
        return INTEG_KEY_BYTES.get(self.integ, 0)

    def transforms(self, *, esn: bool = False) -> tuple[Transform, ...]:
        """One transform per type, as a responder returns it (``esn`` for ESP)."""
        return _suite_transforms(self, esn)


@lru_cache(maxsize=256)
def _suite_transforms(suite: Suite, esn: bool) -> tuple[Transform, ...]:
    """Suites repeat from SA to SA: their transforms are built once (they are immutable)."""
    out = [_encr_transform((suite.encr, suite.encr_key_bits))]
    if suite.prf:
        out.append(Transform(T.PRF, suite.prf))
    if suite.integ:
        out.append(Transform(T.INTEG, suite.integ))
    if suite.dh:
        out.append(Transform(T.DH, suite.dh))
    if esn:
        out.append(Transform(T.ESN, suite.esn))
    return tuple(out)


@lru_cache(maxsize=256)
def _allowed(local: tuple[IkeProposal | ChildProposal, ...]) -> dict[int, list]:
    """Per transform type, the (id, key_bits) pairs the local side accepts, in its order."""
    allowed: dict[int, list] = {T.ENCR: [], T.INTEG: [], T.PRF: [], T.DH: [], T.ESN: []}
    for p in local:
        allowed[T.ENCR].extend(p.encryption)
        allowed[T.INTEG].extend((i, None) for i in p.integrity)
        allowed[T.DH].extend((i, None) for i in p.dh)
        if isinstance(p, IkeProposal):
            allowed[T.PRF].extend((i, None) for i in p.prf)
        else:
            allowed[T.ESN].extend((i, None) for i in p.esn)
    return allowed


#: (protocol, id(local), prefer_dh, offer shape) -> (local, answer); local is kept so a
#: recycled id() can never match.
_SELECTED: dict[tuple, tuple[object, tuple[int, Suite] | None]] = {}


def select(protocol: int, offered: Sequence[Proposal],
           local: Sequence[IkeProposal | ChildProposal],
           prefer_dh: int | None = None, pfs: bool = False) -> tuple[Proposal, Suite] | None:
    """Pick the first offered proposal whose every transform type has an acceptable member.

    Returns the proposal (for its number and SPI) and the chosen suite, or None. With
    ``prefer_dh`` the group of the initiator's KE payload wins when it is acceptable. ESP
    proposals with a DH group are acceptable only with ``pfs`` (CREATE_CHILD_SA).
    Offers repeat from peer to peer, so answers are cached by the offer's transforms.
    """
    shape = tuple((p.protocol_id, tuple((t.type, t.id, t.attributes) for t in p.transforms))
                  for p in offered)
    key = (int(protocol), id(local), prefer_dh, pfs, shape)  # int: Enum.__hash__ is slow
    hit = _SELECTED.get(key)
    if hit is None or hit[0] is not local:
        if len(_SELECTED) >= 1024:
            _SELECTED.clear()
        hit = _SELECTED[key] = (local, _select(protocol, tuple(offered), tuple(local),
                                                prefer_dh, pfs))
    if hit[1] is None:
        return None
    index, suite = hit[1]
    return offered[index], suite


def _select(protocol: int, offered: tuple[Proposal, ...],
            local: tuple[IkeProposal | ChildProposal, ...],
            prefer_dh: int | None, pfs: bool) -> tuple[int, Suite] | None:
    allowed = _allowed(local)
    is_ike = protocol == ProtocolId.IKE
    for index, prop in enumerate(offered):
        if prop.protocol_id != protocol:
            continue
        by_type: dict[int, list[tuple[int, int | None]]] = {}
        for t in prop.transforms:
            by_type.setdefault(t.type, []).append((t.id, t.key_length))
        if any(tt not in allowed for tt in by_type):
            continue  # a transform type we do not know: cannot accept (§3.3.6)
        chosen: dict[int, tuple[int, int | None]] = {}
        for tt, options in by_type.items():
            ok = [o for o in options if o in allowed[tt]]
            if tt == T.DH and prefer_dh is not None and (prefer_dh, None) in ok:
                ok.insert(0, (prefer_dh, None))
            if not ok:
                break
            chosen[tt] = ok[0]
        else:
            encr = chosen.get(T.ENCR)
            if encr is None:
                continue
            aead = encr[0] in AEAD
            integ = chosen.get(T.INTEG, (IntegId.NONE, None))[0]
            if aead and integ != IntegId.NONE:
                continue
            if not aead and integ == IntegId.NONE:
                continue
            if is_ike and (T.PRF not in chosen or T.DH not in chosen):
                continue
            if not is_ike and not pfs and chosen.get(T.DH, (0,))[0] != DhGroup.NONE:
                continue  # PFS is not possible in IKE_AUTH
            return index, Suite(
                encr=encr[0], encr_key_bits=encr[1], integ=integ,
                prf=chosen.get(T.PRF, (0, None))[0], dh=chosen.get(T.DH, (0, None))[0],
                esn=chosen.get(T.ESN, (Esn.NO, None))[0],
            )
    return None
