//! ikecp native core: IKEv2 wire codec, crypto and batched UDP I/O.
//!
//! The core modules (`codec`, `crypto`, `esp`, `io`, `dataplane`, `message`) are plain Rust with
//! no Python in them, so
//! `cargo test` and the fuzz targets run without an interpreter. Only `python` (behind the
//! `python` feature, turned on by maturin) knows about PyO3.

pub mod codec;
pub mod crypto;
#[cfg(target_os = "linux")]
pub mod dataplane;
pub mod esp;
#[cfg(target_os = "linux")]
pub mod io;
pub mod message;

#[cfg(feature = "python")]
mod python;

/// Hex test vectors as written in RFCs (whitespace allowed); panics on a malformed vector.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex test vector"))
        .collect()
}
