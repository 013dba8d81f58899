"""Placeholder: replaced by the crypto work (issue 2)."""


def _todo(*_a, **_k):
    raise NotImplementedError("reference crypto not written yet")


SkCipher = child_keymat = ike_keys = nat_detection_hash = prf = prf_plus = _todo
psk_auth = rekey_skeyseed = signed_octets = skeyseed = _todo
