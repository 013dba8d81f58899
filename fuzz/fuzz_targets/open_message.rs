//! Whole-message open (verify, decrypt, splice header + clear + inner payloads) never panics
//! on hostile datagrams, and whatever plaintext chain decodes survives seal -> open intact.
#![no_main]

use ikecp::codec::{decode_payloads, Message};
use ikecp::crypto::SkCipher;
use ikecp::message::{assemble, open, seal};
use libfuzzer_sys::fuzz_target;

/// (encr_id, key length with salt, integ_id, integ key length)
const TRANSFORMS: [(i64, usize, i64, usize); 3] = [(20, 36, 0, 0), (28, 36, 0, 0), (12, 32, 12, 32)];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (encr, klen, integ, ilen) = TRANSFORMS[usize::from(selector) % TRANSFORMS.len()];
    let Ok(cipher) = SkCipher::new(encr, &vec![0x5a; klen], integ, &vec![0xa5; ilen]) else {
        panic!("fixed keys must be accepted");
    };
    // Hostile datagram: any outcome but a panic is fine.
    if let Ok(opened) = open(&cipher, rest) {
        let _ = assemble(rest, opened.first_inner, &opened.plaintext);
    }
    // The splicing itself on hostile input: the bytes as datagram and as plaintext at once.
    if let Some((&first, chain)) = rest.split_first() {
        let _ = assemble(rest, first, chain);
        // A chain that decodes, sealed into a message, must open back to the same message.
        if let Ok(payloads) = decode_payloads(first, chain) {
            let msg = Message {
                spi_i: [1; 8],
                spi_r: [2; 8],
                exchange: 35,
                flags: 0x08,
                message_id: 7,
                major_version: 2,
                minor_version: 0,
                payloads,
            };
            if let Ok(wire) = seal(&cipher, &msg, None) {
                let opened = open(&cipher, &wire).expect("a sealed message opens");
                let back = assemble(&wire, opened.first_inner, &opened.plaintext)
                    .expect("a sealed message decodes");
                assert_eq!(back, msg);
            }
        }
    }
});
