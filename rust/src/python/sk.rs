//! Whole-message SK protection in one native call: the codec binding's object conversion
//! composed with the crypto core's `SkCipher`, no Python round trip in between.
//!
//! Same results and error classes as `ikecp._reference.sk`; a cipher that is not the native
//! `SkCipher` (e.g. the reference one) is driven through its `seal`/`open` methods.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use pyo3::{intern, wrap_pyfunction};

use super::codec::{encode_error, message_from_py, message_to_py, parse_error};
use super::crypto::{to_py, SkCipher};
use crate::codec::{self, Body, Message, ParseError};

const SK: u8 = 46;

/// The fixed header of `data` as a core message with no payloads yet.
fn header(data: &[u8]) -> Option<Message<'static>> {
    let (spi_i, rest) = data.split_first_chunk::<8>()?;
    let (spi_r, rest) = rest.split_first_chunk::<8>()?;
    let (&[_next, version, exchange, flags], rest) = rest.split_first_chunk::<4>()?;
    let message_id = u32::from_be_bytes(*rest.first_chunk::<4>()?);
    Some(Message {
        spi_i: *spi_i,
        spi_r: *spi_r,
        exchange,
        flags,
        message_id,
        major_version: version >> 4,
        minor_version: version & 0x0F,
        payloads: Vec::new(),
    })
}

/// Verify and decrypt `data`, then decode header, clear payloads and inner payloads into an
/// `ikecp.message.Message`; IntegrityError / ParseError as `SkCipher.open`.
#[pyfunction]
fn open_message<'py>(
    py: Python<'py>,
    cipher: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let wire: PyBackedBytes = data.extract()?;
    let native_plain;
    let py_plain: PyBackedBytes;
    let (first, plain): (u8, &[u8]) = if let Ok(c) = cipher.cast::<SkCipher>() {
        let (first, p) = c.get().inner.open(&wire).map_err(|e| to_py(py, e))?;
        native_plain = p;
        (first, &native_plain)
    } else {
        let (first, p): (u8, PyBackedBytes) = cipher
            .call_method1(intern!(py, "open"), (data,))?
            .extract()?;
        py_plain = p;
        (first, &py_plain)
    };
    let inner = codec::decode_payloads(first, plain).map_err(|e| parse_error(py, e))?;
    let mut msg = header(&wire).ok_or_else(|| {
        parse_error(
            py,
            ParseError {
                what: "truncated IKE header",
                offset: 0,
                payload: None,
            },
        )
    })?;
    if wire.get(16) != Some(&SK) {
        let outer = codec::decode_message(&wire).map_err(|e| parse_error(py, e))?;
        msg.payloads = outer
            .payloads
            .into_iter()
            .filter(|p| !matches!(p.body, Body::Sk { .. }))
            .collect();
    }
    msg.payloads.extend(inner);
    message_to_py(py, &msg)
}

/// Encode `msg`'s header and payloads, encrypt the payloads into one SK payload and return
/// the datagram.
#[pyfunction]
#[pyo3(signature = (cipher, msg, *, iv = None))]
fn seal_message<'py>(
    py: Python<'py>,
    cipher: &Bound<'py, PyAny>,
    msg: &Bound<'py, PyAny>,
    iv: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut m = message_from_py(msg)?;
    let payloads = std::mem::take(&mut m.payloads);
    let mut head = codec::encode_message(&m).map_err(encode_error)?;
    if let Some(next) = head.get_mut(16) {
        *next = SK;
    }
    let (first, body) = codec::encode_payloads(&payloads).map_err(encode_error)?;
    if let Ok(c) = cipher.cast::<SkCipher>() {
        let iv: Option<PyBackedBytes> = iv.map(|v| v.extract()).transpose()?;
        let out = c
            .get()
            .inner
            .seal(&head, i64::from(first), &body, iv.as_deref())
            .map_err(|e| to_py(py, e))?;
        return Ok(PyBytes::new(py, &out).into_any());
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item(intern!(py, "iv"), iv)?;
    cipher.call_method(
        intern!(py, "seal"),
        (PyBytes::new(py, &head), first, PyBytes::new(py, &body)),
        Some(&kwargs),
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(open_message, m)?)?;
    m.add_function(wrap_pyfunction!(seal_message, m)?)?;
    Ok(())
}
