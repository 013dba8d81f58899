//! SK payload protection for one direction (RFC 7296 §3.14, RFC 5282, RFC 7634).
//!
//! `seal` builds prefix | SK header | IV | ciphertext | ICV; `open` walks the clear payload
//! chain to the SK payload, checks that it ends the datagram, verifies and decrypts. Every
//! keyed failure, including a bad pad length, is the same detail-free [`Error::Integrity`].
//!
//! `seal_fragment` / `open_fragment` do the same for one SKF fragment (RFC 7383 §2.5): its
//! header carries Fragment Number and Total Fragments between the generic header and the IV,
//! and those octets are covered by the ICV (AEAD: part of the associated data).

use core::sync::atomic::{AtomicU64, Ordering};

use aes::{Aes128, Aes128Enc, Aes256, Aes256Enc};
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::AesGcm;
use cbc::cipher::array::Array;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit};
use chacha20poly1305::ChaCha20Poly1305;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

pub(crate) use super::integ::Integ;
use super::Error;

const HEADER_LEN: usize = 28;
const GENERIC_LEN: usize = 4;
const SK: u8 = 46;
const SKF: u8 = 53;
/// Generic header plus Fragment Number and Total Fragments.
const SKF_HEADER_LEN: usize = 8;
pub(crate) const SALT_LEN: usize = 4;
pub(crate) const AEAD_IV: usize = 8;
pub(crate) const AEAD_ICV: usize = 16;
pub(crate) const BLOCK: usize = 16;

pub(crate) const ENCR_AES_CBC: i64 = 12;
pub(crate) const ENCR_AES_GCM_16: i64 = 20;
pub(crate) const ENCR_CHACHA20_POLY1305: i64 = 28;

/// GCM runs AES forwards only (counter mode): an encryption-only key schedule is half the
/// memory of `aes_gcm::Aes256Gcm`'s (240 octets less per AES-256 cipher, two per IKE SA).
type Aes128Gcm = AesGcm<Aes128Enc, U12>;
type Aes256Gcm = AesGcm<Aes256Enc, U12>;

pub(crate) enum Aead {
    Aes128Gcm(Box<Aes128Gcm>),
    Aes256Gcm(Box<Aes256Gcm>),
    ChaCha20Poly1305(Box<ChaCha20Poly1305>),
}

pub(crate) enum CbcKey {
    Aes128(Box<Aes128>),
    Aes256(Box<Aes256>),
}

pub(crate) enum Kind {
    Aead { cipher: Aead, salt: [u8; SALT_LEN] },
    Cbc { key: CbcKey, integ: Box<Integ> },
}

impl Kind {
    /// Key a transform (shared by SK and ESP): the AEADs take the 4-octet salt at the end of
    /// `encr_key` and no integrity algorithm; AES-CBC needs one. Returns (kind, ICV length).
    pub(crate) fn new(
        encr_id: i64,
        encr_key: &[u8],
        integ_id: i64,
        integ_key: &[u8],
    ) -> Result<(Self, usize), Error> {
        match encr_id {
            ENCR_AES_GCM_16 | ENCR_CHACHA20_POLY1305 => {
                if integ_id != 0 || !integ_key.is_empty() {
                    return Err(Error::Crypto("AEAD transforms take no integrity algorithm"));
                }
                let (cipher, salt) = aead_key(encr_id, encr_key)?;
                Ok((Kind::Aead { cipher, salt }, AEAD_ICV))
            }
            ENCR_AES_CBC => {
                let key = cbc_key(encr_key)?;
                let (integ, icv) = Integ::new(integ_id, integ_key)?;
                Ok((
                    Kind::Cbc {
                        key,
                        integ: Box::new(integ),
                    },
                    icv,
                ))
            }
            _ => Err(Error::Crypto("unsupported encryption transform")),
        }
    }
}

impl Drop for Kind {
    /// The cipher crates wipe their own key schedules; the AEAD salt is key material too.
    fn drop(&mut self) {
        if let Kind::Aead { salt, .. } = self {
            salt.zeroize();
        }
    }
}

/// A verified, decrypted SK payload: what `SkCipher::open_sk` found in a datagram.
pub struct Opened {
    /// The SK payload's Next Payload: the type of the first inner payload.
    pub first_inner: u8,
    /// Where the SK payload's generic header starts in the datagram.
    pub sk_offset: usize,
    /// Where its IV sits in the datagram.
    pub iv: core::ops::Range<usize>,
    /// The inner payload chain, padding removed; wiped (whole capacity) on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// One opened SKF fragment (RFC 7383 §2.5); `next_payload` is non-zero only in fragment 1.
#[derive(Debug, PartialEq)]
pub struct Fragment {
    pub next_payload: u8,
    pub number: u16,
    pub total: u16,
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// One direction's keyed SK protection; keys are expanded once and wiped on drop.
pub struct SkCipher {
    kind: Kind,
    iv_size: usize,
    icv_size: usize,
    /// AEAD IVs: a 64-bit counter from a random start; `used` stops it before it wraps.
    iv_start: u64,
    iv_used: AtomicU64,
}

impl SkCipher {
    /// Key the transform; `encr_key` carries the 4-octet salt at its end for the AEADs.
    pub fn new(
        encr_id: i64,
        encr_key: &[u8],
        integ_id: i64,
        integ_key: &[u8],
    ) -> Result<Self, Error> {
        let (kind, icv_size) = Kind::new(encr_id, encr_key, integ_id, integ_key)?;
        let (iv_size, iv_start) = match kind {
            Kind::Aead { .. } => (
                AEAD_IV,
                getrandom::u64().map_err(|_| Error::Crypto("no system randomness"))?,
            ),
            Kind::Cbc { .. } => (BLOCK, 0),
        };
        Ok(SkCipher {
            kind,
            iv_size,
            icv_size,
            iv_start,
            iv_used: AtomicU64::new(0),
        })
    }

    pub fn iv_size(&self) -> usize {
        self.iv_size
    }

    pub fn icv_size(&self) -> usize {
        self.icv_size
    }

    fn fresh_iv(&self) -> Result<Vec<u8>, Error> {
        match self.kind {
            Kind::Aead { .. } => {
                let used = self
                    .iv_used
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
                    .map_err(|_| Error::Crypto("IV space exhausted; rekey the SA"))?;
                Ok(self.iv_start.wrapping_add(used).to_be_bytes().to_vec())
            }
            Kind::Cbc { .. } => {
                let mut iv = vec![0u8; BLOCK];
                getrandom::fill(&mut iv).map_err(|_| Error::Crypto("no system randomness"))?;
                Ok(iv)
            }
        }
    }

    /// prefix (length field and the Next Payload naming SK rewritten) | SK header | IV |
    /// encrypted body | ICV. The prefix is the 28-octet header and any clear payloads.
    pub fn seal(
        &self,
        prefix: &[u8],
        next_payload: i64,
        plaintext: &[u8],
        iv: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        self.seal_payload(prefix, next_payload, SK, &[], plaintext, iv)
    }

    /// prefix (length field and the Next Payload naming SKF rewritten) | SKF header | IV |
    /// encrypted body | ICV: fragment `number` of `total` (RFC 7383 §2.5),
    /// `1 <= number <= total <= 65535`.
    pub fn seal_fragment(
        &self,
        prefix: &[u8],
        next_payload: i64,
        number: i64,
        total: i64,
        plaintext: &[u8],
        iv: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let bad = Error::Crypto("fragment number must be 1..total, total at most 65535");
        let n = u16::try_from(number).map_err(|_| bad.clone())?;
        let t = u16::try_from(total).map_err(|_| bad.clone())?;
        if n == 0 || n > t {
            return Err(bad);
        }
        let [n0, n1] = n.to_be_bytes();
        let [t0, t1] = t.to_be_bytes();
        self.seal_payload(prefix, next_payload, SKF, &[n0, n1, t0, t1], plaintext, iv)
    }

    /// `kind` is SK or SKF; `extra` is what follows its generic header before the IV (SKF:
    /// number and total).
    fn seal_payload(
        &self,
        prefix: &[u8],
        next_payload: i64,
        kind: u8,
        extra: &[u8],
        plaintext: &[u8],
        iv: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        if prefix.len() < HEADER_LEN {
            return Err(Error::Crypto(
                "prefix must start with the 28-octet IKE header",
            ));
        }
        let next_payload = u8::try_from(next_payload)
            .map_err(|_| Error::Crypto("next payload must fit one octet"))?;
        let iv = match iv {
            Some(iv) if iv.len() == self.iv_size => iv.to_vec(),
            Some(_) => return Err(Error::Crypto("wrong IV length")),
            None => self.fresh_iv()?,
        };
        let body_len = match self.kind {
            Kind::Aead { .. } => plaintext.len() + 1,
            Kind::Cbc { .. } => (plaintext.len() + 1).div_ceil(BLOCK) * BLOCK,
        };
        let sk_len = GENERIC_LEN + extra.len() + self.iv_size + body_len + self.icv_size;
        let sk_len16 = u16::try_from(sk_len).map_err(|_| Error::Crypto("SK payload too long"))?;
        let total = prefix.len() + sk_len;
        let total32 = u32::try_from(total).map_err(|_| Error::Crypto("message too long"))?;

        let points_at_sk = last_clear_payload(prefix)?.unwrap_or(16);

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&prefix[..24]);
        out.extend_from_slice(&total32.to_be_bytes());
        out.extend_from_slice(&prefix[HEADER_LEN..]);
        if let Some(next) = out.get_mut(points_at_sk) {
            *next = kind;
        }
        out.extend_from_slice(&[next_payload, 0]);
        out.extend_from_slice(&sk_len16.to_be_bytes());
        out.extend_from_slice(extra);
        let aad_end = out.len();
        out.extend_from_slice(&iv);
        let body_start = out.len();
        out.extend_from_slice(plaintext);
        let pad_len = body_len - plaintext.len() - 1;
        out.resize(out.len() + pad_len, 0);
        // pad_len < BLOCK, so it always fits the pad-length octet.
        out.push(u8::try_from(pad_len).map_err(|_| Error::Crypto("padding"))?);

        match &self.kind {
            Kind::Aead { cipher, salt } => {
                let nonce = nonce(salt, &iv);
                let (head, body) = out.split_at_mut(body_start);
                let aad = head.get(..aad_end).ok_or(Error::Crypto("layout"))?;
                let tag = aead_seal(cipher, &nonce, aad, body)?;
                out.extend_from_slice(&tag);
            }
            Kind::Cbc { key, integ } => {
                let body = out.get_mut(body_start..).ok_or(Error::Crypto("layout"))?;
                cbc_encrypt(key, &iv, body)?;
                let icv = integ.mac(&out);
                out.extend_from_slice(icv.get(..self.icv_size).ok_or(Error::Crypto("icv"))?);
            }
        }
        Ok(out)
    }

    /// Verify and decrypt the SK payload that ends `data`: (first inner type, plaintext).
    /// The plaintext buffer is wiped (whole capacity) when the caller drops it.
    pub fn open(&self, data: &[u8]) -> Result<(u8, Zeroizing<Vec<u8>>), Error> {
        self.open_sk(data).map(|o| (o.first_inner, o.plaintext))
    }

    /// `open`, also saying where the SK payload and its IV sit in `data`.
    pub fn open_sk(&self, data: &[u8]) -> Result<Opened, Error> {
        self.open_at(data, find_sk(data)?, GENERIC_LEN, SK)
    }

    /// Verify and decrypt the SKF payload that ends `data` (RFC 7383 §2.5): (Next Payload,
    /// Fragment Number, Total Fragments, plaintext). A number of 0 or above the total is a
    /// parse error, found before any key is used.
    pub fn open_fragment(&self, data: &[u8]) -> Result<Fragment, Error> {
        let off = find_last(data, SKF)?;
        let bad = |what| Error::Parse {
            what,
            offset: off,
            payload: Some(SKF),
        };
        let (Some(number), Some(total)) = (be16(data, off + 4), be16(data, off + 6)) else {
            return Err(bad("bad SKF payload length"));
        };
        let number = u16::try_from(number).map_err(|_| bad("bad fragment number"))?;
        let total = u16::try_from(total).map_err(|_| bad("bad fragment number"))?;
        if number == 0 || number > total {
            return Err(bad("bad fragment number"));
        }
        let opened = self.open_at(data, off, SKF_HEADER_LEN, SKF)?;
        Ok(Fragment {
            next_payload: opened.first_inner,
            number,
            total,
            plaintext: opened.plaintext,
        })
    }

    /// Verify and decrypt the encrypted payload of type `kind` (SK or SKF) at `sk_off`, whose
    /// IV starts `header_len` octets in.
    fn open_at(
        &self,
        data: &[u8],
        sk_off: usize,
        header_len: usize,
        kind: u8,
    ) -> Result<Opened, Error> {
        let short = Error::Parse {
            what: if kind == SK {
                "bad SK payload length"
            } else {
                "bad SKF payload length"
            },
            offset: sk_off,
            payload: Some(kind),
        };
        let first_inner = *data.get(sk_off).ok_or(short.clone())?;
        let iv_start = sk_off + header_len;
        let body_start = iv_start + self.iv_size;
        let icv_start = data
            .len()
            .checked_sub(self.icv_size)
            .filter(|&i| i > body_start)
            .ok_or(short.clone())?;
        if matches!(self.kind, Kind::Cbc { .. }) && (icv_start - body_start) % BLOCK != 0 {
            return Err(short);
        }
        let iv = data.get(iv_start..body_start).ok_or(Error::Integrity)?;
        let body = data.get(body_start..icv_start).ok_or(Error::Integrity)?;
        let icv = data.get(icv_start..).ok_or(Error::Integrity)?;
        let mut plain = Zeroizing::new(body.to_vec());
        match &self.kind {
            Kind::Aead { cipher, salt } => {
                let aad = data.get(..iv_start).ok_or(Error::Integrity)?;
                aead_open(cipher, &nonce(salt, iv), aad, &mut plain, icv)?;
            }
            Kind::Cbc { key, integ } => {
                let signed = data.get(..icv_start).ok_or(Error::Integrity)?;
                let mac = integ.mac(signed);
                let expected = mac.get(..self.icv_size).ok_or(Error::Integrity)?;
                if !bool::from(expected.ct_eq(icv)) {
                    return Err(Error::Integrity);
                }
                cbc_decrypt(key, iv, &mut plain)?;
            }
        }
        let pad_len = usize::from(*plain.last().ok_or(Error::Integrity)?);
        let keep = plain
            .len()
            .checked_sub(pad_len + 1)
            .ok_or(Error::Integrity)?;
        plain.truncate(keep);
        Ok(Opened {
            first_inner,
            sk_offset: sk_off,
            iv: iv_start..body_start,
            plaintext: plain,
        })
    }
}

const BAD_ENCR_KEY: Error = Error::Crypto("wrong key length for the encryption transform");

/// An AEAD keyed from `encr_key`, whose last 4 octets are the salt (RFC 5282 §7.1, RFC 7634).
pub(crate) fn aead_key(encr_id: i64, encr_key: &[u8]) -> Result<(Aead, [u8; SALT_LEN]), Error> {
    let split = encr_key.len().checked_sub(SALT_LEN).ok_or(BAD_ENCR_KEY)?;
    let (key, salt) = encr_key.split_at(split);
    let salt: [u8; SALT_LEN] = salt.try_into().map_err(|_| BAD_ENCR_KEY)?;
    let cipher = match (encr_id, key.len()) {
        (ENCR_AES_GCM_16, 16) => Aead::Aes128Gcm(Box::new(
            Aes128Gcm::new_from_slice(key).map_err(|_| BAD_ENCR_KEY)?,
        )),
        (ENCR_AES_GCM_16, 32) => Aead::Aes256Gcm(Box::new(
            Aes256Gcm::new_from_slice(key).map_err(|_| BAD_ENCR_KEY)?,
        )),
        (ENCR_CHACHA20_POLY1305, 32) => Aead::ChaCha20Poly1305(Box::new(
            ChaCha20Poly1305::new_from_slice(key).map_err(|_| BAD_ENCR_KEY)?,
        )),
        (ENCR_AES_GCM_16 | ENCR_CHACHA20_POLY1305, _) => return Err(BAD_ENCR_KEY),
        _ => return Err(Error::Crypto("unsupported encryption transform")),
    };
    Ok((cipher, salt))
}

/// An AES key for CBC (128 or 256 bits).
pub(crate) fn cbc_key(encr_key: &[u8]) -> Result<CbcKey, Error> {
    Ok(match encr_key.len() {
        16 => CbcKey::Aes128(Box::new(
            Aes128::new_from_slice(encr_key).map_err(|_| BAD_ENCR_KEY)?,
        )),
        32 => CbcKey::Aes256(Box::new(
            Aes256::new_from_slice(encr_key).map_err(|_| BAD_ENCR_KEY)?,
        )),
        _ => return Err(BAD_ENCR_KEY),
    })
}

pub(crate) fn nonce(salt: &[u8; SALT_LEN], iv: &[u8]) -> [u8; SALT_LEN + AEAD_IV] {
    let mut n = [0u8; SALT_LEN + AEAD_IV];
    n[..SALT_LEN].copy_from_slice(salt);
    for (dst, src) in n[SALT_LEN..].iter_mut().zip(iv) {
        *dst = *src;
    }
    n
}

pub(crate) fn aead_seal(
    cipher: &Aead,
    nonce: &[u8; 12],
    aad: &[u8],
    body: &mut [u8],
) -> Result<[u8; 16], Error> {
    let n = Array::from(*nonce);
    let tag = match cipher {
        Aead::Aes128Gcm(c) => c.encrypt_inout_detached(&n, aad, body.into()),
        Aead::Aes256Gcm(c) => c.encrypt_inout_detached(&n, aad, body.into()),
        Aead::ChaCha20Poly1305(c) => c.encrypt_inout_detached(&n, aad, body.into()),
    }
    .map_err(|_| Error::Crypto("AEAD input too long"))?;
    Ok(tag.into())
}

pub(crate) fn aead_open(
    cipher: &Aead,
    nonce: &[u8; 12],
    aad: &[u8],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), Error> {
    let n = Array::from(*nonce);
    let tag: [u8; AEAD_ICV] = tag.try_into().map_err(|_| Error::Integrity)?;
    let tag = Array::from(tag);
    match cipher {
        Aead::Aes128Gcm(c) => c.decrypt_inout_detached(&n, aad, body.into(), &tag),
        Aead::Aes256Gcm(c) => c.decrypt_inout_detached(&n, aad, body.into(), &tag),
        Aead::ChaCha20Poly1305(c) => c.decrypt_inout_detached(&n, aad, body.into(), &tag),
    }
    .map_err(|_| Error::Integrity)
}

fn blocks(buf: &mut [u8]) -> Result<&mut [Array<u8, cbc::cipher::consts::U16>], Error> {
    let (blocks, rest) = Array::slice_as_chunks_mut(buf);
    if rest.is_empty() {
        Ok(blocks)
    } else {
        Err(Error::Crypto("CBC body is not whole blocks"))
    }
}

pub(crate) fn cbc_encrypt(key: &CbcKey, iv: &[u8], body: &mut [u8]) -> Result<(), Error> {
    let iv: [u8; BLOCK] = iv
        .try_into()
        .map_err(|_| Error::Crypto("wrong IV length"))?;
    let iv = Array::from(iv);
    let blocks = blocks(body)?;
    match key {
        CbcKey::Aes128(k) => {
            cbc::Encryptor::inner_iv_init((**k).clone(), &iv).encrypt_blocks(blocks)
        }
        CbcKey::Aes256(k) => {
            cbc::Encryptor::inner_iv_init((**k).clone(), &iv).encrypt_blocks(blocks)
        }
    }
    Ok(())
}

pub(crate) fn cbc_decrypt(key: &CbcKey, iv: &[u8], body: &mut [u8]) -> Result<(), Error> {
    let iv: [u8; BLOCK] = iv.try_into().map_err(|_| Error::Integrity)?;
    let iv = Array::from(iv);
    let blocks = blocks(body).map_err(|_| Error::Integrity)?;
    match key {
        CbcKey::Aes128(k) => {
            cbc::Decryptor::inner_iv_init((**k).clone(), &iv).decrypt_blocks(blocks)
        }
        CbcKey::Aes256(k) => {
            cbc::Decryptor::inner_iv_init((**k).clone(), &iv).decrypt_blocks(blocks)
        }
    }
    Ok(())
}

fn be16(data: &[u8], at: usize) -> Option<usize> {
    let b = data.get(at..at + 2)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Offset of the last clear payload in a seal prefix (`None`: the header is all there is), so
/// `seal` can make its Next Payload name SK. The payload lengths must add up to the prefix,
/// and the chain must reach its last payload: a Next Payload of 0, SK or SKF before it would
/// end the chain early for the receiver, and is reported as the codec would see it.
fn last_clear_payload(prefix: &[u8]) -> Result<Option<usize>, Error> {
    let parse = |what, offset, payload| Error::Parse {
        what,
        offset,
        payload,
    };
    let mut ty = prefix.get(16).copied().unwrap_or(0);
    let mut offset = HEADER_LEN;
    let (mut last, mut last_ty) = (None, None);
    while offset < prefix.len() {
        let (Some(&following), Some(length)) = (prefix.get(offset), be16(prefix, offset + 2))
        else {
            return Err(parse("truncated payload", offset, Some(ty)));
        };
        if length < GENERIC_LEN {
            return Err(parse("bad payload length", offset, Some(ty)));
        }
        if offset + length > prefix.len() {
            return Err(parse("truncated payload", offset, Some(ty)));
        }
        if ty == 0 {
            return Err(parse("trailing data", offset, last_ty));
        }
        if ty == SK || ty == SKF {
            return Err(parse("trailing data", offset + length, Some(ty)));
        }
        (last, last_ty) = (Some(offset), Some(ty));
        ty = following;
        offset += length;
    }
    Ok(last)
}

/// Offset of the SK generic header, after checking the chain and that SK ends the datagram.
pub fn find_sk(data: &[u8]) -> Result<usize, Error> {
    find_last(data, SK)
}

/// Offset of the generic header of the encrypted payload `kind` (SK or SKF), after checking
/// the chain and that it ends the datagram. The `what` phrases are the codec's where the
/// fault is the same one.
fn find_last(data: &[u8], kind: u8) -> Result<usize, Error> {
    let parse = |what, offset, payload| Error::Parse {
        what,
        offset,
        payload,
    };
    let header = data
        .get(..HEADER_LEN)
        .ok_or(parse("truncated header", 0, None))?;
    let declared = u32::from_be_bytes([header[24], header[25], header[26], header[27]]);
    if usize::try_from(declared).ok() != Some(data.len()) {
        return Err(parse("length mismatch", 0, None));
    }
    let mut next = header[16];
    let mut offset = HEADER_LEN;
    loop {
        if next == 0 {
            let what = if kind == SK {
                "no SK payload"
            } else {
                "no SKF payload"
            };
            return Err(parse(what, offset, None));
        }
        let (Some(&following), Some(length)) = (data.get(offset), be16(data, offset + 2)) else {
            return Err(parse("truncated payload", offset, Some(next)));
        };
        if length < GENERIC_LEN {
            return Err(parse("bad payload length", offset, Some(next)));
        }
        let end = offset + length;
        if end > data.len() {
            return Err(parse("truncated payload", offset, Some(next)));
        }
        if next == kind {
            if end != data.len() {
                return Err(parse("trailing data", end, Some(kind)));
            }
            return Ok(offset);
        }
        next = following;
        offset = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    #[test]
    fn gcm_test_case_4_through_the_aead_helper() {
        // McGrew & Viega GCM test case 4 (AES-128, 20-octet AAD), salt|IV = cafebabe|facedbad...
        let key = hex("feffe9928665731c6d6a8f9467308308");
        let c = Aead::Aes128Gcm(Box::new(
            Aes128Gcm::new_from_slice(&key).unwrap_or_else(|_| unreachable!()),
        ));
        let nonce = nonce(&[0xca, 0xfe, 0xba, 0xbe], &hex("facedbaddecaf888"));
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let mut body = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let tag = aead_seal(&c, &nonce, &aad, &mut body);
        assert_eq!(
            body,
            hex(concat!(
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
                "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
            ))
        );
        assert_eq!(
            tag.map(|t| t.to_vec()),
            Ok(hex("5bc94fbc3221a5db94fae95ae7121a47"))
        );
    }

    #[test]
    fn chacha_rfc8439_through_the_aead_helper() {
        // RFC 8439 §2.8.2.
        let key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let c = Aead::ChaCha20Poly1305(Box::new(
            ChaCha20Poly1305::new_from_slice(&key).unwrap_or_else(|_| unreachable!()),
        ));
        let nonce = nonce(&[7, 0, 0, 0], &hex("4041424344454647"));
        let mut body = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let tag = aead_seal(&c, &nonce, &hex("50515253c0c1c2c3c4c5c6c7"), &mut body);
        assert_eq!(&body[..16], &hex("d31a8d34648e60db7b86afbc53ef7ec2")[..]);
        assert_eq!(
            tag.map(|t| t.to_vec()),
            Ok(hex("1ae10b594f09e26a7e902ecbd0600691"))
        );
    }

    fn header() -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[16] = SK;
        h[17] = 0x20;
        h[18] = 35;
        h
    }

    #[test]
    fn round_trip_and_tamper_every_transform() {
        let cases: [(i64, usize, i64, usize); 5] = [
            (20, 20, 0, 0),
            (20, 36, 0, 0),
            (28, 36, 0, 0),
            (12, 16, 2, 20),
            (12, 32, 14, 64),
        ];
        for (e, ek, i, ik) in cases {
            let c = SkCipher::new(e, &vec![7u8; ek], i, &vec![9u8; ik])
                .unwrap_or_else(|_| unreachable!());
            let out = c
                .seal(&header(), 35, b"hello world", None)
                .unwrap_or_default();
            assert_eq!(
                c.open(&out).map(|(t, p)| (t, p.to_vec())),
                Ok((35, b"hello world".to_vec()))
            );
            for k in 0..out.len() {
                let mut bad = out.clone();
                bad[k] ^= 0x80;
                assert!(c.open(&bad).is_err());
            }
            for n in 0..out.len() {
                assert!(c.open(&out[..n]).is_err());
            }
        }
    }

    #[test]
    fn fragment_round_trip_covers_number_and_total() {
        for (e, ek, i, ik) in [(20, 36, 0, 0), (12, 16, 12, 32)] {
            let c = SkCipher::new(e, &vec![7u8; ek], i, &vec![9u8; ik])
                .unwrap_or_else(|_| unreachable!());
            let mut head = header();
            head[16] = SKF;
            let out = c
                .seal_fragment(&head, 37, 2, 3, b"part two", None)
                .unwrap_or_default();
            assert_eq!(
                out.get(HEADER_LEN + 4..HEADER_LEN + 8),
                Some(&[0, 2, 0, 3][..])
            );
            assert_eq!(
                c.open_fragment(&out).map(|f| (
                    f.next_payload,
                    f.number,
                    f.total,
                    f.plaintext.to_vec()
                )),
                Ok((37, 2, 3, b"part two".to_vec()))
            );
            // Every octet, the fragment fields included, is under the ICV.
            for k in 0..out.len() {
                let mut bad = out.clone();
                bad[k] ^= 0x01;
                assert!(c.open_fragment(&bad).is_err());
            }
            // An SKF message is not an SK message, and the reverse.
            assert!(c.open(&out).is_err());
            let sk = c.seal(&header(), 37, b"whole", None).unwrap_or_default();
            assert!(c.open_fragment(&sk).is_err());
        }
    }

    #[test]
    fn fragment_numbers_are_checked() {
        let c = SkCipher::new(20, &[7u8; 36], 0, &[]).unwrap_or_else(|_| unreachable!());
        let mut head = header();
        head[16] = SKF;
        for (n, t) in [(0, 1), (3, 2), (1, 0), (1, 65536), (-1, 2)] {
            assert!(c.seal_fragment(&head, 0, n, t, b"x", None).is_err());
        }
        let mut out = c
            .seal_fragment(&head, 0, 1, 1, b"x", None)
            .unwrap_or_default();
        out[HEADER_LEN + 5] = 2; // number 2 of total 1: refused before the ICV is checked
        assert_eq!(
            c.open_fragment(&out).map(|_| ()),
            Err(Error::Parse {
                what: "bad fragment number",
                offset: HEADER_LEN,
                payload: Some(SKF)
            })
        );
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(SkCipher::new(20, &[0; 16], 0, &[]).is_err());
        assert!(SkCipher::new(20, &[0; 36], 12, &[0; 32]).is_err());
        assert!(SkCipher::new(12, &[0; 16], 12, &[0; 31]).is_err());
        assert!(SkCipher::new(3, &[0; 24], 2, &[0; 20]).is_err());
    }
}
