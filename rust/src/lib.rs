//! ikecp native core: IKEv2 wire codec, crypto and batched UDP I/O.
//!
//! The core modules (`codec`, `crypto`, `io`) are plain Rust with no Python in them, so
//! `cargo test` and the fuzz targets run without an interpreter. Only `python` (behind the
//! `python` feature, turned on by maturin) knows about PyO3.

pub mod codec;
pub mod crypto;
#[cfg(target_os = "linux")]
pub mod io;

#[cfg(feature = "python")]
mod python;
