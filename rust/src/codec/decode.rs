//! Parsing. Check order matches `ikecp._reference.codec` line for line: change both together.

use std::borrow::Cow;

use super::error::*;
use super::model::*;
use super::reader::Reader;

type Result<T> = std::result::Result<T, ParseError>;

const HEADER_LEN: usize = 28;

/// Fixed part of each payload body after the 4-byte generic header.
fn min_body(ty: u8) -> usize {
    match ty {
        KE | IDI | IDR | AUTH | NOTIFY | DELETE | TSI | TSR | CP | SKF => 4,
        CERT | CERTREQ => 1,
        _ => 0,
    }
}

/// Parse one IKE message (header + payload chain); SK stays sealed.
pub fn decode_message(data: &[u8]) -> Result<Message<'_>> {
    let r = Reader(data);
    let hdr_err = |what| ParseError::new(what, 0, None);
    if r.len() < HEADER_LEN {
        return Err(hdr_err(TRUNCATED_HEADER));
    }
    let spi_i: [u8; 8] = r
        .bytes(0, 8)
        .and_then(|b| b.try_into().ok())
        .ok_or(hdr_err(TRUNCATED_HEADER))?;
    let spi_r: [u8; 8] = r
        .bytes(8, 16)
        .and_then(|b| b.try_into().ok())
        .ok_or(hdr_err(TRUNCATED_HEADER))?;
    let b = |at| r.u8(at).ok_or(hdr_err(TRUNCATED_HEADER));
    let (first, version, exchange, flags) = (b(16)?, b(17)?, b(18)?, b(19)?);
    let message_id = r.u32(20).ok_or(hdr_err(TRUNCATED_HEADER))?;
    let length = r.u32(24).ok_or(hdr_err(TRUNCATED_HEADER))?;
    if usize::try_from(length).ok() != Some(r.len()) {
        return Err(hdr_err(LENGTH_MISMATCH));
    }
    Ok(Message {
        spi_i,
        spi_r,
        exchange,
        flags,
        message_id,
        major_version: version >> 4,
        minor_version: version & 0x0F,
        payloads: chain(first, r, HEADER_LEN)?,
    })
}

/// Parse a payload chain that starts with type `first_type`.
pub fn decode_payloads(first_type: u8, data: &[u8]) -> Result<Vec<Payload<'_>>> {
    chain(first_type, Reader(data), 0)
}

fn chain(mut ty: u8, r: Reader<'_>, mut pos: usize) -> Result<Vec<Payload<'_>>> {
    let end = r.len();
    let mut out = Vec::new();
    let mut last = None;
    while ty != 0 {
        let truncated = ParseError::new(TRUNCATED_PAYLOAD, pos, Some(ty));
        if end.saturating_sub(pos) < 4 {
            return Err(truncated);
        }
        let next = r.u8(pos).ok_or_else(|| truncated.clone())?;
        let flags = r.u8(pos + 1).ok_or_else(|| truncated.clone())?;
        let plen = usize::from(r.u16(pos + 2).ok_or_else(|| truncated.clone())?);
        if plen < 4 + min_body(ty) {
            return Err(ParseError::new(BAD_PAYLOAD_LENGTH, pos, Some(ty)));
        }
        if plen > end - pos {
            return Err(truncated);
        }
        let body = payload_body(ty, r, pos, pos + plen, next)?;
        out.push(Payload {
            critical: flags >= 0x80,
            body,
        });
        last = Some(ty);
        pos += plen;
        if ty == SK || ty == SKF {
            break;
        }
        ty = next;
    }
    if pos != end {
        return Err(ParseError::new(TRAILING_DATA, pos, last));
    }
    Ok(out)
}

/// Decode the body of the payload at `pos..end` (generic header included in the range).
fn payload_body<'a>(ty: u8, r: Reader<'a>, pos: usize, end: usize, next: u8) -> Result<Body<'a>> {
    // The generic header and `min_body(ty)` octets were checked by the caller; this error is
    // only reachable through a logic slip and keeps the reads panic-free regardless.
    let short = || ParseError::new(BAD_PAYLOAD_LENGTH, pos, Some(ty));
    let u8_at = |at| r.u8(at).ok_or_else(short);
    let u16_at = |at| r.u16(at).ok_or_else(short);
    let slice = |from, to| r.bytes(from, to).map(Cow::Borrowed).ok_or_else(short);
    Ok(match ty {
        SA => Body::Sa(proposals(r, pos + 4, end)?),
        KE => Body::Ke {
            group: u16_at(pos + 4)?,
            data: slice(pos + 8, end)?,
        },
        IDI => Body::IdI {
            id_type: u8_at(pos + 4)?,
            data: slice(pos + 8, end)?,
        },
        IDR => Body::IdR {
            id_type: u8_at(pos + 4)?,
            data: slice(pos + 8, end)?,
        },
        CERT => Body::Cert {
            encoding: u8_at(pos + 4)?,
            data: slice(pos + 5, end)?,
        },
        CERTREQ => Body::CertReq {
            encoding: u8_at(pos + 4)?,
            data: slice(pos + 5, end)?,
        },
        AUTH => Body::Auth {
            method: u8_at(pos + 4)?,
            data: slice(pos + 8, end)?,
        },
        NONCE => Body::Nonce(slice(pos + 4, end)?),
        NOTIFY => {
            let protocol_id = u8_at(pos + 4)?;
            let spi_size = usize::from(u8_at(pos + 5)?);
            let notify_type = u16_at(pos + 6)?;
            let s = pos + 8;
            if spi_size > end - s {
                return Err(ParseError::new(BAD_SPI_SIZE, pos, Some(NOTIFY)));
            }
            Body::Notify {
                protocol_id,
                notify_type,
                spi: slice(s, s + spi_size)?,
                data: slice(s + spi_size, end)?,
            }
        }
        DELETE => {
            let protocol_id = u8_at(pos + 4)?;
            let spi_size = u8_at(pos + 5)?;
            let num = usize::from(u16_at(pos + 6)?);
            let s = pos + 8;
            let size = usize::from(spi_size);
            if num * size != end - s || (size == 0 && num != 0) {
                return Err(ParseError::new(BAD_SPI_SIZE, pos, Some(DELETE)));
            }
            let spis = match r.bytes(s, end) {
                Some(all) if size > 0 => all.chunks_exact(size).map(Cow::Borrowed).collect(),
                Some(_) => Vec::new(),
                None => return Err(short()),
            };
            Body::Delete {
                protocol_id,
                spi_size,
                spis,
            }
        }
        VENDOR_ID => Body::VendorId(slice(pos + 4, end)?),
        TSI => Body::TsI(selectors(r, pos, end, TSI)?),
        TSR => Body::TsR(selectors(r, pos, end, TSR)?),
        SK => Body::Sk {
            next_payload: next,
            data: slice(pos + 4, end)?,
        },
        CP => Body::Cp {
            cfg_type: u8_at(pos + 4)?,
            attributes: config_attributes(r, pos + 8, end)?,
        },
        EAP => Body::Eap(slice(pos + 4, end)?),
        SKF => {
            let fragment_number = u16_at(pos + 4)?;
            let total_fragments = u16_at(pos + 6)?;
            if fragment_number == 0 || fragment_number > total_fragments {
                return Err(ParseError::new(BAD_FRAGMENT_NUMBER, pos, Some(SKF)));
            }
            Body::Skf {
                next_payload: next,
                fragment_number,
                total_fragments,
                data: slice(pos + 8, end)?,
            }
        }
        _ => Body::Unknown {
            ty,
            data: slice(pos + 4, end)?,
        },
    })
}

/// SA body (§3.3): proposals, each with its transforms and their attributes.
fn proposals(r: Reader<'_>, mut p: usize, end: usize) -> Result<Vec<Proposal<'_>>> {
    let mut props = Vec::new();
    loop {
        let bad = |what, at| ParseError::new(what, at, Some(SA));
        if end.saturating_sub(p) < 8 {
            return Err(bad(BAD_PROPOSAL, p));
        }
        let get = |at| r.u8(at).ok_or(bad(BAD_PROPOSAL, p));
        let last = get(p)?;
        let plen = usize::from(r.u16(p + 2).ok_or(bad(BAD_PROPOSAL, p))?);
        let (number, protocol_id, spi_size, ntrans) = (
            get(p + 4)?,
            get(p + 5)?,
            usize::from(get(p + 6)?),
            get(p + 7)?,
        );
        if last != 0 && last != 2 {
            return Err(bad(BAD_PROPOSAL, p));
        }
        if plen < 8 || plen > end - p {
            return Err(bad(BAD_PROPOSAL, p));
        }
        if 8 + spi_size > plen {
            return Err(bad(BAD_SPI_SIZE, p));
        }
        let pend = p + plen;
        let mut t = p + 8 + spi_size;
        let mut transforms = Vec::with_capacity(usize::from(ntrans));
        for i in 0..ntrans {
            let (transform, tend) = transform(r, t, pend, i + 1 == ntrans)?;
            transforms.push(transform);
            t = tend;
        }
        if t != pend {
            return Err(bad(BAD_PROPOSAL, p));
        }
        let spi = r
            .bytes(p + 8, p + 8 + spi_size)
            .ok_or(bad(BAD_SPI_SIZE, p))?;
        props.push(Proposal {
            number,
            protocol_id,
            spi: Cow::Borrowed(spi),
            transforms,
        });
        p = pend;
        if last == 0 {
            break;
        }
    }
    if p != end {
        return Err(ParseError::new(BAD_PROPOSAL, p, Some(SA)));
    }
    Ok(props)
}

/// One transform (§3.3.2) at `t`, inside a proposal ending at `pend`; returns it and its end.
fn transform(
    r: Reader<'_>,
    t: usize,
    pend: usize,
    is_last: bool,
) -> Result<(Transform<'_>, usize)> {
    let bad = ParseError::new(BAD_TRANSFORM, t, Some(SA));
    if pend.saturating_sub(t) < 8 {
        return Err(bad);
    }
    let marker = r.u8(t).ok_or_else(|| bad.clone())?;
    let tlen = usize::from(r.u16(t + 2).ok_or_else(|| bad.clone())?);
    let ty = r.u8(t + 4).ok_or_else(|| bad.clone())?;
    let id = r.u16(t + 6).ok_or_else(|| bad.clone())?;
    if marker != if is_last { 0 } else { 3 } {
        return Err(bad);
    }
    if tlen < 8 || tlen > pend - t {
        return Err(bad);
    }
    let tend = t + tlen;
    let mut attributes = Vec::new();
    let mut a = t + 8;
    while a < tend {
        let bad_attr = ParseError::new(BAD_ATTRIBUTE, a, Some(SA));
        if tend - a < 4 {
            return Err(bad_attr);
        }
        let aty = r.u16(a).ok_or_else(|| bad_attr.clone())?;
        let aval = r.u16(a + 2).ok_or_else(|| bad_attr.clone())?;
        if aty >= 0x8000 {
            attributes.push(TransformAttribute {
                ty: aty & 0x7FFF,
                value: AttrValue::Tv(aval),
            });
            a += 4;
        } else {
            let alen = usize::from(aval);
            if alen > tend - a - 4 {
                return Err(bad_attr);
            }
            let value = r.bytes(a + 4, a + 4 + alen).ok_or(bad_attr)?;
            attributes.push(TransformAttribute {
                ty: aty,
                value: AttrValue::Tlv(Cow::Borrowed(value)),
            });
            a += 4 + alen;
        }
    }
    Ok((Transform { ty, id, attributes }, tend))
}

/// TSi/TSr body (§3.13): count, 3 reserved octets, selectors of fixed size per type.
fn selectors(r: Reader<'_>, pos: usize, end: usize, ty: u8) -> Result<Vec<TrafficSelector<'_>>> {
    let num = r
        .u8(pos + 4)
        .ok_or(ParseError::new(BAD_PAYLOAD_LENGTH, pos, Some(ty)))?;
    let mut s = pos + 8;
    let mut sels = Vec::with_capacity(usize::from(num));
    for _ in 0..num {
        let bad = ParseError::new(BAD_TRAFFIC_SELECTOR, s, Some(ty));
        if end.saturating_sub(s) < 8 {
            return Err(bad);
        }
        let ts_type = r.u8(s).ok_or_else(|| bad.clone())?;
        let ip_protocol = r.u8(s + 1).ok_or_else(|| bad.clone())?;
        let slen = usize::from(r.u16(s + 2).ok_or_else(|| bad.clone())?);
        let start_port = r.u16(s + 4).ok_or_else(|| bad.clone())?;
        let end_port = r.u16(s + 6).ok_or_else(|| bad.clone())?;
        let want = match ts_type {
            7 => Some(16),
            8 => Some(40),
            _ => None,
        };
        if want != Some(slen) || slen > end - s {
            return Err(bad);
        }
        let half = (slen - 8) / 2;
        let a = s + 8;
        let start_addr = r.bytes(a, a + half).ok_or_else(|| bad.clone())?;
        let end_addr = r.bytes(a + half, s + slen).ok_or(bad)?;
        sels.push(TrafficSelector {
            ts_type,
            ip_protocol,
            start_port,
            end_port,
            start_addr: Cow::Borrowed(start_addr),
            end_addr: Cow::Borrowed(end_addr),
        });
        s += slen;
    }
    if s != end {
        return Err(ParseError::new(BAD_TRAFFIC_SELECTOR, s, Some(ty)));
    }
    Ok(sels)
}

/// CP attributes (§3.15.1): type (top bit reserved), length, value.
fn config_attributes(r: Reader<'_>, mut a: usize, end: usize) -> Result<Vec<ConfigAttribute<'_>>> {
    let mut attrs = Vec::new();
    while a < end {
        let bad = ParseError::new(BAD_ATTRIBUTE, a, Some(CP));
        if end - a < 4 {
            return Err(bad);
        }
        let ty = r.u16(a).ok_or_else(|| bad.clone())? & 0x7FFF;
        let alen = usize::from(r.u16(a + 2).ok_or_else(|| bad.clone())?);
        if alen > end - a - 4 {
            return Err(bad);
        }
        let value = r.bytes(a + 4, a + 4 + alen).ok_or(bad)?;
        attrs.push(ConfigAttribute {
            ty,
            value: Cow::Borrowed(value),
        });
        a += 4 + alen;
    }
    Ok(attrs)
}
