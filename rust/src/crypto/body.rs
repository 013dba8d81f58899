//! The SK payload body alone (RFC 7296 §3.14, RFC 5282, RFC 7634), for a host that lays out
//! its own datagram: encrypt `plaintext | padding | pad length` under (encr id, key, IV, AAD)
//! and the inverse. For the AEADs the body carries the 16-octet ICV at its end and `aad` is
//! what the host authenticates (header through the SK generic header); AES-CBC takes no AAD,
//! its ICV is the integrity transform's over the whole datagram (`integ_compute`).

use zeroize::Zeroizing;

use super::sk::{
    aead_key, aead_open, aead_seal, cbc_decrypt, cbc_encrypt, cbc_key, nonce, AEAD_ICV, AEAD_IV,
    BLOCK, ENCR_AES_CBC, ENCR_AES_GCM_16, ENCR_CHACHA20_POLY1305,
};
use super::Error;

fn check_iv(iv: &[u8], want: usize) -> Result<(), Error> {
    if iv.len() == want {
        Ok(())
    } else {
        Err(Error::Crypto("wrong IV length"))
    }
}

fn cbc_no_aad(aad: &[u8]) -> Result<(), Error> {
    if aad.is_empty() {
        Ok(())
    } else {
        Err(Error::Crypto(
            "AES-CBC takes no AAD: its ICV covers the datagram (integ_compute)",
        ))
    }
}

/// The encrypted SK body: `plaintext` padded as RFC 7296 §3.14 asks (AEAD: no padding octets,
/// CBC: zeros up to the block), pad length octet, encrypted; AEADs append their ICV.
pub fn encrypt_body(
    encr_id: i64,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    match encr_id {
        ENCR_AES_GCM_16 | ENCR_CHACHA20_POLY1305 => {
            let (cipher, salt) = aead_key(encr_id, key)?;
            check_iv(iv, AEAD_IV)?;
            let mut body = Vec::with_capacity(plaintext.len() + 1 + AEAD_ICV);
            body.extend_from_slice(plaintext);
            body.push(0);
            let tag = aead_seal(&cipher, &nonce(&salt, iv), aad, &mut body)?;
            body.extend_from_slice(&tag);
            Ok(body)
        }
        ENCR_AES_CBC => {
            let key = cbc_key(key)?;
            check_iv(iv, BLOCK)?;
            cbc_no_aad(aad)?;
            let len = (plaintext.len() + 1).div_ceil(BLOCK) * BLOCK;
            let pad = len - plaintext.len() - 1;
            let mut body = Vec::with_capacity(len);
            body.extend_from_slice(plaintext);
            body.resize(len - 1, 0);
            body.push(u8::try_from(pad).map_err(|_| Error::Crypto("padding"))?);
            cbc_encrypt(&key, iv, &mut body)?;
            Ok(body)
        }
        _ => Err(Error::Crypto("unsupported encryption transform")),
    }
}

/// The plaintext of an SK body, padding removed. Argument faults are `Error::Crypto`; a body
/// that does not verify or decrypt to a valid pad length is the detail-free `Error::Integrity`.
pub fn decrypt_body(
    encr_id: i64,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut plain = match encr_id {
        ENCR_AES_GCM_16 | ENCR_CHACHA20_POLY1305 => {
            let (cipher, salt) = aead_key(encr_id, key)?;
            check_iv(iv, AEAD_IV)?;
            let split = body.len().checked_sub(AEAD_ICV).ok_or(Error::Integrity)?;
            let (ciphertext, tag) = body.split_at(split);
            let mut plain = Zeroizing::new(ciphertext.to_vec());
            aead_open(&cipher, &nonce(&salt, iv), aad, &mut plain, tag)?;
            plain
        }
        ENCR_AES_CBC => {
            let key = cbc_key(key)?;
            check_iv(iv, BLOCK)?;
            cbc_no_aad(aad)?;
            let mut plain = Zeroizing::new(body.to_vec());
            cbc_decrypt(&key, iv, &mut plain)?;
            plain
        }
        _ => return Err(Error::Crypto("unsupported encryption transform")),
    };
    let pad = usize::from(*plain.last().ok_or(Error::Integrity)?);
    let keep = plain.len().checked_sub(pad + 1).ok_or(Error::Integrity)?;
    plain.truncate(keep);
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SkCipher;

    #[test]
    fn body_matches_what_skcipher_puts_on_the_wire() {
        // The body primitive and SkCipher must agree byte for byte: same key, IV, AAD.
        let mut header = vec![0u8; 28];
        header[17] = 0x20;
        for (encr, klen, integ, ilen, ivlen) in
            [(20, 36, 0, 0, 8), (28, 36, 0, 0, 8), (12, 32, 12, 32, 16)]
        {
            let key = vec![3u8; klen];
            let iv = vec![9u8; ivlen];
            let c = SkCipher::new(encr, &key, integ, &vec![4u8; ilen])
                .unwrap_or_else(|_| unreachable!());
            let wire = c
                .seal(&header, 35, b"inner chain", Some(&iv))
                .unwrap_or_default();
            let body_start = 28 + 4 + ivlen;
            let (aad, icv) = if encr == 12 {
                (&[][..], 16)
            } else {
                (&wire[..32], 0)
            };
            let body = encrypt_body(encr, &key, &iv, aad, b"inner chain").unwrap_or_default();
            assert_eq!(body, wire[body_start..wire.len() - icv]);
            let plain = decrypt_body(encr, &key, &iv, aad, &body).map(|p| p.to_vec());
            assert_eq!(plain, Ok(b"inner chain".to_vec()));
            let mut bad = body.clone();
            bad[0] ^= 1;
            if encr != 12 {
                assert_eq!(
                    decrypt_body(encr, &key, &iv, aad, &bad),
                    Err(Error::Integrity)
                );
            }
        }
    }

    #[test]
    fn argument_and_input_faults() {
        let k = [0u8; 36];
        assert!(matches!(
            encrypt_body(20, &k, &[0; 7], b"", b""),
            Err(Error::Crypto(_))
        ));
        assert!(encrypt_body(20, &k[..20], &[0; 8], b"", b"").is_ok());
        assert!(matches!(
            encrypt_body(20, &k[..19], &[0; 8], b"", b""),
            Err(Error::Crypto(_))
        ));
        assert!(matches!(
            encrypt_body(3, &k, &[0; 8], b"", b""),
            Err(Error::Crypto(_))
        ));
        assert!(matches!(
            encrypt_body(12, &k[..16], &[0; 16], b"x", b""),
            Err(Error::Crypto(_))
        ));
        assert_eq!(
            decrypt_body(20, &k, &[0; 8], b"", &[0; 15]),
            Err(Error::Integrity)
        );
        assert_eq!(
            decrypt_body(12, &k[..16], &[0; 16], b"", &[0; 15]),
            Err(Error::Integrity)
        );
        assert_eq!(
            decrypt_body(12, &k[..16], &[0; 16], b"", &[]),
            Err(Error::Integrity)
        );
    }
}
