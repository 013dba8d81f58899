//! PyO3 face of the bytes-level accelerator calls (`ikecp.lowlevel`): integrity, the SK body,
//! whole-datagram seal/open with the IV, header-only decode, the framing walk and the
//! capability query. Every byte argument takes any buffer (`Buf`); results are `bytes`, ints
//! and tuples only, so the host builds whatever objects it likes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyTuple};
use pyo3::{intern, wrap_pyfunction};

use super::buf::Buf;
use super::codec::{first_type_arg, parse_error, tuple_of};
use super::crypto::{bytes_out, int_arg, to_py, SkCipher};
use crate::codec::{self, Frame};
use crate::crypto::{self, Error};

const BAD_INTEG: Error = Error::Crypto("unsupported integrity transform");
const BAD_ENCR: Error = Error::Crypto("unsupported encryption transform");

/// The truncated ICV of `data` (RFC 2404, RFC 4868).
#[pyfunction]
fn integ_compute<'py>(
    py: Python<'py>,
    integ_id: &Bound<'py, PyAny>,
    key: Buf,
    data: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let id = int_arg(py, integ_id, BAD_INTEG)?;
    bytes_out(py, crypto::integ_compute(id, &key, &data))
}

/// Whether `icv` is the ICV of `data`, compared in constant time.
#[pyfunction]
fn integ_verify(
    py: Python<'_>,
    integ_id: &Bound<'_, PyAny>,
    key: Buf,
    data: Buf,
    icv: Buf,
) -> PyResult<bool> {
    let id = int_arg(py, integ_id, BAD_INTEG)?;
    crypto::integ_verify(id, &key, &data, &icv).map_err(|e| to_py(py, e))
}

/// SK body: plaintext | padding | pad length, encrypted (AEAD: ICV appended).
#[pyfunction]
fn encrypt_body<'py>(
    py: Python<'py>,
    encr_id: &Bound<'py, PyAny>,
    key: Buf,
    iv: Buf,
    aad: Buf,
    plaintext: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let id = int_arg(py, encr_id, BAD_ENCR)?;
    bytes_out(py, crypto::encrypt_body(id, &key, &iv, &aad, &plaintext))
}

/// The plaintext of an SK body, padding removed; IntegrityError if it does not verify.
#[pyfunction]
fn decrypt_body<'py>(
    py: Python<'py>,
    encr_id: &Bound<'py, PyAny>,
    key: Buf,
    iv: Buf,
    aad: Buf,
    body: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let id = int_arg(py, encr_id, BAD_ENCR)?;
    let plain = crypto::decrypt_body(id, &key, &iv, &aad, &body).map_err(|e| to_py(py, e))?;
    Ok(PyBytes::new(py, &plain))
}

/// `cipher.seal` with any buffers: the Next Payload before SK is set to 46 by the cipher.
#[pyfunction]
#[pyo3(signature = (cipher, prefix, next_payload, plaintext, *, iv = None))]
fn seal_datagram<'py>(
    py: Python<'py>,
    cipher: &Bound<'py, PyAny>,
    prefix: Buf,
    next_payload: &Bound<'py, PyAny>,
    plaintext: Buf,
    iv: Option<Buf>,
) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(c) = cipher.cast::<SkCipher>() {
        let np = int_arg(
            py,
            next_payload,
            Error::Crypto("next payload must fit one octet"),
        )?;
        let out = c.get().inner.seal(&prefix, np, &plaintext, iv.as_deref());
        return Ok(bytes_out(py, out)?.into_any());
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item(intern!(py, "iv"), iv.map(|v| PyBytes::new(py, &v)))?;
    cipher.call_method(
        intern!(py, "seal"),
        (
            PyBytes::new(py, &prefix),
            next_payload,
            PyBytes::new(py, &plaintext),
        ),
        Some(&kwargs),
    )
}

/// (first inner payload type, IV, inner chain) of the SK payload that ends `data`.
#[pyfunction]
fn open_datagram<'py>(
    py: Python<'py>,
    cipher: &Bound<'py, PyAny>,
    data: Buf,
) -> PyResult<Bound<'py, PyTuple>> {
    if let Ok(c) = cipher.cast::<SkCipher>() {
        let o = c.get().inner.open_sk(&data).map_err(|e| to_py(py, e))?;
        let iv = data.get(o.iv.clone()).unwrap_or_default();
        return (
            o.first_inner,
            PyBytes::new(py, iv),
            PyBytes::new(py, &o.plaintext),
        )
            .into_pyobject(py);
    }
    let (first, plain): (u8, Bound<'py, PyBytes>) = cipher
        .call_method1(intern!(py, "open"), (PyBytes::new(py, &data),))?
        .extract()?;
    let sk = crypto::find_sk(&data).map_err(|e| to_py(py, e))?;
    let iv_size: usize = cipher.getattr(intern!(py, "iv_size"))?.extract()?;
    let iv = data.get(sk + 4..sk + 4 + iv_size).unwrap_or_default();
    (first, PyBytes::new(py, iv), plain).into_pyobject(py)
}

fn header_tuple<'py>(py: Python<'py>, h: &codec::Header) -> PyResult<Bound<'py, PyTuple>> {
    (
        PyBytes::new(py, &h.spi_i),
        PyBytes::new(py, &h.spi_r),
        h.next_payload,
        h.major_version,
        h.minor_version,
        h.exchange,
        h.flags,
        h.message_id,
        h.length,
    )
        .into_pyobject(py)
}

/// (spi_i, spi_r, next_payload, major, minor, exchange, flags, message_id, length).
#[pyfunction]
fn decode_header<'py>(py: Python<'py>, data: Buf) -> PyResult<Bound<'py, PyTuple>> {
    let h = codec::decode_header(&data).map_err(|e| parse_error(py, e))?;
    header_tuple(py, &h)
}

fn frames_tuple<'py>(py: Python<'py>, frames: &[Frame]) -> PyResult<Bound<'py, PyTuple>> {
    tuple_of(py, frames, |f| {
        Ok((f.ty, PyBool::new(py, f.critical), f.offset, f.length)
            .into_pyobject(py)?
            .into_any())
    })
}

/// The `offset` argument: any int (one too large for i64 is `None`); other types TypeError.
struct Offset(Option<i64>);

impl<'a, 'py> FromPyObject<'a, 'py> for Offset {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if !obj.is_instance_of::<pyo3::types::PyInt>() {
            return Err(PyTypeError::new_err("offset must be an int"));
        }
        Ok(Offset(obj.extract::<i64>().ok()))
    }
}

/// ((type, critical, offset, length), ...) of the chain starting at `offset` in `data`.
#[pyfunction]
#[pyo3(signature = (first_type, data, offset = Offset(Some(0))))]
fn walk_payloads<'py>(
    py: Python<'py>,
    first_type: &Bound<'py, PyAny>,
    data: Buf,
    offset: Offset,
) -> PyResult<Bound<'py, PyTuple>> {
    let first = first_type_arg(py, first_type)?;
    let offset = offset
        .0
        .and_then(|o| usize::try_from(o).ok())
        .filter(|&o| o <= data.len())
        .ok_or_else(|| PyValueError::new_err("offset must be an int in 0..len(data)"))?;
    walk_from(py, first, &data, offset)
}

fn walk_from<'py>(
    py: Python<'py>,
    first: u8,
    data: &[u8],
    offset: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut frames = Vec::with_capacity(16);
    codec::walk_payloads(first, data, offset, &mut frames).map_err(|e| parse_error(py, e))?;
    frames_tuple(py, &frames)
}

/// (header tuple, frames) of a whole datagram; its length field must match.
#[pyfunction]
fn walk_message<'py>(py: Python<'py>, data: Buf) -> PyResult<Bound<'py, PyTuple>> {
    let mut frames = Vec::with_capacity(16);
    let h = codec::walk_message(&data, &mut frames).map_err(|e| parse_error(py, e))?;
    (header_tuple(py, &h)?, frames_tuple(py, &frames)?).into_pyobject(py)
}

/// Whether ikecp implements this transform (key_length: the Key Length attribute in bits).
#[pyfunction]
#[pyo3(signature = (transform_type, transform_id, key_length = None))]
fn transform_supported(
    transform_type: &Bound<'_, PyAny>,
    transform_id: &Bound<'_, PyAny>,
    key_length: Option<&Bound<'_, PyAny>>,
) -> PyResult<bool> {
    let int = |v: &Bound<'_, PyAny>| -> PyResult<Option<i64>> {
        if !v.is_instance_of::<pyo3::types::PyInt>() {
            return Err(PyTypeError::new_err("transform arguments must be ints"));
        }
        Ok(v.extract::<i64>().ok())
    };
    let (Some(t), Some(i)) = (int(transform_type)?, int(transform_id)?) else {
        return Ok(false);
    };
    let k = match key_length {
        None => None,
        Some(v) => match int(v)? {
            Some(k) => Some(k),
            None => return Ok(false),
        },
    };
    Ok(crypto::transform_supported(t, i, k))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(integ_compute, m)?)?;
    m.add_function(wrap_pyfunction!(integ_verify, m)?)?;
    m.add_function(wrap_pyfunction!(encrypt_body, m)?)?;
    m.add_function(wrap_pyfunction!(decrypt_body, m)?)?;
    m.add_function(wrap_pyfunction!(seal_datagram, m)?)?;
    m.add_function(wrap_pyfunction!(open_datagram, m)?)?;
    m.add_function(wrap_pyfunction!(decode_header, m)?)?;
    m.add_function(wrap_pyfunction!(walk_payloads, m)?)?;
    m.add_function(wrap_pyfunction!(walk_message, m)?)?;
    m.add_function(wrap_pyfunction!(transform_supported, m)?)?;
    Ok(())
}
