//! The HMAC prfs, prf+ and everything derived from them: SKEYSEED, the IKE SA keys, CHILD SA
//! KEYMAT and the AUTH octets (RFC 7296 §2.13-2.18, RFC 4868).

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::Error;

/// A supported PRF transform (IANA "Transform Type 2").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prf {
    HmacSha1,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Prf {
    /// The transform for an IANA PRF id; anything else is unsupported.
    pub fn from_id(id: i64) -> Result<Self, Error> {
        match id {
            2 => Ok(Prf::HmacSha1),
            5 => Ok(Prf::HmacSha256),
            6 => Ok(Prf::HmacSha384),
            7 => Ok(Prf::HmacSha512),
            _ => Err(Error::Crypto("unsupported PRF transform")),
        }
    }

    /// Output length, which is also the preferred key length for an HMAC prf.
    pub fn output_len(self) -> usize {
        match self {
            Prf::HmacSha1 => 20,
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }

    /// The keyed prf, ready to be cloned once per block.
    fn keyed(self, key: &[u8]) -> Result<Keyed, Error> {
        let bad = |_| Error::Crypto("HMAC key rejected");
        Ok(match self {
            Prf::HmacSha1 => Keyed::Sha1(Hmac::new_from_slice(key).map_err(bad)?),
            Prf::HmacSha256 => Keyed::Sha256(Hmac::new_from_slice(key).map_err(bad)?),
            Prf::HmacSha384 => Keyed::Sha384(Hmac::new_from_slice(key).map_err(bad)?),
            Prf::HmacSha512 => Keyed::Sha512(Hmac::new_from_slice(key).map_err(bad)?),
        })
    }
}

/// An HMAC with its key already absorbed (inner and outer pads hashed once).
#[derive(Clone)]
enum Keyed {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl Keyed {
    /// prf over the concatenation of `parts`, appended to `out`.
    fn mac_into(&self, parts: &[&[u8]], out: &mut Vec<u8>) {
        fn run<M: Mac + Clone>(m: &M, parts: &[&[u8]], out: &mut Vec<u8>) {
            let mut m = m.clone();
            for p in parts {
                m.update(p);
            }
            out.extend_from_slice(&m.finalize().into_bytes());
        }
        match self {
            Keyed::Sha1(m) => run(m, parts, out),
            Keyed::Sha256(m) => run(m, parts, out),
            Keyed::Sha384(m) => run(m, parts, out),
            Keyed::Sha512(m) => run(m, parts, out),
        }
    }
}

/// prf(key, data).
pub fn prf(prf: Prf, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(prf.output_len());
    prf.keyed(key)?.mac_into(&[data], &mut out);
    Ok(out)
}

fn prf_parts(prf: Prf, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(prf.output_len());
    prf.keyed(key)?.mac_into(parts, &mut out);
    Ok(out)
}

/// prf+ (§2.13) over the concatenation of `seed` parts; at most 255 blocks.
fn prf_plus_parts(prf: Prf, key: &[u8], seed: &[&[u8]], length: i64) -> Result<Vec<u8>, Error> {
    let length = usize::try_from(length).map_err(|_| Error::Crypto("prf+ length is negative"))?;
    let block = prf.output_len();
    if length > 255 * block {
        return Err(Error::Crypto("prf+ would need more than 255 iterations"));
    }
    let keyed = prf.keyed(key)?;
    let blocks = length.div_ceil(block);
    let mut out = Vec::with_capacity(blocks * block);
    for n in 1..=blocks {
        let counter = [u8::try_from(n).map_err(|_| Error::Crypto("prf+ counter overflow"))?];
        let start = out.len();
        let previous = Zeroizing::new(out[start.saturating_sub(block)..start].to_vec());
        let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
        parts.push(&previous);
        parts.extend_from_slice(seed);
        parts.push(&counter);
        keyed.mac_into(&parts, &mut out);
    }
    out.truncate(length);
    Ok(out)
}

/// prf+(K, S) of RFC 7296 §2.13.
pub fn prf_plus(prf: Prf, key: &[u8], seed: &[u8], length: i64) -> Result<Vec<u8>, Error> {
    prf_plus_parts(prf, key, &[seed], length)
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).
pub fn skeyseed(prf: Prf, nonce_i: &[u8], nonce_r: &[u8], shared: &[u8]) -> Result<Vec<u8>, Error> {
    let key = Zeroizing::new([nonce_i, nonce_r].concat());
    prf_parts(prf, &key, &[shared])
}

/// SKEYSEED of a rekeyed IKE SA = prf(SK_d (old), g^ir (new) | Ni | Nr) (§2.18).
pub fn rekey_skeyseed(
    prf: Prf,
    sk_d_old: &[u8],
    shared: &[u8],
    nonce_i: &[u8],
    nonce_r: &[u8],
) -> Result<Vec<u8>, Error> {
    prf_parts(prf, sk_d_old, &[shared, nonce_i, nonce_r])
}

/// (SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr) = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
#[allow(clippy::too_many_arguments)]
pub fn ike_keys(
    prf: Prf,
    skeyseed: &[u8],
    nonce_i: &[u8],
    nonce_r: &[u8],
    spi_i: &[u8],
    spi_r: &[u8],
    encr_key_len: i64,
    integ_key_len: i64,
) -> Result<[Vec<u8>; 7], Error> {
    if spi_i.len() != 8 || spi_r.len() != 8 {
        return Err(Error::Crypto("IKE SPIs must be 8 octets"));
    }
    let size = |n: i64| usize::try_from(n).map_err(|_| Error::Crypto("negative key length"));
    let (e, a, p) = (size(encr_key_len)?, size(integ_key_len)?, prf.output_len());
    let sizes = [p, a, a, e, e, p, p];
    let total = sizes
        .iter()
        .try_fold(0usize, |acc, s| acc.checked_add(*s))
        .and_then(|t| i64::try_from(t).ok())
        .ok_or(Error::Crypto("key lengths too large"))?;
    let stream = Zeroizing::new(prf_plus_parts(
        prf,
        skeyseed,
        &[nonce_i, nonce_r, spi_i, spi_r],
        total,
    )?);
    let mut keys: [Vec<u8>; 7] = Default::default();
    let mut pos = 0;
    for (key, size) in keys.iter_mut().zip(sizes) {
        *key = stream
            .get(pos..pos + size)
            .ok_or(Error::Crypto("prf+ stream too short"))?
            .to_vec();
        pos += size;
    }
    Ok(keys)
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17).
pub fn child_keymat(
    prf: Prf,
    sk_d: &[u8],
    nonce_i: &[u8],
    nonce_r: &[u8],
    length: i64,
    shared: &[u8],
) -> Result<Vec<u8>, Error> {
    prf_plus_parts(prf, sk_d, &[shared, nonce_i, nonce_r], length)
}

/// message | nonce | prf(SK_p, RestOfIDPayload) (§2.15).
pub fn signed_octets(
    prf: Prf,
    message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id_type: i64,
    id_data: &[u8],
) -> Result<Vec<u8>, Error> {
    let id_type = u8::try_from(id_type).map_err(|_| Error::Crypto("ID type must fit one octet"))?;
    let mut out = Vec::with_capacity(message.len() + nonce.len() + prf.output_len());
    out.extend_from_slice(message);
    out.extend_from_slice(nonce);
    prf.keyed(sk_p)?
        .mac_into(&[&[id_type, 0, 0, 0], id_data], &mut out);
    Ok(out)
}

const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// AUTH data for SHARED_KEY_MIC: prf(prf(psk, "Key Pad for IKEv2"), signed octets) (§2.15).
pub fn psk_auth(prf: Prf, psk: &[u8], signed_octets: &[u8]) -> Result<Vec<u8>, Error> {
    let inner = Zeroizing::new(prf_parts(prf, psk, &[KEY_PAD])?);
    prf_parts(prf, &inner, &[signed_octets])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let data = b"what do ya want for nothing?";
        assert_eq!(
            prf(Prf::HmacSha256, b"Jefe", data),
            Ok(hex(
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
            ))
        );
        assert_eq!(
            prf(Prf::HmacSha512, b"Jefe", data),
            Ok(hex(concat!(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
                "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            )))
        );
        // RFC 2202 §3 test case 2.
        assert_eq!(
            prf(Prf::HmacSha1, b"Jefe", data),
            Ok(hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"))
        );
    }

    #[test]
    fn ikev2_kdf_cavs_sha1() {
        // NIST SP 800-135 IKEv2 KDF component test values as published with libreswan's CAVS
        // driver (SHA-1, DKM 132 octets).
        let gir = hex("4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52");
        let gir_new = hex("863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330");
        let (ni, nr) = (hex("32b50d5f4a3763f3"), hex("9206a04b26564cb1"));
        let (spii, spir) = (hex("34c9e7c188868785"), hex("3ff77d760d2b2199"));
        let seed = skeyseed(Prf::HmacSha1, &ni, &nr, &gir).unwrap_or_default();
        assert_eq!(seed, hex("a9a7b222b59f8f48645f28a1db5b5f5d7479cba7"));
        let keys =
            ike_keys(Prf::HmacSha1, &seed, &ni, &nr, &spii, &spir, 16, 20).unwrap_or_default();
        assert_eq!(
            keys.concat(),
            hex(concat!(
                "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a06276",
                "8b76606f9fa5e992204fc5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b702c979",
                "fa280870d2ed41efa9c549fd11198af1670b143d384bd275c5f594cf266b05ebadca855e4249520a44",
                "1a81157435a7a56cc4"
            ))
        );
        let rekey = rekey_skeyseed(Prf::HmacSha1, &keys[0], &gir_new, &ni, &nr);
        assert_eq!(rekey, Ok(hex("63e81194946ebd05df7df5ebf5d8750056bf1f1d")));
    }

    #[test]
    fn prf_plus_limits() {
        assert_eq!(prf_plus(Prf::HmacSha256, b"k", b"s", 0), Ok(vec![]));
        assert!(prf_plus(Prf::HmacSha256, b"k", b"s", 255 * 32).is_ok());
        assert!(prf_plus(Prf::HmacSha256, b"k", b"s", 255 * 32 + 1).is_err());
        assert!(prf_plus(Prf::HmacSha256, b"k", b"s", -1).is_err());
        assert!(Prf::from_id(1).is_err());
    }
}
