//! prf/prf+, key schedule, SK payload protection, NAT-D and MODP Diffie-Hellman (RFC 7296, RFC 5282, RFC 7634).
//!
//! Plain Rust over the RustCrypto primitives; the PyO3 layer maps [`Error`] onto the
//! `ikecp.errors` classes. Nothing here panics on peer input.

mod body;
mod caps;
mod error;
mod integ;
mod modp;
mod natd;
mod prf;
pub(crate) mod sk;

pub use body::{decrypt_body, encrypt_body};
pub use caps::transform_supported;
pub use error::Error;
pub use integ::{integ_compute, integ_sizes, integ_verify};
pub use modp::{modp_public, modp_shared, MODP_2048, MODP_2048_LEN};
pub use natd::nat_detection_hash;
pub use prf::{
    child_keymat, ike_keys, prf, prf_plus, psk_auth, rekey_skeyseed, signed_octets, skeyseed, Prf,
};
pub use sk::{find_sk, Fragment, Opened, SkCipher};
