//! "Is this transform supported?" for every IANA transform type and id (RFC 7296 §3.3.2), so a
//! host can ask before keying and fall back to its own code instead of catching errors.

use super::integ::integ_sizes;
use super::prf::Prf;

/// Whether ikecp implements transform `id` of `transform_type` with the Key Length attribute
/// `key_length` (bits; `None` when the proposal carries none). ENCR (1): AES-CBC (12) and
/// AES-GCM-16 (20) need 128 or 256, ChaCha20-Poly1305 (28) takes none. PRF (2), INTEG (3)
/// and ESN (5) take none; INTEG 0 (NONE) is what the AEADs pair with. KE (4): the
/// Diffie-Hellman groups of `ikecp.dh` (14, 19, 20, 31).
pub fn transform_supported(transform_type: i64, id: i64, key_length: Option<i64>) -> bool {
    match (transform_type, id, key_length) {
        (1, 12 | 20, Some(128 | 256)) | (1, 28, None) => true,
        (2, _, None) => Prf::from_id(id).is_ok(),
        (3, 0, None) => true,
        (3, _, None) => integ_sizes(id).is_some(),
        (4, 14 | 19 | 20 | 31, None) => true,
        (5, 0 | 1, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SkCipher;

    #[test]
    fn encr_answers_match_what_skcipher_accepts() {
        for id in 0..64 {
            for bits in [
                None,
                Some(0),
                Some(64),
                Some(128),
                Some(192),
                Some(256),
                Some(512),
            ] {
                let octets = usize::try_from(bits.unwrap_or(256) / 8).unwrap_or(0);
                let built = match id {
                    12 => SkCipher::new(id, &vec![0; octets], 12, &[0; 32]).is_ok(),
                    _ => SkCipher::new(id, &vec![0; octets + 4], 0, &[]).is_ok(),
                };
                let asked = transform_supported(1, id, bits);
                // ChaCha20 has one key size and no attribute: "None" means 256 bits.
                assert_eq!(
                    asked,
                    built && (bits.is_none() == (id == 28)),
                    "{id} {bits:?}"
                );
            }
        }
    }

    #[test]
    fn other_types() {
        assert!(transform_supported(2, 5, None) && !transform_supported(2, 5, Some(256)));
        assert!(!transform_supported(2, 1, None));
        assert!(transform_supported(3, 14, None) && !transform_supported(3, 1, None));
        assert!(transform_supported(4, 31, None) && !transform_supported(4, 2, None));
        assert!(transform_supported(5, 1, None) && !transform_supported(5, 2, None));
        assert!(!transform_supported(0, 12, Some(128)) && !transform_supported(6, 0, None));
    }
}
