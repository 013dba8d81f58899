//! Codec errors. `ParseError::what` is one of the fixed phrases below, shared with the
//! pure-Python codec.

use std::fmt;

pub const TRUNCATED_HEADER: &str = "truncated header";
pub const LENGTH_MISMATCH: &str = "length mismatch";
pub const TRUNCATED_PAYLOAD: &str = "truncated payload";
pub const BAD_PAYLOAD_LENGTH: &str = "bad payload length";
pub const TRAILING_DATA: &str = "trailing data";
pub const BAD_PROPOSAL: &str = "bad proposal";
pub const BAD_TRANSFORM: &str = "bad transform";
pub const BAD_ATTRIBUTE: &str = "bad attribute";
pub const BAD_TRAFFIC_SELECTOR: &str = "bad traffic selector";
pub const BAD_SPI_SIZE: &str = "bad spi size";
pub const BAD_FRAGMENT_NUMBER: &str = "bad fragment number";
/// Only the framing walk reports it; the record decoder keeps such payloads for the engine.
pub const UNSUPPORTED_CRITICAL_PAYLOAD: &str = "unsupported critical payload";

/// Malformed input: what is wrong, where the offending structure starts (relative to the
/// buffer handed to the decoder) and which payload type was being decoded (`None`: header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub what: &'static str,
    pub offset: usize,
    pub payload: Option<u8>,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, offset: usize, payload: Option<u8>) -> Self {
        Self {
            what,
            offset,
            payload,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.payload {
            Some(t) => write!(
                f,
                "{} at offset {} (payload type {t})",
                self.what, self.offset
            ),
            None => write!(f, "{} at offset {} (header)", self.what, self.offset),
        }
    }
}

impl std::error::Error for ParseError {}

/// A value that cannot be put on the wire (the binding raises `ValueError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}
