//! IKEv2 message and payload codec (RFC 7296 §3, RFC 7383 §2.5).
//!
//! `decode_*` borrows from the input buffer (no copy until the binding builds Python
//! objects); `encode_*` computes every derived field (lengths, chaining, counts, markers).
//! Decoding checks fields in the same order as `ikecp._reference.codec`, so both backends
//! report the same `ParseError` for the same bytes.

mod decode;
mod encode;
mod error;
mod frame;
mod model;
#[cfg(any(test, feature = "fuzzing"))]
mod oracle;
mod reader;

pub use decode::{decode_message, decode_payloads};
pub use encode::{encode_message, encode_payloads};
pub use error::{EncodeError, ParseError, UNSUPPORTED_CRITICAL_PAYLOAD};
pub use frame::{decode_header, walk_message, walk_payloads, Frame, Header};
pub use model::{
    AttrValue, Body, Bytes, ConfigAttribute, Message, Payload, Proposal, TrafficSelector,
    Transform, TransformAttribute,
};
#[cfg(any(test, feature = "fuzzing"))]
pub use oracle::check_round_trip;

#[cfg(test)]
mod tests;
