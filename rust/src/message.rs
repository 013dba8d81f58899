//! Whole-message SK protection (RFC 7296 §3.14): the codec composed with an [`SkCipher`].
//!
//! `open` verifies and decrypts, then decodes the header, any payloads sent in the clear
//! before SK and the inner payloads into one [`Message`] whose payloads are the clear ones
//! followed by the inner ones (the sealed SK itself is dropped). `seal` is the inverse: every
//! payload of the message is encrypted into one SK payload. The Python binding only converts
//! objects; the splicing lives here so `cargo test` and the fuzz targets cover it.

use crate::codec::{self, Body, EncodeError, Message, ParseError};
use crate::crypto::{self, Opened, SkCipher};

const SK: u8 = 46;
const NEXT_PAYLOAD_AT: usize = 16;

/// Why a message could not be sealed: a value the wire cannot carry, or the cipher refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    Encode(EncodeError),
    Crypto(crypto::Error),
}

/// Verify and decrypt `data` with `cipher`; decode the result with [`assemble`].
pub fn open(cipher: &SkCipher, data: &[u8]) -> Result<Opened, crypto::Error> {
    cipher.open_sk(data)
}

/// The message `data` carries once its SK payload opened to `first_inner` | `plaintext`:
/// header fields from `data`, the clear payloads before SK, then the inner payloads.
/// Inner payloads are decoded first, so an error there is reported with offsets relative to
/// the plaintext, as `decode_payloads(first_inner, plaintext)` would.
pub fn assemble<'a>(
    data: &'a [u8],
    first_inner: u8,
    plaintext: &'a [u8],
) -> Result<Message<'a>, ParseError> {
    let inner = codec::decode_payloads(first_inner, plaintext)?;
    let mut msg = header(data).ok_or(ParseError {
        what: "truncated header",
        offset: 0,
        payload: None,
    })?;
    if data.get(NEXT_PAYLOAD_AT) != Some(&SK) {
        msg.payloads = codec::decode_message(data)?
            .payloads
            .into_iter()
            .filter(|p| !matches!(p.body, Body::Sk { .. }))
            .collect();
    }
    msg.payloads.extend(inner);
    Ok(msg)
}

/// The fixed header of `data` as a message with no payloads yet.
fn header(data: &[u8]) -> Option<Message<'static>> {
    let (spi_i, rest) = data.split_first_chunk::<8>()?;
    let (spi_r, rest) = rest.split_first_chunk::<8>()?;
    let (&[_next, version, exchange, flags], rest) = rest.split_first_chunk::<4>()?;
    let message_id = u32::from_be_bytes(*rest.first_chunk::<4>()?);
    Some(Message {
        spi_i: *spi_i,
        spi_r: *spi_r,
        exchange,
        flags,
        message_id,
        major_version: version >> 4,
        minor_version: version & 0x0F,
        payloads: Vec::new(),
    })
}

/// What `SkCipher::seal` takes for `msg`: the encoded header (Next Payload = SK), the type of
/// the first payload and the encoded payload chain that goes inside SK.
pub fn seal_parts(msg: &Message<'_>) -> Result<(Vec<u8>, u8, Vec<u8>), EncodeError> {
    let head = codec::encode_message(&Message {
        payloads: Vec::new(),
        ..msg.clone_header()
    })?;
    let (first, body) = codec::encode_payloads(&msg.payloads)?;
    Ok((head, first, body))
}

/// Encode `msg` and encrypt all of its payloads into one SK payload; `iv` as `SkCipher::seal`.
pub fn seal(cipher: &SkCipher, msg: &Message<'_>, iv: Option<&[u8]>) -> Result<Vec<u8>, SealError> {
    let (head, first, body) = seal_parts(msg).map_err(SealError::Encode)?;
    cipher
        .seal(&head, i64::from(first), &body, iv)
        .map_err(SealError::Crypto)
}

impl Message<'_> {
    /// The header fields alone (no payloads), without cloning the payloads.
    fn clone_header(&self) -> Message<'static> {
        Message {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            exchange: self.exchange,
            flags: self.flags,
            message_id: self.message_id,
            major_version: self.major_version,
            minor_version: self.minor_version,
            payloads: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ConfigAttribute, Payload};
    use std::borrow::Cow;

    fn cipher() -> SkCipher {
        SkCipher::new(20, &[7u8; 36], 0, &[]).unwrap_or_else(|_| unreachable!())
    }

    fn message(payloads: Vec<Payload<'static>>) -> Message<'static> {
        Message {
            spi_i: [1; 8],
            spi_r: [2; 8],
            exchange: 35,
            flags: 0x08,
            message_id: 1,
            major_version: 2,
            minor_version: 0,
            payloads,
        }
    }

    fn inner() -> Vec<Payload<'static>> {
        vec![
            Payload {
                critical: false,
                body: Body::IdI {
                    id_type: 3,
                    data: Cow::Borrowed(b"fap@lab.example"),
                },
            },
            Payload {
                critical: false,
                body: Body::Cp {
                    cfg_type: 1,
                    attributes: vec![ConfigAttribute {
                        ty: 23,
                        value: Cow::Borrowed(b""),
                    }],
                },
            },
        ]
    }

    #[test]
    fn seal_then_open_gives_the_message_back() {
        let c = cipher();
        let msg = message(inner());
        let wire = seal(&c, &msg, None).unwrap_or_default();
        assert_eq!(wire.get(NEXT_PAYLOAD_AT), Some(&SK));
        let opened = open(&c, &wire).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.iv, 32..40);
        assert_eq!(
            assemble(&wire, opened.first_inner, &opened.plaintext),
            Ok(msg)
        );
    }

    #[test]
    fn clear_payloads_before_sk_come_first() {
        // A Notify sent in the clear before SK (as with fragmentation's first exchange).
        let notify = Payload {
            critical: false,
            body: Body::Notify {
                protocol_id: 0,
                notify_type: 16430,
                spi: Cow::Borrowed(b""),
                data: Cow::Borrowed(b""),
            },
        };
        let c = cipher();
        let head = codec::encode_message(&message(vec![notify.clone()])).unwrap_or_default();
        let (first, body) = codec::encode_payloads(&inner()).unwrap_or_default();
        let wire = c
            .seal(&head, i64::from(first), &body, None)
            .unwrap_or_default();
        let opened = open(&c, &wire).unwrap_or_else(|e| panic!("{e}"));
        let mut want = vec![notify];
        want.extend(inner());
        assert_eq!(
            assemble(&wire, opened.first_inner, &opened.plaintext),
            Ok(message(want))
        );
    }

    #[test]
    fn inner_errors_are_relative_to_the_plaintext() {
        let c = cipher();
        let head = seal_parts(&message(vec![])).unwrap_or_default().0;
        // IDi claiming 40 octets with 8 present.
        let wire = c
            .seal(&head, 35, &[0, 0, 0, 40, 3, 0, 0, 0], None)
            .unwrap_or_default();
        let opened = open(&c, &wire).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            assemble(&wire, opened.first_inner, &opened.plaintext),
            Err(ParseError {
                what: "truncated payload",
                offset: 0,
                payload: Some(35)
            })
        );
    }

    #[test]
    fn tampering_and_truncation_never_panic() {
        let c = cipher();
        let wire = seal(&c, &message(inner()), None).unwrap_or_default();
        for n in 0..wire.len() {
            assert!(open(&c, &wire[..n]).is_err());
            let mut bad = wire.clone();
            bad[n] ^= 1;
            assert!(open(&c, &bad).is_err());
        }
    }

    #[test]
    fn seal_reports_values_the_wire_cannot_carry() {
        let mut msg = message(inner());
        msg.payloads.push(Payload {
            critical: false,
            body: Body::Nonce(Cow::Owned(vec![0; 70_000])),
        });
        assert!(matches!(
            seal(&cipher(), &msg, None),
            Err(SealError::Encode(_))
        ));
        assert!(matches!(
            seal(&cipher(), &message(inner()), Some(&[0; 3])),
            Err(SealError::Crypto(_))
        ));
    }
}
