//! The one error type of the crypto core.

use core::fmt;

/// What went wrong; the binding maps each variant to one Python exception class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Unsupported transform, bad key size or a caller argument out of range (`CryptoError`).
    Crypto(&'static str),
    /// A plain argument error for the non-crypto helpers such as NAT-D (`ValueError`).
    Value(&'static str),
    /// Malformed datagram structure (`ParseError(what, offset, payload)`).
    Parse {
        what: &'static str,
        offset: usize,
        payload: Option<u8>,
    },
    /// The SK payload failed verification; carries no detail on purpose (`IntegrityError`).
    Integrity,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Crypto(m) | Error::Value(m) => f.write_str(m),
            Error::Parse {
                what,
                offset,
                payload,
            } => write!(f, "{what} at offset {offset} (payload {payload:?})"),
            Error::Integrity => f.write_str("integrity check failed"),
        }
    }
}

impl std::error::Error for Error {}
