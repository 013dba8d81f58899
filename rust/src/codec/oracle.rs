//! The round-trip contract, as one function the fuzz target and `cargo test` both drive.

use super::{decode_message, decode_payloads, encode_message, encode_payloads};

/// Panics if the codec breaks its contract on `data`: whatever decodes must re-encode to the
/// same length (only reserved bits may differ), decode back to the same value, and reach a
/// fixed point. Inputs that do not decode only have to fail cleanly, which they do by
/// returning.
pub fn check_round_trip(data: &[u8]) {
    if let Ok(msg) = decode_message(data) {
        let wire = encode_message(&msg).expect("a decoded message re-encodes");
        assert_eq!(wire.len(), data.len());
        let again = decode_message(&wire).expect("a re-encoded message decodes");
        assert_eq!(again, msg);
        assert_eq!(encode_message(&again).expect("re-encodes"), wire);
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(payloads) = decode_payloads(first, rest) {
            let (ty, wire) = encode_payloads(&payloads).expect("decoded payloads re-encode");
            assert_eq!(ty, if payloads.is_empty() { 0 } else { first });
            assert_eq!(wire.len(), rest.len());
            assert_eq!(
                decode_payloads(ty, &wire).expect("re-encoded payloads decode"),
                payloads
            );
        }
    }
}
