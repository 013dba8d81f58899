//! Integrity transforms (RFC 7296 §3.3.2): HMAC-SHA1-96 (RFC 2404) and HMAC-SHA2-256-128 /
//! 384-192 / 512-256 (RFC 4868 §2.1), as `SkCipher` uses them and as standalone calls for a
//! host that computes or checks an ICV itself. Verification compares in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use super::Error;

/// (key length, truncated ICV length) of an integrity transform id, `None` if unsupported.
pub fn integ_sizes(id: i64) -> Option<(usize, usize)> {
    match id {
        2 => Some((20, 12)),
        12 => Some((32, 16)),
        13 => Some((48, 24)),
        14 => Some((64, 32)),
        _ => None,
    }
}

/// A keyed integrity HMAC; `icv` is the truncated length (RFC 2404, RFC 4868 §2.1).
pub(crate) enum Integ {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl Integ {
    pub(crate) fn new(id: i64, key: &[u8]) -> Result<(Self, usize), Error> {
        let (want, icv) =
            integ_sizes(id).ok_or(Error::Crypto("unsupported integrity transform"))?;
        if key.len() != want {
            return Err(Error::Crypto(
                "wrong key length for the integrity transform",
            ));
        }
        let bad = |_| Error::Crypto("HMAC key rejected");
        let mac = match id {
            2 => Integ::Sha1(Hmac::new_from_slice(key).map_err(bad)?),
            12 => Integ::Sha256(Hmac::new_from_slice(key).map_err(bad)?),
            13 => Integ::Sha384(Hmac::new_from_slice(key).map_err(bad)?),
            _ => Integ::Sha512(Hmac::new_from_slice(key).map_err(bad)?),
        };
        Ok((mac, icv))
    }

    /// The untruncated MAC of `data`.
    pub(crate) fn mac(&self, data: &[u8]) -> Vec<u8> {
        self.mac_parts(&[data])
    }

    /// The untruncated MAC of the concatenation of `parts` (ESP with ESN signs the packet
    /// and then the high half of the sequence number, RFC 4303 §2.2.1).
    pub(crate) fn mac_parts(&self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + Clone>(m: &M, parts: &[&[u8]]) -> Vec<u8> {
            let mut m = m.clone();
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Integ::Sha1(m) => run(m, parts),
            Integ::Sha256(m) => run(m, parts),
            Integ::Sha384(m) => run(m, parts),
            Integ::Sha512(m) => run(m, parts),
        }
    }
}

/// The truncated ICV of `data` under integrity transform `id` keyed with `key`.
pub fn integ_compute(id: i64, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let (integ, icv) = Integ::new(id, key)?;
    let mut mac = integ.mac(data);
    mac.truncate(icv);
    Ok(mac)
}

/// Whether `icv` is the ICV of `data`; the comparison takes the same time wherever the first
/// difference is (a wrong length is public and fails at once).
pub fn integ_verify(id: i64, key: &[u8], data: &[u8], icv: &[u8]) -> Result<bool, Error> {
    let expected = integ_compute(id, key, data)?;
    Ok(expected.len() == icv.len() && bool::from(expected.ct_eq(icv)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    #[test]
    fn rfc4868_hmac_sha256_128_test_case_2() {
        // RFC 4868 §2.7.2.1, AUTH256-2: key "Jefe" x 8, HMAC-SHA-256-128.
        let key = hex("4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665");
        let want = hex("167f9285 88c5cc2e ef8e3093 caa0e87c");
        let got = integ_compute(12, &key, b"what do ya want for nothing?");
        assert_eq!(got, Ok(want.clone()));
        assert_eq!(
            integ_verify(12, &key, b"what do ya want for nothing?", &want),
            Ok(true)
        );
        let mut bad = want.clone();
        bad[15] ^= 1;
        assert_eq!(
            integ_verify(12, &key, b"what do ya want for nothing?", &bad),
            Ok(false)
        );
        assert_eq!(
            integ_verify(12, &key, b"what do ya want for nothing?", &want[..15]),
            Ok(false)
        );
    }

    #[test]
    fn strict_ids_and_key_lengths() {
        assert!(integ_compute(1, &[0; 16], b"").is_err());
        assert!(integ_compute(12, &[0; 31], b"").is_err());
        for (id, (klen, icv)) in [2, 12, 13, 14].map(|i| (i, integ_sizes(i).unwrap_or((0, 0)))) {
            assert_eq!(
                integ_compute(id, &vec![1; klen], b"abc").map(|m| m.len()),
                Ok(icv)
            );
        }
    }
}
