//! prf/prf+, key schedule, SK payload protection and NAT-D (RFC 7296, RFC 5282, RFC 7634).
//!
//! Plain Rust over the RustCrypto primitives; the PyO3 layer maps [`Error`] onto the
//! `ikecp.errors` classes. Nothing here panics on peer input.

mod error;
mod natd;
mod prf;
pub(crate) mod sk;

pub use error::Error;
pub use natd::nat_detection_hash;
pub use prf::{
    child_keymat, ike_keys, prf, prf_plus, psk_auth, rekey_skeyseed, signed_octets, skeyseed, Prf,
};
pub use sk::{Fragment, SkCipher};
