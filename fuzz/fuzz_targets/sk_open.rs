//! SkCipher::open / open_fragment on arbitrary datagrams never panic, and seal -> open and
//! seal_fragment -> open_fragment round-trip.
#![no_main]

use ikecp::crypto::SkCipher;
use libfuzzer_sys::fuzz_target;

/// (encr_id, key length with salt, integ_id, integ key length)
const TRANSFORMS: [(i64, usize, i64, usize); 5] = [
    (20, 20, 0, 0),
    (20, 36, 0, 0),
    (28, 36, 0, 0),
    (12, 16, 2, 20),
    (12, 32, 14, 64),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (encr, klen, integ, ilen) = TRANSFORMS[usize::from(selector) % TRANSFORMS.len()];
    let Ok(cipher) = SkCipher::new(encr, &vec![0x5a; klen], integ, &vec![0xa5; ilen]) else {
        panic!("fixed keys must be accepted");
    };
    // Hostile input: any outcome but a panic is fine.
    let _ = cipher.open(rest);
    let _ = cipher.open_fragment(rest);
    // The same bytes as a plaintext behind a fixed header must survive a round trip.
    let mut header = [0u8; 28];
    header[16] = 46;
    let sealed = cipher.seal(&header, 35, rest, None);
    match sealed {
        Ok(sealed) => assert_eq!(
            cipher.open(&sealed).map(|(t, p)| (t, p.to_vec())),
            Ok((35, rest.to_vec()))
        ),
        Err(_) => assert!(rest.len() > 60_000),
    }
    header[16] = 53;
    match cipher.seal_fragment(&header, 0, 2, 3, rest, None) {
        Ok(sealed) => assert_eq!(
            cipher.open_fragment(&sealed).map(|f| (
                f.next_payload,
                f.number,
                f.total,
                f.plaintext.to_vec()
            )),
            Ok((0, 2, 3, rest.to_vec()))
        ),
        Err(_) => assert!(rest.len() > 60_000),
    }
});
