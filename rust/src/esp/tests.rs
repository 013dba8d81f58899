//! Known-answer ESP packets and the CHILD SA's per-packet rules.

use std::net::SocketAddr;

use super::*;
use crate::crypto::Error;
use crate::hex;

struct Kat {
    source: &'static str,
    encr: i64,
    key_and_salt: &'static str,
    spi: u32,
    seq: u64,
    esn: bool,
    iv: &'static str,
    /// Payload | padding | pad length | next header, as published.
    plaintext: &'static str,
    packet: &'static str,
}

/// Published ESP packets: draft-mcgrew-gcm-test-01 §4 (AES-GCM in ESP, test cases with a
/// 128- and a 256-bit key, one with a 64-bit extended sequence number) and RFC 7634
/// Appendix A (ChaCha20-Poly1305 ESP example).
const KATS: &[Kat] = &[
    Kat {
        source: "draft-mcgrew-gcm-test-01 case 2 (AES-128, ESN)",
        encr: 20,
        key_and_salt: "4c80cdefbb5d10da906ac73c3613a634 2e443b68",
        spi: 0x0000_4321,
        seq: 0x8765_4321_0000_0000,
        esn: true,
        iv: "4956ed7e3b244cfe",
        plaintext: "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000
                    00000000045f736970045f756470037369700963796265726369747902646b00
                    0021000101020201",
        packet: "00004321000000004956ed7e3b244cfe
                 fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34
                 cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce
                 61bc17d768fd9732459018148f6cbe722fd04796562dfdb4",
    },
    Kat {
        source: "draft-mcgrew-gcm-test-01 case 1 (AES-128)",
        encr: 20,
        key_and_salt: "feffe9928665731c6d6a8f9467308308 cafebabe",
        spi: 0x0000_a5f8,
        seq: 0x0a,
        esn: false,
        iv: "facedbaddecaf888",
        plaintext: "4500003e698f000080114dccc0a80102c0a801010a980035002a2343b2d00100
                    0001000000000000037369700963796265726369747902646b00000100010001",
        packet: "0000a5f80000000afacedbaddecaf888
                 deb22cd9b07c72c16e3a65beeb8df304a5a5897d33ae530f1ba76d5d114d2a5c
                 3de81827c10e9a4f51330d0eec416642cfbb85a5b47e48a4ec3b9ba95d918bd1
                 83b70d3aa8bc6ee4c309e9d85a41ad4a",
    },
    Kat {
        source: "draft-mcgrew-gcm-test-01 case 3 (AES-256)",
        encr: 20,
        key_and_salt: "abbccddef00112233445566778899aababbccddef00112233445566778899aab
                       11223344",
        spi: 0x4a2c_bfe3,
        seq: 2,
        esn: false,
        iv: "0102030405060708",
        plaintext: "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000
                    7002400020bf0000020405b40101040201020201",
        packet: "4a2cbfe3000000020102030405060708
                 ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763
                 748a637985771d347f0545659f14e99def842d8eb335f4eecfdbf831824b4c49
                 15956c96",
    },
    Kat {
        source: "RFC 7634 Appendix A (ChaCha20-Poly1305)",
        encr: 28,
        key_and_salt: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f
                       a0a1a2a3",
        spi: 0x0102_0304,
        seq: 5,
        esn: false,
        iv: "1011121314151617",
        plaintext: "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10
                    000736270809 0a0b0c0d0e0f10111213 1415161718191a1b1c1d1e1f20212223
                    2425262728292a2b2c2d2e2f3031323334353637 01020204",
        packet: "01020304000000051011121314151617
                 24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6
                 14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3
                 cbec163fac469b502773f6fb94e664da9165b82829f641e0
                 76aaa8266b7fb0f7b11b369907e1ad43",
    },
];

#[test]
fn published_esp_packets_seal_and_open() {
    for k in KATS {
        let t = EspTransform::new(k.encr, &hex(k.key_and_salt), 0, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", k.source));
        let plain = hex(k.plaintext);
        let (pad, nh) = (plain[plain.len() - 2], plain[plain.len() - 1]);
        let payload = &plain[..plain.len() - 2 - usize::from(pad)];
        let mut out = Vec::new();
        t.seal_into(&mut out, k.spi, k.seq, k.esn, nh, payload, Some(&hex(k.iv)))
            .unwrap_or_else(|e| panic!("{}: {e}", k.source));
        assert_eq!(out, hex(k.packet), "{}", k.source);
        let seq_hi = k.esn.then_some((k.seq >> 32) as u32);
        let opened = t.open_in_place(&mut out, seq_hi);
        assert_eq!(
            opened.map(|o| (o.next_header, out[o.payload].to_vec())),
            Ok((nh, payload.to_vec())),
            "{}",
            k.source
        );
        // The ESN high half is authenticated: the wrong one fails.
        let mut again = hex(k.packet);
        let wrong = if k.esn { None } else { Some(1) };
        assert_eq!(
            t.open_in_place(&mut again, wrong),
            Err(Error::Integrity),
            "{}",
            k.source
        );
    }
}

const SUITES: [(i64, usize, i64, usize); 6] = [
    (20, 20, 0, 0),
    (20, 36, 0, 0),
    (28, 36, 0, 0),
    (12, 16, 12, 32),
    (12, 32, 13, 48),
    (12, 32, 14, 64),
];

#[test]
fn round_trip_tamper_and_truncate_every_suite() {
    for (e, ek, i, ik) in SUITES {
        let t = EspTransform::new(e, &vec![7u8; ek], i, &vec![9u8; ik])
            .unwrap_or_else(|_| unreachable!());
        for esn in [false, true] {
            for len in [0usize, 1, 13, 14, 15, 16, 17, 100] {
                let payload: Vec<u8> = (0..len as u8).collect();
                let mut out = Vec::new();
                let seq = (3u64 << 32) | 77;
                t.seal_into(&mut out, 0x1234, seq, esn, 4, &payload, None)
                    .unwrap_or_else(|_| unreachable!());
                assert_eq!(out.len(), payload.len() + t.overhead(payload.len()));
                let hi = esn.then_some(3);
                let mut copy = out.clone();
                let o = t.open_in_place(&mut copy, hi);
                assert_eq!(
                    o.map(|o| (o.next_header, copy[o.payload].to_vec())),
                    Ok((4, payload.clone()))
                );
                for k in 0..out.len() {
                    let mut bad = out.clone();
                    bad[k] ^= 0x01;
                    assert!(t.open_in_place(&mut bad, hi).is_err(), "{e} {k}");
                }
                for n in 0..out.len() {
                    let mut short = out[..n].to_vec();
                    assert!(t.open_in_place(&mut short, hi).is_err());
                }
            }
        }
    }
}

#[test]
fn rejects_bad_keys_and_ivs() {
    assert!(EspTransform::new(20, &[0; 16], 0, &[]).is_err());
    assert!(EspTransform::new(28, &[0; 32], 0, &[]).is_err());
    assert!(EspTransform::new(12, &[0; 16], 12, &[0; 31]).is_err());
    assert!(EspTransform::new(3, &[0; 24], 2, &[0; 20]).is_err());
    let t = EspTransform::new(20, &[0; 20], 0, &[]).unwrap_or_else(|_| unreachable!());
    let mut out = vec![];
    assert!(t
        .seal_into(&mut out, 1, 1, false, 4, b"x", Some(&[0; 7]))
        .is_err());
    assert!(out.is_empty());
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| unreachable!())
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap_or_else(|_| unreachable!())
}

fn range(a: &str, b: &str) -> Selector {
    Selector {
        protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: ip(a),
        end: ip(b),
    }
}

/// A FAP's and a SeGW's ends of one CHILD SA (AES-GCM-128), keys as KEYMAT orders them.
fn pair(limits: Limits, esn: bool) -> (ChildSa, ChildSa) {
    let i_to_r = [1u8; 20];
    let r_to_i = [2u8; 20];
    let gcm = |k: &[u8]| EspTransform::new(20, k, 0, &[]).unwrap_or_else(|_| unreachable!());
    let fap_ts = Selectors {
        local: vec![Selector::host(ip("100.100.0.2"))],
        remote: vec![range("198.51.100.128", "198.51.100.255")],
    };
    let fap = ChildSa::new(ChildConfig {
        spi_in: 0xaaaa,
        spi_out: 0xbbbb,
        inbound: gcm(&r_to_i),
        outbound: gcm(&i_to_r),
        esn,
        replay_window: 1024,
        selectors: fap_ts.clone(),
        peer: addr("198.51.100.10:4500"),
        limits,
    });
    let segw = ChildSa::new(ChildConfig {
        spi_in: 0xbbbb,
        spi_out: 0xaaaa,
        inbound: gcm(&i_to_r),
        outbound: gcm(&r_to_i),
        esn,
        replay_window: 1024,
        selectors: Selectors {
            local: fap_ts.remote,
            remote: fap_ts.local,
        },
        peer: addr("100.64.0.1:1187"),
        limits,
    });
    (fap, segw)
}

/// An IPv4 UDP packet src -> dst with `len` octets of data.
fn udp(src: &str, dst: &str, len: usize) -> Vec<u8> {
    let total = 28 + len;
    let mut p = hex("4500 0000 0000 4000 4011 0000");
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    for a in [src, dst] {
        if let std::net::IpAddr::V4(v4) = ip(a) {
            p.extend_from_slice(&v4.octets());
        }
    }
    p.extend_from_slice(&hex("3039 1389 0000 0000"));
    p.extend(std::iter::repeat_n(0x61, len));
    p
}

#[test]
fn child_sa_carries_both_ways_and_refuses_the_rest() {
    let (fap, segw) = pair(Limits::default(), false);
    let nat = addr("100.64.0.1:1187");
    let up = udp("100.100.0.2", "198.51.100.200", 100);
    let mut wire = Vec::new();
    assert_eq!(fap.encapsulate(&up, &mut wire), Ok(None));
    let mut rx = wire.clone();
    let (range_, ev) = segw
        .decapsulate(&mut rx, nat)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(&rx[range_], &up[..]);
    assert_eq!(ev, None);
    // the same packet again is a replay
    let mut again = wire.clone();
    assert_eq!(segw.decapsulate(&mut again, nat), Err(Drop::Replay));
    // a flipped bit is an ICV failure, and does not consume the sequence number
    fap.encapsulate(&up, &mut wire)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut bad = wire.clone();
    bad[20] ^= 4;
    assert_eq!(segw.decapsulate(&mut bad, nat), Err(Drop::Integrity));
    assert!(segw.decapsulate(&mut wire.clone(), nat).is_ok());
    // outside the selectors: not sealed, and not delivered
    let stray = udp("100.100.0.9", "198.51.100.200", 10);
    assert_eq!(fap.encapsulate(&stray, &mut wire), Err(Drop::Selector));
    let down = udp("198.51.100.200", "100.100.0.2", 10);
    assert_eq!(fap.encapsulate(&down, &mut wire), Err(Drop::Selector));
    // a packet the SeGW sends that decrypts to a selector-violating payload is dropped:
    // build it with the SeGW's outbound key but an address the FAP does not own
    let mut forged = Vec::new();
    let spoof = udp("198.51.100.200", "100.100.0.3", 10);
    segw.outbound
        .seal_into(&mut forged, 0xaaaa, 9, false, 4, &spoof, None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fap.decapsulate(&mut forged, addr("198.51.100.10:4500")),
        Err(Drop::Selector)
    );
    // a dummy packet (next header 59) is authenticated, counted and dropped
    let mut dummy = Vec::new();
    segw.outbound
        .seal_into(&mut dummy, 0xaaaa, 10, false, 59, b"", None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fap.decapsulate(&mut dummy, addr("198.51.100.10:4500")),
        Err(Drop::Dummy)
    );
    let c = segw.counters.snapshot();
    assert_eq!(c[0], ("packets_in", 2));
    assert_eq!(c[4], ("replay_drops", 1));
    assert_eq!(c[5], ("icv_failures", 1));
    let f = fap.counters.snapshot();
    assert_eq!(f[7], ("dummies", 1));
    assert_eq!(f[8], ("selector_drops", 3));
}

#[test]
fn an_authentic_packet_from_a_new_address_moves_the_peer() {
    let (fap, segw) = pair(Limits::default(), true);
    let p = udp("100.100.0.2", "198.51.100.200", 10);
    let mut first = Vec::new();
    let mut second = Vec::new();
    fap.encapsulate(&p, &mut first)
        .unwrap_or_else(|e| panic!("{e:?}"));
    fap.encapsulate(&p, &mut second)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let old = addr("100.64.0.1:1187");
    let new = addr("100.64.0.1:2222");
    // a forged packet from the new address moves nothing
    let mut forged = second.clone();
    forged[12] ^= 1;
    assert_eq!(segw.decapsulate(&mut forged, new), Err(Drop::Integrity));
    assert_eq!(segw.peer(), old);
    let r = segw.decapsulate(&mut second, new).map(|(_, e)| e);
    assert_eq!(
        r,
        Ok(Some(Event::PeerMoved {
            spi_in: 0xbbbb,
            old,
            new
        }))
    );
    // a late packet from the old mapping does not move it back
    assert_eq!(segw.decapsulate(&mut first, old).map(|(_, e)| e), Ok(None));
    assert_eq!(segw.peer(), new);
}

#[test]
fn limits_raise_rekey_then_expire() {
    let limits = Limits {
        soft_packets: 3,
        hard_packets: 5,
        ..Limits::default()
    };
    let (fap, _) = pair(limits, false);
    let p = udp("100.100.0.2", "198.51.100.200", 10);
    let mut out = Vec::new();
    let events: Vec<_> = (0..6).map(|_| fap.encapsulate(&p, &mut out)).collect();
    assert_eq!(events[0], Ok(None));
    assert_eq!(
        events[2],
        Ok(Some(Event::Rekey {
            spi_in: 0xaaaa,
            what: "packets"
        }))
    );
    assert_eq!(events[3], Ok(None)); // asked once
    assert_eq!(
        events[4],
        Ok(Some(Event::Expired {
            spi_in: 0xaaaa,
            what: "packets"
        }))
    );
    assert_eq!(events[5], Err(Drop::Expired));
}

#[test]
fn sequence_numbers_never_wrap() {
    let (fap, _) = pair(Limits::default(), false);
    let p = udp("100.100.0.2", "198.51.100.200", 10);
    let mut out = Vec::new();
    fap.set_seq(u64::from(u32::MAX) - (1 << 20) - 2);
    assert_eq!(fap.encapsulate(&p, &mut out), Ok(None));
    assert_eq!(
        fap.encapsulate(&p, &mut out),
        Ok(Some(Event::Rekey {
            spi_in: 0xaaaa,
            what: "sequence"
        }))
    );
    fap.set_seq(u64::from(u32::MAX) - 1);
    assert!(fap.encapsulate(&p, &mut out).is_ok());
    assert_eq!(header(&out), Some((0xbbbb, u32::MAX)));
    assert_eq!(fap.encapsulate(&p, &mut out), Err(Drop::Expired));
    assert_eq!(fap.encapsulate(&p, &mut out), Err(Drop::Expired));
}

#[test]
fn table_routes_by_host_and_range_and_replaces_make_before_break() {
    let table = SaTable::default();
    let gcm = |b: u8| EspTransform::new(20, &[b; 20], 0, &[]).unwrap_or_else(|_| unreachable!());
    let cfg = |spi_in: u32, host: &str| ChildConfig {
        spi_in,
        spi_out: spi_in + 1,
        inbound: gcm(1),
        outbound: gcm(2),
        esn: false,
        replay_window: 64,
        selectors: Selectors {
            local: vec![range("198.51.100.128", "198.51.100.255")],
            remote: vec![Selector::host(ip(host))],
        },
        peer: addr("100.64.0.1:4500"),
        limits: Limits::default(),
    };
    assert!(table.install(cfg(10, "100.100.0.2")).is_ok());
    assert!(table.install(cfg(20, "100.100.0.3")).is_ok());
    assert_eq!(
        table.install(cfg(10, "100.100.0.4")).err(),
        Some(InstallError::SpiInUse)
    );
    let to = |h: &str| {
        table
            .outbound(&udp("198.51.100.200", h, 1))
            .map(|s| s.spi_in)
    };
    assert_eq!(to("100.100.0.2"), Some(10));
    assert_eq!(to("100.100.0.3"), Some(20));
    assert_eq!(to("100.100.0.9"), None);
    assert!(table.replace(10, cfg(11, "100.100.0.2")).is_ok());
    assert_eq!(to("100.100.0.2"), Some(11));
    assert!(table.inbound(10).is_some(), "old SA still receives");
    assert!(table.remove(10).is_some());
    assert!(table.inbound(10).is_none());
    assert_eq!(
        table.replace(10, cfg(12, "100.100.0.2")).err(),
        Some(InstallError::NoSuchSa)
    );
    assert_eq!(
        table
            .counters
            .no_sa_out
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
