"""IKE SA key schedule (RFC 7296 §2.14) and the two SK ciphers built from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sa import IkeSa


def derive_ike_keys(sa: IkeSa, shared_secret: bytes, sk_d_old: bytes | None = None) -> None:
    """Set SK_d, SK_pi, SK_pr and the inbound/outbound SK ciphers on ``sa``; with
    ``sk_d_old`` for an IKE SA made by rekeying (§2.18), with the old SA's prf."""
    b, s = sa.backend, sa.suite
    if sk_d_old is None:
        seed = b.skeyseed(s.prf, sa.nonce_i, sa.nonce_r, shared_secret)
    else:
        seed = b.rekey_skeyseed(s.prf, sk_d_old, shared_secret, sa.nonce_i, sa.nonce_r)
    sk_d, sk_ai, sk_ar, sk_ei, sk_er, sk_pi, sk_pr = b.ike_keys(
        s.prf, seed, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r, s.encr_key_len,
        s.integ_key_len)
    to_r = b.SkCipher(s.encr, sk_ei, s.integ, sk_ai)
    to_i = b.SkCipher(s.encr, sk_er, s.integ, sk_ar)
    sa.sk_d, sa.sk_pi, sa.sk_pr = sk_d, sk_pi, sk_pr
    sa.cipher_out, sa.cipher_in = (to_r, to_i) if sa.is_initiator else (to_i, to_r)
    # Kept only for an explicit key log (``Settings.keep_keys``, ``ikecp.keylog``), never
    # logged; otherwise these keys live only inside the two ciphers.
    if sa.settings.keep_keys:
        sa.key_material = (sk_ei, sk_er, sk_ai, sk_ar)
