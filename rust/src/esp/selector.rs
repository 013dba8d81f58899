//! Traffic selectors (RFC 7296 §3.13.1, RFC 4301 §4.4.1) checked against the inner packet:
//! a packet leaves through a CHILD SA only if its source is in our selectors and its
//! destination in the peer's, and a decrypted packet reaches the TUN device only the other
//! way round.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One selector: a protocol (0: any), a port range and an address range of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: IpAddr,
    pub end: IpAddr,
}

/// The addresses, protocol and ports of an inner IP packet. Ports are `None` where the
/// packet has none to show (non-initial fragments, other protocols): only a selector with
/// the whole port range matches those. ICMP type and code stand in for ports (§3.13.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

fn ports(protocol: u8, l4: &[u8]) -> (Option<u16>, Option<u16>) {
    let be = |at: usize| {
        l4.get(at..at + 2)
            .and_then(|b| b.first_chunk::<2>())
            .map(|b| u16::from_be_bytes(*b))
    };
    match protocol {
        6 | 17 | 132 | 136 => (be(0), be(2)),
        ICMP | ICMPV6 => (be(0), be(0)),
        _ => (None, None),
    }
}

impl Flow {
    /// Parses the IPv4 or IPv6 header at the start of `packet`; `None` if it is not one.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        match packet.first()? >> 4 {
            4 => {
                let ihl = usize::from(packet.first()? & 0x0F) * 4;
                if ihl < 20 || packet.len() < ihl {
                    return None;
                }
                let frag = u16::from_be_bytes([packet[6], packet[7]]) & 0x1FFF;
                let protocol = packet[9];
                let src = Ipv4Addr::from(*packet[12..16].first_chunk::<4>()?);
                let dst = Ipv4Addr::from(*packet[16..20].first_chunk::<4>()?);
                let (src_port, dst_port) = if frag == 0 {
                    ports(protocol, &packet[ihl..])
                } else {
                    (None, None)
                };
                Some(Self {
                    src: src.into(),
                    dst: dst.into(),
                    protocol,
                    src_port,
                    dst_port,
                })
            }
            6 => {
                let head = packet.get(..40)?;
                let protocol = head[6];
                let src = Ipv6Addr::from(*head[8..24].first_chunk::<16>()?);
                let dst = Ipv6Addr::from(*head[24..40].first_chunk::<16>()?);
                let (src_port, dst_port) = ports(protocol, &packet[40..]);
                Some(Self {
                    src: src.into(),
                    dst: dst.into(),
                    protocol,
                    src_port,
                    dst_port,
                })
            }
            _ => None,
        }
    }
}

fn in_range(addr: IpAddr, start: IpAddr, end: IpAddr) -> bool {
    match (addr, start, end) {
        (IpAddr::V4(a), IpAddr::V4(s), IpAddr::V4(e)) => s <= a && a <= e,
        (IpAddr::V6(a), IpAddr::V6(s), IpAddr::V6(e)) => s <= a && a <= e,
        _ => false,
    }
}

impl Selector {
    /// Everything of one family: what a TS of 0.0.0.0-255.255.255.255 says.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: addr,
            end: addr,
        }
    }

    /// The single address this selector stands for, if it is one host, any protocol/port.
    pub fn single_host(&self) -> Option<IpAddr> {
        (self.start == self.end && self.protocol == 0 && self.all_ports()).then_some(self.start)
    }

    fn all_ports(&self) -> bool {
        self.start_port == 0 && self.end_port == u16::MAX
    }

    fn matches(&self, addr: IpAddr, protocol: u8, port: Option<u16>) -> bool {
        if self.protocol != 0 && self.protocol != protocol {
            return false;
        }
        if !in_range(addr, self.start, self.end) {
            return false;
        }
        self.all_ports() || port.is_some_and(|p| self.start_port <= p && p <= self.end_port)
    }
}

/// Our selectors and the peer's for one CHILD SA.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub local: Vec<Selector>,
    pub remote: Vec<Selector>,
}

impl Selectors {
    /// May this packet leave through the SA (from us to the peer's side)?
    pub fn outbound(&self, f: &Flow) -> bool {
        self.local
            .iter()
            .any(|s| s.matches(f.src, f.protocol, f.src_port))
            && self
                .remote
                .iter()
                .any(|s| s.matches(f.dst, f.protocol, f.dst_port))
    }

    /// May this decrypted packet be delivered (from the peer's side to ours)?
    pub fn inbound(&self, f: &Flow) -> bool {
        self.remote
            .iter()
            .any(|s| s.matches(f.src, f.protocol, f.src_port))
            && self
                .local
                .iter()
                .any(|s| s.matches(f.dst, f.protocol, f.dst_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    fn range(a: &str, b: &str) -> Selector {
        Selector {
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start: a.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            end: b.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    #[test]
    fn parses_and_checks_both_directions() {
        // ICMP echo 100.100.0.2 -> 198.51.100.200
        let pkt = hex("45000054 00004000 40010000 64640002 c63364c8 0800 0000 00010001 00000000");
        let f = Flow::parse(&pkt).unwrap_or_else(|| unreachable!());
        assert_eq!(f.protocol, 1);
        assert_eq!(f.src_port, Some(0x0800));
        let fap = Selectors {
            local: vec![Selector::host("100.100.0.2".parse().unwrap_or(f.src))],
            remote: vec![range("198.51.100.128", "198.51.100.255")],
        };
        assert!(fap.outbound(&f));
        assert!(!fap.inbound(&f));
        let segw = Selectors {
            local: fap.remote.clone(),
            remote: fap.local.clone(),
        };
        assert!(segw.inbound(&f));
        assert!(!segw.outbound(&f));
        let mut tcp_only = segw.clone();
        tcp_only.local[0].protocol = 6;
        assert!(!tcp_only.inbound(&f));
        assert_eq!(Flow::parse(&pkt[..19]), None);
        assert_eq!(Flow::parse(&[0x75; 40]), None);
    }
}
