//! PyO3 face of the crypto core: the prf/key-schedule functions, NAT-D, MODP and `SkCipher`.
//!
//! Core errors become `ikecp.errors` exceptions here (classes imported once and cached).
//! Byte arguments accept any buffer (`Buf`); integer arguments that do not fit are the
//! same error class the pure-Python twin raises.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple, PyType};

use super::buf::Buf;
use crate::crypto::{self, Error, Prf};

/// Below this many bytes the GIL is kept: releasing it costs more than the work.
const DETACH_THRESHOLD: usize = 16 * 1024;

static CRYPTO_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PARSE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INTEGRITY_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A core crypto error as the `ikecp.errors` (or builtin) exception the twin raises.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let class =
        |cell: &PyOnceLock<Py<PyType>>, name| cell.import(py, "ikecp.errors", name).cloned();
    let made = match err {
        Error::Crypto(msg) => class(&CRYPTO_ERROR, "CryptoError").map(|c| PyErr::from_type(c, msg)),
        Error::Value(msg) => Ok(PyValueError::new_err(msg)),
        Error::Parse {
            what,
            offset,
            payload,
        } => {
            class(&PARSE_ERROR, "ParseError").map(|c| PyErr::from_type(c, (what, offset, payload)))
        }
        Error::Integrity => {
            class(&INTEGRITY_ERROR, "IntegrityError").map(|c| PyErr::from_type(c, ()))
        }
    };
    made.unwrap_or_else(|import_failed| import_failed)
}

/// (encryption, integrity) transform ids; one that is no integer is an unsupported transform.
pub(crate) fn transform_ids(
    py: Python<'_>,
    encr_id: &Bound<'_, PyAny>,
    integ_id: &Bound<'_, PyAny>,
) -> PyResult<(i64, i64)> {
    let e = int_arg(
        py,
        encr_id,
        Error::Crypto("unsupported encryption transform"),
    )?;
    let i = int_arg(
        py,
        integ_id,
        Error::Crypto("unsupported integrity transform"),
    )?;
    Ok((e, i))
}

/// An integer argument as i64; one that does not fit gives `err` (the twin's error class).
pub(crate) fn int_arg(py: Python<'_>, value: &Bound<'_, PyAny>, err: Error) -> PyResult<i64> {
    value.extract::<i64>().map_err(|_| to_py(py, err))
}

fn next_payload_arg(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<i64> {
    int_arg(py, value, Error::Crypto("next payload must fit one octet"))
}

fn prf_arg(py: Python<'_>, prf_id: &Bound<'_, PyAny>) -> PyResult<Prf> {
    let id = int_arg(py, prf_id, Error::Crypto("unsupported PRF transform"))?;
    Prf::from_id(id).map_err(|e| to_py(py, e))
}

pub(crate) fn bytes_out<'py>(
    py: Python<'py>,
    r: Result<Vec<u8>, Error>,
) -> PyResult<Bound<'py, PyBytes>> {
    r.map(|v| PyBytes::new(py, &v)).map_err(|e| to_py(py, e))
}

/// prf(key, data) for PRF_HMAC_SHA1 / HMAC_SHA2_256/384/512.
#[pyfunction]
fn prf<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    key: Buf,
    data: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    bytes_out(py, crypto::prf(p, &key, &data))
}

/// prf+ of RFC 7296 §2.13 (at most 255 blocks).
#[pyfunction]
fn prf_plus<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    key: Buf,
    seed: Buf,
    length: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    let n = int_arg(py, length, Error::Crypto("bad prf+ length"))?;
    bytes_out(py, crypto::prf_plus(p, &key, &seed, n))
}

/// SKEYSEED = prf(Ni | Nr, g^ir).
#[pyfunction]
fn skeyseed<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    nonce_i: Buf,
    nonce_r: Buf,
    shared_secret: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    bytes_out(py, crypto::skeyseed(p, &nonce_i, &nonce_r, &shared_secret))
}

/// prf(SK_d (old), g^ir (new) | Ni | Nr).
#[pyfunction]
fn rekey_skeyseed<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    sk_d_old: Buf,
    shared_secret: Buf,
    nonce_i: Buf,
    nonce_r: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    bytes_out(
        py,
        crypto::rekey_skeyseed(p, &sk_d_old, &shared_secret, &nonce_i, &nonce_r),
    )
}

/// (SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn ike_keys<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    skeyseed: Buf,
    nonce_i: Buf,
    nonce_r: Buf,
    spi_i: Buf,
    spi_r: Buf,
    encr_key_len: &Bound<'py, PyAny>,
    integ_key_len: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    let p = prf_arg(py, prf_id)?;
    let e = int_arg(py, encr_key_len, Error::Crypto("bad key length"))?;
    let a = int_arg(py, integ_key_len, Error::Crypto("bad key length"))?;
    let keys = crypto::ike_keys(p, &skeyseed, &nonce_i, &nonce_r, &spi_i, &spi_r, e, a)
        .map_err(|err| to_py(py, err))?;
    PyTuple::new(py, keys.iter().map(|k| PyBytes::new(py, k)))
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr).
#[pyfunction]
#[pyo3(signature = (prf_id, sk_d, nonce_i, nonce_r, length, shared_secret = Buf::Empty))]
fn child_keymat<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    sk_d: Buf,
    nonce_i: Buf,
    nonce_r: Buf,
    length: &Bound<'py, PyAny>,
    shared_secret: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    let n = int_arg(py, length, Error::Crypto("bad KEYMAT length"))?;
    bytes_out(
        py,
        crypto::child_keymat(p, &sk_d, &nonce_i, &nonce_r, n, &shared_secret),
    )
}

/// message | nonce | prf(SK_p, RestOfIDPayload).
#[pyfunction]
fn signed_octets<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    message: Buf,
    nonce: Buf,
    sk_p: Buf,
    id_type: &Bound<'py, PyAny>,
    id_data: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    let t = int_arg(py, id_type, Error::Crypto("ID type must fit one octet"))?;
    bytes_out(
        py,
        crypto::signed_octets(p, &message, &nonce, &sk_p, t, &id_data),
    )
}

/// prf(prf(psk, "Key Pad for IKEv2"), signed_octets).
#[pyfunction]
fn psk_auth<'py>(
    py: Python<'py>,
    prf_id: &Bound<'py, PyAny>,
    psk: Buf,
    signed_octets: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = prf_arg(py, prf_id)?;
    bytes_out(py, crypto::psk_auth(p, &psk, &signed_octets))
}

/// SHA-1(SPIi | SPIr | IP | port).
#[pyfunction]
fn nat_detection_hash<'py>(
    py: Python<'py>,
    spi_i: Buf,
    spi_r: Buf,
    ip: Buf,
    port: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let port = int_arg(py, port, Error::Value("port must be 0-65535"))?;
    let hash = crypto::nat_detection_hash(&spi_i, &spi_r, &ip, port).map_err(|e| to_py(py, e))?;
    Ok(PyBytes::new(py, &hash))
}

/// Our MODP public value g^x mod p, padded to the prime's length (RFC 7296 §3.4).
#[pyfunction]
fn modp_public<'py>(
    py: Python<'py>,
    group: &Bound<'py, PyAny>,
    private: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let group = int_arg(py, group, Error::Crypto("unsupported MODP group"))?;
    bytes_out(py, py.detach(|| crypto::modp_public(group, &private)))
}

/// The MODP shared secret y^x mod p after checking the peer's value (RFC 6989 §2.1).
#[pyfunction]
fn modp_shared<'py>(
    py: Python<'py>,
    group: &Bound<'py, PyAny>,
    private: Buf,
    peer_public: Buf,
) -> PyResult<Bound<'py, PyBytes>> {
    let group = int_arg(py, group, Error::Crypto("unsupported MODP group"))?;
    bytes_out(
        py,
        py.detach(|| crypto::modp_shared(group, &private, &peer_public)),
    )
}

/// One direction's keyed SK payload protection (keys expanded once, wiped on drop).
#[pyclass(frozen, name = "SkCipher", module = "ikecp._native")]
pub(crate) struct SkCipher {
    pub(crate) inner: crypto::SkCipher,
}

#[pymethods]
impl SkCipher {
    #[new]
    fn new(
        py: Python<'_>,
        encr_id: &Bound<'_, PyAny>,
        encr_key: Buf,
        integ_id: &Bound<'_, PyAny>,
        integ_key: Buf,
    ) -> PyResult<Self> {
        let (e, i) = transform_ids(py, encr_id, integ_id)?;
        let inner = crypto::SkCipher::new(e, &encr_key, i, &integ_key).map_err(|e| to_py(py, e))?;
        Ok(SkCipher { inner })
    }

    #[getter]
    fn iv_size(&self) -> usize {
        self.inner.iv_size()
    }

    #[getter]
    fn icv_size(&self) -> usize {
        self.inner.icv_size()
    }

    /// prefix (length rewritten) | SK header | IV | ciphertext | ICV.
    #[pyo3(signature = (prefix, next_payload, plaintext, *, iv = None))]
    fn seal<'py>(
        &self,
        py: Python<'py>,
        prefix: Buf,
        next_payload: &Bound<'py, PyAny>,
        plaintext: Buf,
        iv: Option<Buf>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let np = next_payload_arg(py, next_payload)?;
        let iv = iv.as_deref();
        let run = || self.inner.seal(&prefix, np, &plaintext, iv);
        let out = if plaintext.len() >= DETACH_THRESHOLD {
            py.detach(run)
        } else {
            run()
        };
        bytes_out(py, out)
    }

    /// prefix (length rewritten) | SKF header | IV | ciphertext | ICV (RFC 7383 §2.5).
    #[pyo3(signature = (prefix, next_payload, fragment_number, total_fragments, plaintext, *, iv = None))]
    #[allow(clippy::too_many_arguments)]
    fn seal_fragment<'py>(
        &self,
        py: Python<'py>,
        prefix: Buf,
        next_payload: &Bound<'py, PyAny>,
        fragment_number: &Bound<'py, PyAny>,
        total_fragments: &Bound<'py, PyAny>,
        plaintext: Buf,
        iv: Option<Buf>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let np = next_payload_arg(py, next_payload)?;
        let bad = Error::Crypto("fragment number must be 1..total, total at most 65535");
        let number = int_arg(py, fragment_number, bad.clone())?;
        let total = int_arg(py, total_fragments, bad)?;
        let out = self
            .inner
            .seal_fragment(&prefix, np, number, total, &plaintext, iv.as_deref());
        bytes_out(py, out)
    }

    /// (Next Payload, Fragment Number, Total Fragments, plaintext) of the SKF payload that
    /// ends `data`; IntegrityError or ParseError on failure.
    fn open_fragment<'py>(
        &self,
        py: Python<'py>,
        data: Buf,
    ) -> PyResult<(u8, u16, u16, Bound<'py, PyBytes>)> {
        let f = self.inner.open_fragment(&data).map_err(|e| to_py(py, e))?;
        Ok((
            f.next_payload,
            f.number,
            f.total,
            PyBytes::new(py, &f.plaintext),
        ))
    }

    /// (first inner payload type, plaintext); IntegrityError or ParseError on failure.
    fn open<'py>(&self, py: Python<'py>, data: Buf) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let run = || self.inner.open(&data);
        let result = if data.len() >= DETACH_THRESHOLD {
            py.detach(run)
        } else {
            run()
        };
        let (first, plain) = result.map_err(|e| to_py(py, e))?;
        Ok((first, PyBytes::new(py, &plain)))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prf, m)?)?;
    m.add_function(wrap_pyfunction!(prf_plus, m)?)?;
    m.add_function(wrap_pyfunction!(skeyseed, m)?)?;
    m.add_function(wrap_pyfunction!(rekey_skeyseed, m)?)?;
    m.add_function(wrap_pyfunction!(ike_keys, m)?)?;
    m.add_function(wrap_pyfunction!(child_keymat, m)?)?;
    m.add_function(wrap_pyfunction!(signed_octets, m)?)?;
    m.add_function(wrap_pyfunction!(psk_auth, m)?)?;
    m.add_function(wrap_pyfunction!(nat_detection_hash, m)?)?;
    m.add_function(wrap_pyfunction!(modp_public, m)?)?;
    m.add_function(wrap_pyfunction!(modp_shared, m)?)?;
    m.add_class::<SkCipher>()?;
    Ok(())
}
