//! decode -> encode -> decode on arbitrary bytes, as a message and as a bare payload chain.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ikecp::codec::check_round_trip(data);
});
