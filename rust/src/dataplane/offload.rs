//! Segmentation offload on the TUN device (`IFF_VNET_HDR`): the kernel hands over TCP
//! super-segments of up to 64 KiB with a `virtio_net_hdr` in front, and packets whose
//! checksum is left for us to finish. One `read` then carries what would be dozens of
//! packets; this module cuts them back into MSS-sized IP packets with correct headers and
//! checksums before each is sealed into ESP. Plain byte work, no system calls.

/// `struct virtio_net_hdr` (no `num_buffers`): the 10 octets before every packet.
pub const VNET_HDR_LEN: usize = 10;
const NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const TCP: u8 = 6;

/// Ones' complement sum of `data` added to `sum` (not folded).
fn add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header sum of RFC 793 / RFC 8200 §8.1 for an IP packet's upper layer.
fn pseudo(ip: &[u8], v6: bool, len: usize) -> Option<u32> {
    let (addrs, proto) = if v6 {
        (ip.get(8..40)?, *ip.get(6)?)
    } else {
        (ip.get(12..20)?, *ip.get(9)?)
    };
    Some(add(add(0, addrs), &[0, proto]) + len as u32)
}

/// Calls `out` with each IP packet `buf` (vnet header first) stands for. A malformed header
/// drops the packet (returns false).
pub fn split(buf: &[u8], mut out: impl FnMut(&[u8])) -> bool {
    let Some((hdr, packet)) = buf.split_first_chunk::<VNET_HDR_LEN>() else {
        return false;
    };
    let flags = hdr[0];
    let gso_type = hdr[1] & 0x7F;
    let gso_size = usize::from(u16::from_le_bytes([hdr[4], hdr[5]]));
    let csum_start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
    let csum_offset = usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
    if gso_type == GSO_NONE {
        if flags & NEEDS_CSUM == 0 {
            out(packet);
            return true;
        }
        let mut p = packet.to_vec();
        let at = csum_start + csum_offset;
        let Some(body) = p.get(csum_start..) else {
            return false;
        };
        // The field holds the pseudo-header sum already (CHECKSUM_PARTIAL).
        let sum = fold(add(0, body));
        match p.get_mut(at..at + 2) {
            Some(field) => field.copy_from_slice(&sum.to_be_bytes()),
            None => return false,
        }
        out(&p);
        return true;
    }
    let v6 = match gso_type {
        GSO_TCPV4 => false,
        GSO_TCPV6 => true,
        _ => return false,
    };
    segment_tcp(packet, v6, gso_size, csum_start, &mut out)
}

fn segment_tcp(
    packet: &[u8],
    v6: bool,
    mss: usize,
    tcp_start: usize,
    out: &mut impl FnMut(&[u8]),
) -> bool {
    let ip_len = if v6 {
        40
    } else {
        usize::from(packet.first().map_or(0, |b| b & 0x0F)) * 4
    };
    if mss == 0 || ip_len < 20 || tcp_start != ip_len {
        return false;
    }
    let Some(doff) = packet.get(tcp_start + 12) else {
        return false;
    };
    let hdr_len = tcp_start + usize::from(doff >> 4) * 4;
    let (Some(head), Some(payload)) = (packet.get(..hdr_len), packet.get(hdr_len..)) else {
        return false;
    };
    if hdr_len < tcp_start + 20 || (!v6 && head.get(9) != Some(&TCP)) || (v6 && head[6] != TCP) {
        return false;
    }
    let seq0 = u32::from_be_bytes([
        head[tcp_start + 4],
        head[tcp_start + 5],
        head[tcp_start + 6],
        head[tcp_start + 7],
    ]);
    let id0 = u16::from_be_bytes([head[4], head[5]]);
    let flags0 = head[tcp_start + 13];
    let n = payload.len().div_ceil(mss).max(1);
    let mut seg = Vec::with_capacity(hdr_len + mss);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        seg.clear();
        seg.extend_from_slice(head);
        seg.extend_from_slice(chunk);
        let total = seg.len();
        if v6 {
            seg[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        } else {
            seg[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            seg[10..12].copy_from_slice(&[0, 0]);
            let c = fold(add(0, &seg[..ip_len]));
            seg[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let t = tcp_start;
        let seq = seq0.wrapping_add((i * mss) as u32);
        seg[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags0;
        if i + 1 < n {
            f &= !(0x01 | 0x08); // FIN and PSH only on the last segment
        }
        if i > 0 {
            f &= !0x80; // CWR only on the first
        }
        seg[t + 13] = f;
        seg[t + 16..t + 18].copy_from_slice(&[0, 0]);
        let Some(ph) = pseudo(&seg, v6, total - t) else {
            return false;
        };
        let c = fold(add(ph, &seg[t..]));
        seg[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        out(&seg);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    /// A TCP/IPv4 packet with a correct checksum, `len` payload octets.
    fn tcp4(len: usize, flags: u8) -> Vec<u8> {
        let mut p = hex("45000000 1234 4000 4006 0000 64640002 c63364c8");
        p.extend_from_slice(&hex("3039 1389 00000064 00000000 50 00 ffff 0000 0000"));
        p[33] = flags;
        p.extend((0..len).map(|i| i as u8));
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let c = fold(add(0, &p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let ph = pseudo(&p, false, p.len() - 20).unwrap_or(0);
        let c = fold(add(ph, &p[20..]));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn valid(p: &[u8]) -> bool {
        let ph = pseudo(p, false, p.len() - 20).unwrap_or(0);
        fold(add(0, &p[..20])) == 0 && fold(add(ph, &p[20..])) == 0
    }

    #[test]
    fn super_segment_is_cut_into_valid_packets() {
        let whole = tcp4(3000, 0x18); // PSH|ACK
        let mut buf = vec![0u8; VNET_HDR_LEN];
        buf[1] = GSO_TCPV4;
        buf[4..6].copy_from_slice(&1200u16.to_le_bytes());
        buf[6..8].copy_from_slice(&20u16.to_le_bytes());
        buf[8..10].copy_from_slice(&16u16.to_le_bytes());
        buf.extend_from_slice(&whole);
        let mut got = Vec::new();
        assert!(split(&buf, |p| got.push(p.to_vec())));
        assert_eq!(got.len(), 3);
        let mut data = Vec::new();
        for (i, p) in got.iter().enumerate() {
            assert!(valid(p), "segment {i}");
            let seq = u32::from_be_bytes([p[24], p[25], p[26], p[27]]);
            assert_eq!(seq, 100 + 1200 * i as u32);
            assert_eq!(p[33] & 0x08 != 0, i == 2, "PSH only on the last");
            data.extend_from_slice(&p[40..]);
        }
        assert_eq!(data, whole[40..].to_vec());
    }

    #[test]
    fn partial_checksum_is_finished_and_garbage_dropped() {
        let mut p = tcp4(100, 0x10);
        // What the kernel leaves: the pseudo-header sum, not complemented, in the field.
        let ph = pseudo(&p, false, p.len() - 20).unwrap_or(0);
        let mut s = ph;
        while s > 0xFFFF {
            s = (s & 0xFFFF) + (s >> 16);
        }
        p[36..38].copy_from_slice(&(s as u16).to_be_bytes());
        let mut buf = vec![NEEDS_CSUM, 0, 0, 0, 0, 0, 20, 0, 16, 0];
        buf.extend_from_slice(&p);
        let mut got = Vec::new();
        assert!(split(&buf, |q| got.push(q.to_vec())));
        assert!(valid(&got[0]));
        assert!(!split(&buf[..5], |_| {}));
        let mut bad = buf.clone();
        bad[1] = 3; // UDP fragmentation offload: not asked for, not accepted
        assert!(!split(&bad, |_| {}));
    }
}
