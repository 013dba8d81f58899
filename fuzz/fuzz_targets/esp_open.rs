//! ESP receive on arbitrary datagrams never panics and never delivers a forgery; a packet
//! sealed from the same bytes (as an inner IPv4 packet) opens to exactly those bytes.
//!
//! Input: one octet picking the transform and ESN, then the datagram. The seed corpus in
//! corpus/esp_open holds authentic packets for each transform (keys as below).
#![no_main]

use std::net::SocketAddr;

use ikecp::esp::{ChildConfig, ChildSa, EspTransform, Limits, SaTable, Selector, Selectors};
use libfuzzer_sys::fuzz_target;

/// (encr_id, key length with salt, integ_id, integ key length)
const TRANSFORMS: [(i64, usize, i64, usize); 5] = [
    (20, 20, 0, 0),
    (20, 36, 0, 0),
    (28, 36, 0, 0),
    (12, 16, 12, 32),
    (12, 32, 14, 64),
];

fn any_v4() -> Selector {
    Selector {
        protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: [0, 0, 0, 0].into(),
        end: [255, 255, 255, 255].into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (encr, klen, integ, ilen) = TRANSFORMS[usize::from(selector & 0x7f) % TRANSFORMS.len()];
    let esn = selector & 0x80 != 0;
    let key = || EspTransform::new(encr, &vec![0x5a; klen], integ, &vec![0xa5; ilen]);
    let peer: SocketAddr = ([198, 51, 100, 10], 4500).into();
    let config = |spi: u32| match (key(), key()) {
        (Ok(inbound), Ok(outbound)) => ChildConfig {
            spi_in: spi,
            spi_out: spi,
            inbound,
            outbound,
            esn,
            replay_window: 1024,
            selectors: Selectors {
                local: vec![any_v4()],
                remote: vec![any_v4()],
            },
            peer,
            limits: Limits::default(),
        },
        _ => panic!("fixed keys must be accepted"),
    };
    let Ok(check) = key() else {
        panic!("fixed keys must be accepted");
    };
    let table = SaTable::default();
    if table.install(config(0x0000_1000)).is_err() {
        panic!("an empty table takes any SPI");
    }
    // Hostile input through the receive path: any refusal is fine, a panic is not.
    let mut buf = rest.to_vec();
    let opened = ikecp::esp::header(&buf)
        .and_then(|(spi, _)| table.inbound(spi))
        .map(|sa| sa.decapsulate(&mut buf, peer));
    if let Some(Ok((range, _))) = opened {
        // Delivered: it must have been an authentic packet under the fixed keys.
        let mut again = rest.to_vec();
        let hi = esn.then_some(0);
        assert!(check.open_in_place(&mut again, hi).is_ok());
        assert!(range.end <= buf.len());
    }
    // The same bytes behind an IPv4 header, sealed and opened, come back unchanged.
    let mut inner = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    inner.extend_from_slice(rest);
    let sa = ChildSa::new(config(0x0000_2000));
    let mut wire = Vec::new();
    if sa.encapsulate(&inner, &mut wire).is_ok() {
        let got = sa.decapsulate(&mut wire, peer).map(|(r, _)| wire[r].to_vec());
        assert_eq!(got, Ok(inner));
    }
});
