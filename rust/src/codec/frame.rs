//! Header-only decode and a framing walk over a payload chain: where each payload sits, its
//! type and critical bit, without decoding any body. For a host that builds its own payload
//! objects (or skips the ones it does not need).
//!
//! Error precedence: the first fault met walking the chain in wire order is the one reported.
//! Within one payload: truncated generic header, then a length below 4 octets, then a length
//! running past the buffer, then an unknown type with the critical bit set
//! ([`UNSUPPORTED_CRITICAL_PAYLOAD`], RFC 7296 §2.5); after the chain, octets left over.
//! So an unknown critical payload before a broken one wins, and a broken one before it wins.

use super::error::*;
use super::model::{is_known_type, SK, SKF};
use super::reader::Reader;

const HEADER_LEN: usize = 28;
const GENERIC_LEN: usize = 4;

/// The fixed IKE header (RFC 7296 §3.1), fields as on the wire; `length` is the declared
/// message length, not checked against the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub next_payload: u8,
    pub major_version: u8,
    pub minor_version: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

/// One payload of a chain: type, critical bit, offset of its generic header and its length
/// (generic header included), both in the buffer that was walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub ty: u8,
    pub critical: bool,
    pub offset: usize,
    pub length: usize,
}

/// The 28-octet header at the start of `data`; only its presence is checked.
pub fn decode_header(data: &[u8]) -> Result<Header, ParseError> {
    let short = || ParseError::new(TRUNCATED_HEADER, 0, None);
    let (spi_i, rest) = data.split_first_chunk::<8>().ok_or_else(short)?;
    let (spi_r, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    let (&[next_payload, version, exchange, flags], rest) =
        rest.split_first_chunk::<4>().ok_or_else(short)?;
    let (message_id, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    let length = rest.first_chunk::<4>().ok_or_else(short)?;
    Ok(Header {
        spi_i: *spi_i,
        spi_r: *spi_r,
        next_payload,
        major_version: version >> 4,
        minor_version: version & 0x0F,
        exchange,
        flags,
        message_id: u32::from_be_bytes(*message_id),
        length: u32::from_be_bytes(*length),
    })
}

/// Walk the chain that starts with type `first_type` at `offset` in `data` and must end at
/// the end of `data`; SK and SKF end a chain (their Next Payload names the first inner one).
/// `frames` is cleared and filled, so a caller can reuse one vector.
pub fn walk_payloads(
    first_type: u8,
    data: &[u8],
    offset: usize,
    frames: &mut Vec<Frame>,
) -> Result<(), ParseError> {
    frames.clear();
    let r = Reader(data);
    let end = data.len();
    let (mut ty, mut pos, mut last) = (first_type, offset, None);
    while ty != 0 {
        let truncated = || ParseError::new(TRUNCATED_PAYLOAD, pos, Some(ty));
        if end.saturating_sub(pos) < GENERIC_LEN {
            return Err(truncated());
        }
        let next = r.u8(pos).ok_or_else(truncated)?;
        let critical = r.u8(pos + 1).ok_or_else(truncated)? & 0x80 != 0;
        let length = usize::from(r.u16(pos + 2).ok_or_else(truncated)?);
        if length < GENERIC_LEN {
            return Err(ParseError::new(BAD_PAYLOAD_LENGTH, pos, Some(ty)));
        }
        if length > end - pos {
            return Err(truncated());
        }
        if critical && !is_known_type(ty) {
            return Err(ParseError::new(UNSUPPORTED_CRITICAL_PAYLOAD, pos, Some(ty)));
        }
        frames.push(Frame {
            ty,
            critical,
            offset: pos,
            length,
        });
        last = Some(ty);
        pos += length;
        if ty == SK || ty == SKF {
            break;
        }
        ty = next;
    }
    if pos != end {
        return Err(ParseError::new(TRAILING_DATA, pos, last));
    }
    Ok(())
}

/// `walk_payloads` over a whole datagram: the chain after the header, offsets in `data`.
pub fn walk_message(data: &[u8], frames: &mut Vec<Frame>) -> Result<Header, ParseError> {
    let header = decode_header(data)?;
    if usize::try_from(header.length).ok() != Some(data.len()) {
        return Err(ParseError::new(LENGTH_MISMATCH, 0, None));
    }
    walk_payloads(header.next_payload, data, HEADER_LEN, frames)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(next: u8, flags: u8, body: &[u8]) -> Vec<u8> {
        let len = u16::try_from(body.len() + 4).unwrap_or(0).to_be_bytes();
        [&[next, flags, len[0], len[1]][..], body].concat()
    }

    fn walk(first: u8, data: &[u8]) -> Result<Vec<Frame>, ParseError> {
        let mut frames = Vec::new();
        walk_payloads(first, data, 0, &mut frames).map(|()| frames)
    }

    #[test]
    fn frames_of_a_chain() {
        let chain = [payload(40, 0, b"abcd"), payload(0, 0x80, b"nonce")].concat();
        assert_eq!(
            walk(41, &chain),
            Ok(vec![
                Frame {
                    ty: 41,
                    critical: false,
                    offset: 0,
                    length: 8
                },
                Frame {
                    ty: 40,
                    critical: true,
                    offset: 8,
                    length: 9
                },
            ])
        );
        assert_eq!(walk(0, b""), Ok(vec![]));
    }

    #[test]
    fn wire_order_precedence() {
        // Unknown critical (type 99) first, then a payload claiming more than there is.
        let unknown_first = [payload(41, 0x80, b"x"), vec![0, 0, 0, 200]].concat();
        assert_eq!(
            walk(99, &unknown_first).map_err(|e| (e.what, e.offset)),
            Err((UNSUPPORTED_CRITICAL_PAYLOAD, 0))
        );
        // The broken payload first, the unknown critical one after it.
        let broken_first = [vec![99, 0, 0, 2], payload(0, 0x80, b"x")].concat();
        assert_eq!(
            walk(41, &broken_first).map_err(|e| (e.what, e.offset)),
            Err((BAD_PAYLOAD_LENGTH, 0))
        );
        // Unknown but not critical: just a frame.
        assert_eq!(walk(99, &payload(0, 0, b"")).map(|f| f.len()), Ok(1));
        // Leftover octets after the chain.
        let extra = [payload(0, 0, b""), vec![1]].concat();
        assert_eq!(
            walk(40, &extra),
            Err(ParseError::new(TRAILING_DATA, 4, Some(40)))
        );
    }

    #[test]
    fn header_and_whole_message() {
        let chain = payload(0, 0, b"nonce");
        let mut data = vec![0u8; 28];
        data[16] = 40;
        data[17] = 0x20;
        data[18] = 34;
        data[27] = u8::try_from(28 + chain.len()).unwrap_or(0);
        data.extend_from_slice(&chain);
        let mut frames = Vec::new();
        let h = walk_message(&data, &mut frames);
        assert_eq!(
            h.map(|h| (h.next_payload, h.major_version, h.exchange)),
            Ok((40, 2, 34))
        );
        assert_eq!(
            frames,
            vec![Frame {
                ty: 40,
                critical: false,
                offset: 28,
                length: 9
            }]
        );
        assert_eq!(
            decode_header(&data[..27]),
            Err(ParseError::new(TRUNCATED_HEADER, 0, None))
        );
        data.push(0);
        assert_eq!(
            walk_message(&data, &mut frames),
            Err(ParseError::new(LENGTH_MISMATCH, 0, None))
        );
    }
}
