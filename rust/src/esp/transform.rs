//! One ESP packet sealed or opened (RFC 4303 §2, tunnel mode payload): SPI | sequence
//! number | IV | encrypted (payload | padding | pad length | next header) | ICV.
//!
//! AES-GCM-16 (RFC 4106) and ChaCha20-Poly1305 (RFC 7634) authenticate SPI | sequence number
//! (the 64-bit one with ESN, §5 of RFC 4106) as AAD; AES-CBC with HMAC (RFC 3602, RFC 4868)
//! signs the packet and, with ESN, the high half of the sequence number after it (RFC 4303
//! §2.2.1). No state lives here: the sequence number and the replay window belong to the SA.

use aes::cipher::{Array, BlockCipherEncrypt};
use subtle::ConstantTimeEq;

use crate::crypto::sk::{
    aead_open, aead_seal, cbc_decrypt, cbc_encrypt, nonce, CbcKey, Kind, AEAD_ICV, AEAD_IV, BLOCK,
};
use crate::crypto::Error;

/// SPI and sequence number.
pub const HEADER_LEN: usize = 8;
/// The next header value of a dummy packet (RFC 4303 §2.6): dropped on receipt.
pub const NEXT_HEADER_DUMMY: u8 = 59;
/// Next header values of a tunnel-mode payload.
pub const NEXT_HEADER_IPV4: u8 = 4;
pub const NEXT_HEADER_IPV6: u8 = 41;

const AEAD_ALIGN: usize = 4;

/// What an opened packet carried: its next header and where the payload lies in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub next_header: u8,
    pub payload: core::ops::Range<usize>,
}

/// One direction of one ESP SA's keyed transform.
pub struct EspTransform {
    kind: Kind,
    iv_size: usize,
    icv_size: usize,
    align: usize,
}

fn truncated(offset: usize) -> Error {
    Error::Parse {
        what: "truncated ESP packet",
        offset,
        payload: None,
    }
}

impl EspTransform {
    /// Same transform ids and key layout as `SkCipher` (AEAD keys end with the salt).
    pub fn new(
        encr_id: i64,
        encr_key: &[u8],
        integ_id: i64,
        integ_key: &[u8],
    ) -> Result<Self, Error> {
        let (kind, icv_size) = Kind::new(encr_id, encr_key, integ_id, integ_key)?;
        let (iv_size, align) = match kind {
            Kind::Aead { .. } => (AEAD_IV, AEAD_ALIGN),
            Kind::Cbc { .. } => (BLOCK, BLOCK),
        };
        Ok(Self {
            kind,
            iv_size,
            icv_size,
            align,
        })
    }

    pub fn iv_size(&self) -> usize {
        self.iv_size
    }

    pub fn icv_size(&self) -> usize {
        self.icv_size
    }

    /// Octets a payload of `len` grows by when sealed.
    pub fn overhead(&self, len: usize) -> usize {
        HEADER_LEN + self.iv_size + self.pad_len(len) + 2 + self.icv_size
    }

    fn pad_len(&self, len: usize) -> usize {
        (self.align - (len + 2) % self.align) % self.align
    }

    /// The IV for `seq` when the caller gives none. AEADs use the 64-bit sequence number,
    /// unique per SA (RFC 4106 §3.1 only asks for uniqueness under a key). CBC needs an
    /// unpredictable IV (RFC 3602 §2.1): the block cipher under the SA key applied to a nonce
    /// made of SPI and sequence number (NIST SP 800-38A, Appendix C), so no system call per
    /// packet.
    fn default_iv(&self, spi: u32, seq: u64, out: &mut [u8]) {
        match &self.kind {
            Kind::Aead { .. } => out.copy_from_slice(&seq.to_be_bytes()),
            Kind::Cbc { key, .. } => {
                let mut block = [0u8; BLOCK];
                block[..4].copy_from_slice(&spi.to_be_bytes());
                block[8..].copy_from_slice(&seq.to_be_bytes());
                let mut b = Array::from(block);
                match key {
                    CbcKey::Aes128(k) => k.encrypt_block(&mut b),
                    CbcKey::Aes256(k) => k.encrypt_block(&mut b),
                }
                out.copy_from_slice(&b);
            }
        }
    }

    /// Appends the ESP packet carrying `payload` to `out`. `seq` is the full sequence number;
    /// its high half enters the ICV only with `esn`. `iv` (right length) is for test vectors.
    #[allow(clippy::too_many_arguments)]
    pub fn seal_into(
        &self,
        out: &mut Vec<u8>,
        spi: u32,
        seq: u64,
        esn: bool,
        next_header: u8,
        payload: &[u8],
        iv: Option<&[u8]>,
    ) -> Result<(), Error> {
        let base = out.len();
        out.extend_from_slice(&spi.to_be_bytes());
        out.extend_from_slice(&(seq as u32).to_be_bytes());
        let iv_start = out.len();
        out.resize(iv_start + self.iv_size, 0);
        let body_start = out.len();
        match iv {
            Some(v) if v.len() == self.iv_size => out[iv_start..body_start].copy_from_slice(v),
            Some(_) => {
                out.truncate(base);
                return Err(Error::Crypto("wrong IV length"));
            }
            None => self.default_iv(spi, seq, &mut out[iv_start..body_start]),
        }
        out.extend_from_slice(payload);
        let pad = self.pad_len(payload.len());
        // Default padding is 1, 2, 3, ... (RFC 4303 §2.4); pad < 16 fits an octet.
        out.extend((1..=pad).map(|i| i as u8));
        out.push(pad as u8);
        out.push(next_header);
        let seq_hi = (seq >> 32) as u32;
        match &self.kind {
            Kind::Aead { cipher, salt } => {
                let mut aad = [0u8; 12];
                aad[..4].copy_from_slice(&spi.to_be_bytes());
                let aad_len = if esn {
                    aad[4..8].copy_from_slice(&seq_hi.to_be_bytes());
                    aad[8..].copy_from_slice(&(seq as u32).to_be_bytes());
                    12
                } else {
                    aad[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
                    8
                };
                let n = nonce(salt, &out[iv_start..body_start]);
                let tag = aead_seal(cipher, &n, &aad[..aad_len], &mut out[body_start..])?;
                out.extend_from_slice(&tag);
            }
            Kind::Cbc { key, integ } => {
                let (head, body) = out.split_at_mut(body_start);
                cbc_encrypt(key, &head[iv_start..], body)?;
                let signed = &out[base..];
                let mac = if esn {
                    integ.mac_parts(&[signed, &seq_hi.to_be_bytes()])
                } else {
                    integ.mac_parts(&[signed])
                };
                let icv = mac.get(..self.icv_size).ok_or(Error::Crypto("icv"))?;
                out.extend_from_slice(icv);
            }
        }
        Ok(())
    }

    /// Verifies and decrypts the ESP packet in `buf` in place. `seq_hi` is the high half of
    /// the sequence number the receiver infers (with ESN; `None` without). A failed ICV is
    /// the detail-free [`Error::Integrity`]; the padding and its length are checked after.
    pub fn open_in_place(&self, buf: &mut [u8], seq_hi: Option<u32>) -> Result<Opened, Error> {
        let body_start = HEADER_LEN + self.iv_size;
        let icv_start = buf
            .len()
            .checked_sub(self.icv_size)
            .filter(|&i| i >= body_start + 2)
            .ok_or(truncated(buf.len()))?;
        if (icv_start - body_start) % self.align != 0 {
            return Err(Error::Parse {
                what: "ESP payload not aligned to the cipher block",
                offset: body_start,
                payload: None,
            });
        }
        match &self.kind {
            Kind::Aead { cipher, salt } => {
                let mut aad = [0u8; 12];
                aad[..4].copy_from_slice(&buf[..4]);
                let aad_len = match seq_hi {
                    Some(hi) => {
                        aad[4..8].copy_from_slice(&hi.to_be_bytes());
                        aad[8..].copy_from_slice(&buf[4..8]);
                        12
                    }
                    None => {
                        aad[4..8].copy_from_slice(&buf[4..8]);
                        8
                    }
                };
                let n = nonce(salt, &buf[HEADER_LEN..body_start]);
                let (head, tail) = buf.split_at_mut(icv_start);
                let body = &mut head[body_start..];
                let tag = tail.get(..AEAD_ICV).ok_or(Error::Integrity)?;
                aead_open(cipher, &n, &aad[..aad_len], body, tag)?;
            }
            Kind::Cbc { key, integ } => {
                let signed = &buf[..icv_start];
                let mac = match seq_hi {
                    Some(hi) => integ.mac_parts(&[signed, &hi.to_be_bytes()]),
                    None => integ.mac_parts(&[signed]),
                };
                let expected = mac.get(..self.icv_size).ok_or(Error::Integrity)?;
                if !bool::from(expected.ct_eq(&buf[icv_start..])) {
                    return Err(Error::Integrity);
                }
                let (head, body) = buf.split_at_mut(body_start);
                cbc_decrypt(
                    key,
                    &head[HEADER_LEN..],
                    &mut body[..icv_start - body_start],
                )?;
            }
        }
        let next_header = buf[icv_start - 1];
        let pad = usize::from(buf[icv_start - 2]);
        let payload_end = (icv_start - 2)
            .checked_sub(pad)
            .filter(|&e| e >= body_start)
            .ok_or(Error::Parse {
                what: "ESP pad length exceeds the payload",
                offset: icv_start - 2,
                payload: None,
            })?;
        let padding = &buf[payload_end..icv_start - 2];
        if padding.iter().zip(1u8..).any(|(&b, want)| b != want) {
            return Err(Error::Parse {
                what: "ESP padding is not 1, 2, 3, ...",
                offset: payload_end,
                payload: None,
            });
        }
        Ok(Opened {
            next_header,
            payload: body_start..payload_end,
        })
    }
}

/// SPI and low half of the sequence number of a packet long enough to have them.
pub fn header(packet: &[u8]) -> Option<(u32, u32)> {
    let spi = u32::from_be_bytes(*packet.first_chunk::<4>()?);
    let seq = u32::from_be_bytes(*packet.get(4..8)?.first_chunk::<4>()?);
    Some((spi, seq))
}
