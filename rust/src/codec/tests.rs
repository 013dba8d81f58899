//! Round trips and malformed input for the core codec (no Python involved).

use std::borrow::Cow;

use super::error::*;
use super::*;
use crate::hex;

fn b(data: &[u8]) -> Bytes<'_> {
    Cow::Borrowed(data)
}

fn p(body: Body<'_>) -> Payload<'_> {
    Payload {
        critical: false,
        body,
    }
}

fn ike_proposal() -> Proposal<'static> {
    let t = |ty, id, attributes| Transform { ty, id, attributes };
    Proposal {
        number: 1,
        protocol_id: 1,
        spi: b(b""),
        transforms: vec![
            t(
                1,
                20,
                vec![TransformAttribute {
                    ty: 14,
                    value: AttrValue::Tv(256),
                }],
            ),
            t(2, 5, vec![]),
            t(4, 31, vec![]),
        ],
    }
}

/// Same message as `tests/samples.py::sa_init_request`.
fn sa_init() -> Message<'static> {
    static KE_DATA: [u8; 32] = {
        let mut a = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            a[i] = i as u8;
            i += 1;
        }
        a
    };
    static NONCE: [u8; 32] = {
        let mut a = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            a[i] = 100 + i as u8;
            i += 1;
        }
        a
    };
    let notify = |t, d: &'static [u8]| {
        p(Body::Notify {
            protocol_id: 0,
            notify_type: t,
            spi: b(b""),
            data: b(d),
        })
    };
    Message {
        spi_i: [1, 2, 3, 4, 5, 6, 7, 8],
        spi_r: [0; 8],
        exchange: 34,
        flags: 8,
        message_id: 0,
        major_version: 2,
        minor_version: 0,
        payloads: vec![
            p(Body::Sa(vec![ike_proposal()])),
            p(Body::Ke {
                group: 31,
                data: b(&KE_DATA),
            }),
            p(Body::Nonce(b(&NONCE))),
            notify(16388, &[0x11; 20]),
            notify(16389, &[0x22; 20]),
            notify(16430, b""),
            p(Body::VendorId(b(b"ikecp test vendor id"))),
        ],
    }
}

fn every_payload() -> Message<'static> {
    let v4 = TrafficSelector {
        ts_type: 7,
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start_addr: b(&[0; 4]),
        end_addr: b(&[255; 4]),
    };
    let v6 = TrafficSelector {
        ts_type: 8,
        ip_protocol: 17,
        start_port: 4500,
        end_port: 500,
        start_addr: b(&[0x20; 16]),
        end_addr: b(&[0xff; 16]),
    };
    let cp_attr = |ty, value: &'static [u8]| ConfigAttribute {
        ty,
        value: b(value),
    };
    Message {
        spi_i: [9; 8],
        spi_r: [7; 8],
        exchange: 37,
        flags: 0x20,
        message_id: 0xDEADBEEF,
        major_version: 2,
        minor_version: 1,
        payloads: vec![
            p(Body::IdI {
                id_type: 2,
                data: b(b"fap.example"),
            }),
            p(Body::IdR {
                id_type: 1,
                data: b(&[198, 51, 100, 10]),
            }),
            p(Body::Cert {
                encoding: 4,
                data: b(b"\x30\x82"),
            }),
            p(Body::CertReq {
                encoding: 4,
                data: b(&[0xAA; 20]),
            }),
            p(Body::Auth {
                method: 2,
                data: b(&[0x5A; 32]),
            }),
            p(Body::Cp {
                cfg_type: 1,
                attributes: vec![cp_attr(1, b""), cp_attr(23, b"")],
            }),
            p(Body::Cp {
                cfg_type: 2,
                attributes: vec![cp_attr(23, &[100, 64, 0, 1, 4, 0xA3])],
            }),
            p(Body::Sa(vec![
                ike_proposal(),
                Proposal {
                    number: 2,
                    protocol_id: 3,
                    spi: b(&[1, 2, 3, 4]),
                    transforms: vec![Transform {
                        ty: 1,
                        id: 12,
                        attributes: vec![TransformAttribute {
                            ty: 7,
                            value: AttrValue::Tlv(b(b"tlv")),
                        }],
                    }],
                },
            ])),
            p(Body::TsI(vec![v4.clone(), v6])),
            p(Body::TsR(vec![v4])),
            p(Body::Delete {
                protocol_id: 1,
                spi_size: 0,
                spis: vec![],
            }),
            p(Body::Delete {
                protocol_id: 3,
                spi_size: 4,
                spis: vec![b(&[0, 0, 0, 1]), b(&[1, 2, 3, 4])],
            }),
            p(Body::Eap(b(&[1, 1, 0, 5, 1]))),
            Payload {
                critical: true,
                body: Body::Unknown {
                    ty: 200,
                    data: b(b"opaque"),
                },
            },
            p(Body::Sk {
                next_payload: 41,
                data: b(&[0xEE; 40]),
            }),
        ],
    }
}

fn fragment() -> Message<'static> {
    Message {
        payloads: vec![p(Body::Skf {
            next_payload: 35,
            fragment_number: 1,
            total_fragments: 3,
            data: b(&[0x99; 64]),
        })],
        ..sa_init()
    }
}

fn samples() -> Vec<Message<'static>> {
    vec![sa_init(), every_payload(), fragment()]
}

/// The hand-assembled IKE_SA_INIT of `tests/test_codec.py::SA_INIT_HEX` (RFC 7296 §3 figures).
fn sa_init_wire() -> Vec<u8> {
    let ke: String = (0..32u8).map(|i| format!("{i:02x}")).collect();
    let nonce: String = (100..132u8).map(|i| format!("{i:02x}")).collect();
    hex(&format!(
        "0102030405060708 0000000000000000 21 20 22 08 00000000 000000e8
         22000028 00000024 01010003 0300000c 01000014 800e0100 03000008 02000005
         00000008 0400001f
         28000028 001f0000 {ke}
         29000024 {nonce}
         2900001c 00004004 {n1}
         2900001c 00004005 {n2}
         2b000008 0000402e
         00000018 {vid}",
        n1 = "11".repeat(20),
        n2 = "22".repeat(20),
        vid = b"ikecp test vendor id"
            .iter()
            .map(|c| format!("{c:02x}"))
            .collect::<String>(),
    ))
}

#[test]
fn sa_init_exact_bytes() {
    let wire = sa_init_wire();
    assert_eq!(encode_message(&sa_init()).unwrap(), wire);
    assert_eq!(decode_message(&wire).unwrap(), sa_init());
}

#[test]
fn round_trips() {
    for msg in samples() {
        let wire = encode_message(&msg).unwrap();
        let back = decode_message(&wire).unwrap();
        assert_eq!(back, msg);
        assert_eq!(encode_message(&back).unwrap(), wire);
        let (first, chain) = encode_payloads(&msg.payloads).unwrap();
        assert_eq!(decode_payloads(first, &chain).unwrap(), msg.payloads);
    }
}

#[test]
fn every_truncation_is_an_error() {
    for msg in samples() {
        let wire = encode_message(&msg).unwrap();
        for n in 0..wire.len() {
            assert!(decode_message(&wire[..n]).is_err());
            if n >= 28 {
                let mut cut = wire[..n].to_vec();
                cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                assert!(decode_message(&cut).is_err(), "cut at {n}");
            }
        }
    }
}

#[test]
fn bit_flips_never_panic_and_reencode() {
    let wire = encode_message(&every_payload()).unwrap();
    let mut decoded = 0;
    for i in 0..wire.len() {
        for bit in [0x01u8, 0x80, 0xFF] {
            let mut m = wire.clone();
            m[i] ^= bit;
            if let Ok(msg) = decode_message(&m) {
                decoded += 1;
                // Whatever decodes re-encodes to something that decodes to the same message.
                if let Ok(again) = encode_message(&msg) {
                    assert_eq!(decode_message(&again).unwrap(), msg);
                }
            }
        }
    }
    assert!(decoded > 0);
}

fn perr(what: &'static str, offset: usize, payload: Option<u8>) -> ParseError {
    ParseError {
        what,
        offset,
        payload,
    }
}

#[test]
fn header_errors() {
    let wire = sa_init_wire();
    assert_eq!(
        decode_message(&wire[..27]),
        Err(perr(TRUNCATED_HEADER, 0, None))
    );
    let mut long = wire.clone();
    long.push(0);
    assert_eq!(decode_message(&long), Err(perr(LENGTH_MISMATCH, 0, None)));
    long[27] += 1;
    assert_eq!(
        decode_message(&long),
        Err(perr(TRAILING_DATA, 232, Some(43)))
    );
}

#[test]
fn chain_errors() {
    assert_eq!(
        decode_payloads(40, &[0, 0, 0]),
        Err(perr(TRUNCATED_PAYLOAD, 0, Some(40)))
    );
    assert_eq!(
        decode_payloads(40, &[0, 0, 0, 3]),
        Err(perr(BAD_PAYLOAD_LENGTH, 0, Some(40)))
    );
    assert_eq!(
        decode_payloads(34, &[0, 0, 0, 7, 1, 2, 3]),
        Err(perr(BAD_PAYLOAD_LENGTH, 0, Some(34)))
    );
    assert_eq!(
        decode_payloads(40, &[40, 0, 0, 4]),
        Err(perr(TRUNCATED_PAYLOAD, 4, Some(40)))
    );
    assert_eq!(
        decode_payloads(46, &[40, 0, 0, 4, 0, 0, 0, 4]),
        Err(perr(TRAILING_DATA, 4, Some(46)))
    );
    // A long chain of minimal payloads terminates, 4 bytes at a time.
    let mut data = [40u8, 0, 0, 4].repeat(10_000);
    data[39_996] = 0;
    assert_eq!(decode_payloads(40, &data).unwrap().len(), 10_000);
}

#[test]
fn substructure_errors() {
    // 255 transforms announced, one present.
    let sa = hex("00000014 00000010 010100ff 00000008 0400001f");
    assert_eq!(
        decode_payloads(33, &sa),
        Err(perr(BAD_TRANSFORM, 12, Some(33)))
    );
    let ts = hex("00000018 ff000000 07000010 0000ffff 00000000 ffffffff");
    assert_eq!(
        decode_payloads(44, &ts),
        Err(perr(BAD_TRAFFIC_SELECTOR, 24, Some(44)))
    );
    let del = hex("00000008 0100ffff");
    assert_eq!(
        decode_payloads(42, &del),
        Err(perr(BAD_SPI_SIZE, 0, Some(42)))
    );
    let skf = hex("00000008 00030002");
    assert_eq!(
        decode_payloads(53, &skf),
        Err(perr(BAD_FRAGMENT_NUMBER, 0, Some(53)))
    );
    let cp = hex("0000000e 02000000 00170006 0102");
    assert_eq!(
        decode_payloads(47, &cp),
        Err(perr(BAD_ATTRIBUTE, 8, Some(47)))
    );
}

#[test]
fn encode_errors() {
    let sk_first = vec![
        p(Body::Sk {
            next_payload: 35,
            data: b(b""),
        }),
        p(Body::Nonce(b(b""))),
    ];
    assert!(encode_payloads(&sk_first).is_err());
    assert!(encode_payloads(&[p(Body::Nonce(Cow::Owned(vec![0; 65532])))]).is_err());
    assert!(encode_payloads(&[p(Body::Nonce(Cow::Owned(vec![0; 65531])))]).is_ok());
    assert!(encode_payloads(&[p(Body::Sa(vec![]))]).is_err());
    let unknown_sa = p(Body::Unknown {
        ty: 33,
        data: b(b""),
    });
    assert!(encode_payloads(&[unknown_sa]).is_err());
    let bad_delete = p(Body::Delete {
        protocol_id: 3,
        spi_size: 4,
        spis: vec![b(b"abc")],
    });
    assert!(encode_payloads(&[bad_delete]).is_err());
    assert_eq!(encode_payloads(&[]).unwrap(), (0, vec![]));
}

/// The fuzz target's body over the committed seed corpus plus deterministic mutations, so the
/// round-trip contract is exercised by every `cargo test` even where cargo-fuzz is missing.
#[test]
fn fuzz_corpus_and_mutations() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/parse_message");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("seed corpus present")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 20);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    for seed in &seeds {
        check_round_trip(seed);
        for _ in 0..300 {
            let mut m = seed.clone();
            match rand(3) {
                0 => {
                    for _ in 0..=rand(4) {
                        let i = rand(m.len());
                        m[i] ^= 1 << rand(8);
                    }
                }
                1 => m.truncate(rand(m.len())),
                _ => {
                    let other = &seeds[rand(seeds.len())];
                    let j = rand(other.len());
                    m.truncate(rand(m.len()));
                    m.extend_from_slice(&other[j..]);
                }
            }
            if m.len() >= 28 && rand(2) == 0 {
                let len = (m.len() as u32).to_be_bytes();
                m[24..28].copy_from_slice(&len);
            }
            check_round_trip(&m);
        }
    }
}
