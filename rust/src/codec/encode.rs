//! Serialization: lengths, next-payload chaining, counts and last-substructure markers are
//! computed here; anything that cannot be represented on the wire is an `EncodeError`.

use super::error::EncodeError;
use super::model::*;

type Result<T> = std::result::Result<T, EncodeError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(EncodeError(msg.into()))
}

/// Serialize a whole message (header + payloads).
pub fn encode_message(msg: &Message<'_>) -> Result<Vec<u8>> {
    if msg.major_version > 15 || msg.minor_version > 15 {
        return err("Message major/minor version must be 0..15");
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&msg.spi_i);
    out.extend_from_slice(&msg.spi_r);
    out.extend_from_slice(&[0, (msg.major_version << 4) | msg.minor_version]);
    out.extend_from_slice(&[msg.exchange, msg.flags]);
    out.extend_from_slice(&msg.message_id.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let first = write_chain(&msg.payloads, &mut out)?;
    let Ok(total) = u32::try_from(out.len()) else {
        return err("message longer than 2**32-1 bytes");
    };
    patch(&mut out, 16, &[first]);
    patch(&mut out, 24, &total.to_be_bytes());
    Ok(out)
}

/// Serialize a payload chain; returns (type of the first payload or 0, bytes).
pub fn encode_payloads(payloads: &[Payload<'_>]) -> Result<(u8, Vec<u8>)> {
    let mut out = Vec::with_capacity(256);
    let first = write_chain(payloads, &mut out)?;
    Ok((first, out))
}

fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Reserve a 2-byte length at `at` once the structure starting at `start` is written.
fn patch_len(out: &mut [u8], start: usize, at: usize, what: &str) -> Result<()> {
    let Ok(len) = u16::try_from(out.len() - start) else {
        return err(format!(
            "{what} too long: {} bytes > 65535",
            out.len() - start
        ));
    };
    patch(out, at, &len.to_be_bytes());
    Ok(())
}

fn write_chain(payloads: &[Payload<'_>], out: &mut Vec<u8>) -> Result<u8> {
    let n = payloads.len();
    for (i, p) in payloads.iter().enumerate() {
        let next = match &p.body {
            Body::Sk { next_payload, .. } | Body::Skf { next_payload, .. } => {
                if i + 1 != n {
                    return err(format!(
                        "{} must be the last payload of a chain",
                        name(&p.body)
                    ));
                }
                *next_payload
            }
            _ => payloads.get(i + 1).map_or(0, |q| q.body.payload_type()),
        };
        let start = out.len();
        out.extend_from_slice(&[next, if p.critical { 0x80 } else { 0 }, 0, 0]);
        write_body(&p.body, out)?;
        patch_len(out, start, start + 2, name(&p.body))?;
    }
    Ok(payloads.first().map_or(0, |p| p.body.payload_type()))
}

fn name(body: &Body<'_>) -> &'static str {
    match body {
        Body::Sa(_) => "SA",
        Body::Ke { .. } => "KE",
        Body::IdI { .. } => "IDi",
        Body::IdR { .. } => "IDr",
        Body::Cert { .. } => "Cert",
        Body::CertReq { .. } => "CertReq",
        Body::Auth { .. } => "Auth",
        Body::Nonce(_) => "Nonce",
        Body::Notify { .. } => "Notify",
        Body::Delete { .. } => "Delete",
        Body::VendorId(_) => "VendorId",
        Body::TsI(_) => "TSi",
        Body::TsR(_) => "TSr",
        Body::Sk { .. } => "SK",
        Body::Cp { .. } => "CP",
        Body::Eap(_) => "EAP",
        Body::Skf { .. } => "SKF",
        Body::Unknown { .. } => "UnknownPayload",
    }
}

fn write_body(body: &Body<'_>, out: &mut Vec<u8>) -> Result<()> {
    match body {
        Body::Sa(props) => write_sa(props, out)?,
        Body::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Body::IdI { id_type: b, data }
        | Body::IdR { id_type: b, data }
        | Body::Auth { method: b, data } => {
            out.extend_from_slice(&[*b, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Body::Cert { encoding, data } | Body::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Body::Nonce(data)
        | Body::VendorId(data)
        | Body::Eap(data)
        | Body::Sk { data, .. }
        | Body::Unknown { data, .. } => {
            if let Body::Unknown { ty, .. } = body {
                if *ty == 0 || is_known_type(*ty) {
                    return err(format!(
                        "UnknownPayload.type {ty} must be 1..255 and not a known type"
                    ));
                }
            }
            out.extend_from_slice(data);
        }
        Body::Notify {
            protocol_id,
            notify_type,
            spi,
            data,
        } => {
            let Ok(spi_size) = u8::try_from(spi.len()) else {
                return err("Notify.spi longer than 255 bytes");
            };
            out.extend_from_slice(&[*protocol_id, spi_size]);
            out.extend_from_slice(&notify_type.to_be_bytes());
            out.extend_from_slice(spi);
            out.extend_from_slice(data);
        }
        Body::Delete {
            protocol_id,
            spi_size,
            spis,
        } => {
            if spis.iter().any(|s| s.len() != usize::from(*spi_size)) {
                return err("Delete: every SPI must be spi_size bytes");
            }
            if *spi_size == 0 && !spis.is_empty() {
                return err("Delete: SPIs need a non-zero spi_size");
            }
            let Ok(num) = u16::try_from(spis.len()) else {
                return err("Delete: more than 65535 SPIs");
            };
            out.extend_from_slice(&[*protocol_id, *spi_size]);
            out.extend_from_slice(&num.to_be_bytes());
            for s in spis {
                out.extend_from_slice(s);
            }
        }
        Body::TsI(sels) | Body::TsR(sels) => write_selectors(sels, out)?,
        Body::Cp {
            cfg_type,
            attributes,
        } => {
            out.extend_from_slice(&[*cfg_type, 0, 0, 0]);
            for a in attributes {
                if a.ty > 0x7FFF {
                    return err("ConfigAttribute.type must be 0..32767");
                }
                let Ok(len) = u16::try_from(a.value.len()) else {
                    return err("ConfigAttribute value longer than 65535 bytes");
                };
                out.extend_from_slice(&a.ty.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&a.value);
            }
        }
        Body::Skf {
            fragment_number,
            total_fragments,
            data,
            ..
        } => {
            if *fragment_number == 0 || fragment_number > total_fragments {
                return err("SKF needs 1 <= fragment_number <= total_fragments");
            }
            out.extend_from_slice(&fragment_number.to_be_bytes());
            out.extend_from_slice(&total_fragments.to_be_bytes());
            out.extend_from_slice(data);
        }
    }
    Ok(())
}

fn write_sa(props: &[Proposal<'_>], out: &mut Vec<u8>) -> Result<()> {
    if props.is_empty() {
        return err("SA needs at least one proposal");
    }
    for (i, pr) in props.iter().enumerate() {
        let (Ok(spi_size), Ok(ntrans)) = (
            u8::try_from(pr.spi.len()),
            u8::try_from(pr.transforms.len()),
        ) else {
            return err("Proposal: more than 255 transforms or SPI longer than 255 bytes");
        };
        let start = out.len();
        let marker = if i + 1 == props.len() { 0 } else { 2 };
        out.extend_from_slice(&[marker, 0, 0, 0, pr.number, pr.protocol_id, spi_size, ntrans]);
        out.extend_from_slice(&pr.spi);
        for (j, t) in pr.transforms.iter().enumerate() {
            let tstart = out.len();
            let tmarker = if j + 1 == pr.transforms.len() { 0 } else { 3 };
            out.extend_from_slice(&[tmarker, 0, 0, 0, t.ty, 0]);
            out.extend_from_slice(&t.id.to_be_bytes());
            for a in &t.attributes {
                if a.ty > 0x7FFF {
                    return err("TransformAttribute.type must be 0..32767");
                }
                match &a.value {
                    AttrValue::Tv(v) => {
                        out.extend_from_slice(&(a.ty | 0x8000).to_be_bytes());
                        out.extend_from_slice(&v.to_be_bytes());
                    }
                    AttrValue::Tlv(v) => {
                        let Ok(len) = u16::try_from(v.len()) else {
                            return err("TransformAttribute value longer than 65535 bytes");
                        };
                        out.extend_from_slice(&a.ty.to_be_bytes());
                        out.extend_from_slice(&len.to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
            patch_len(out, tstart, tstart + 2, "Transform")?;
        }
        patch_len(out, start, start + 2, "Proposal")?;
    }
    Ok(())
}

fn write_selectors(sels: &[TrafficSelector<'_>], out: &mut Vec<u8>) -> Result<()> {
    let Ok(num) = u8::try_from(sels.len()) else {
        return err("more than 255 traffic selectors");
    };
    out.extend_from_slice(&[num, 0, 0, 0]);
    for s in sels {
        let (len, addr): (u16, usize) = match s.ts_type {
            7 => (16, 4),
            8 => (40, 16),
            _ => return err("TrafficSelector.ts_type must be 7 (IPv4) or 8 (IPv6)"),
        };
        if s.start_addr.len() != addr || s.end_addr.len() != addr {
            return err("TrafficSelector address length does not match ts_type");
        }
        out.extend_from_slice(&[s.ts_type, s.ip_protocol]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&s.start_port.to_be_bytes());
        out.extend_from_slice(&s.end_port.to_be_bytes());
        out.extend_from_slice(&s.start_addr);
        out.extend_from_slice(&s.end_addr);
    }
    Ok(())
}
