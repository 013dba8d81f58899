//! Whole-message SK protection in one native call: the core's `message::{open, assemble,
//! seal}` between the codec binding's object conversion, no Python round trip in between.
//!
//! Same results and error classes as `ikecp._reference.sk`; a cipher that is not the native
//! `SkCipher` (e.g. the reference one) is driven through its `seal`/`open` methods.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use pyo3::{intern, wrap_pyfunction};

use super::buf::Buf;
use super::codec::{encode_error, message_from_py, message_to_py, parse_error};
use super::crypto::{to_py, SkCipher};
use crate::message::{self, SealError};

/// Verify and decrypt `data`, then decode header, clear payloads and inner payloads into an
/// `ikecp.message.Message`; IntegrityError / ParseError as `SkCipher.open`.
#[pyfunction]
fn open_message<'py>(
    py: Python<'py>,
    cipher: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let wire: Buf = data.extract()?;
    if let Ok(c) = cipher.cast::<SkCipher>() {
        let opened = message::open(&c.get().inner, &wire).map_err(|e| to_py(py, e))?;
        let msg = message::assemble(&wire, opened.first_inner, &opened.plaintext)
            .map_err(|e| parse_error(py, e))?;
        return message_to_py(py, &msg);
    }
    let (first, plain): (u8, PyBackedBytes) = cipher
        .call_method1(intern!(py, "open"), (PyBytes::new(py, &wire),))?
        .extract()?;
    let msg = message::assemble(&wire, first, &plain).map_err(|e| parse_error(py, e))?;
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
    let m = message_from_py(msg)?;
    if let Ok(c) = cipher.cast::<SkCipher>() {
        let iv: Option<Buf> = iv.map(|v| v.extract()).transpose()?;
        let out = message::seal(&c.get().inner, &m, iv.as_deref()).map_err(|e| match e {
            SealError::Encode(e) => encode_error(e),
            SealError::Crypto(e) => to_py(py, e),
        })?;
        return Ok(PyBytes::new(py, &out).into_any());
    }
    let (head, first, body) = message::seal_parts(&m).map_err(encode_error)?;
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
