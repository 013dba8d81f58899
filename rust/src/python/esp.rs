//! PyO3 face of `crate::esp`'s per-packet pieces: `EspTransform` (seal/open one ESP packet)
//! and `ReplayWindow`, with the same signatures and errors as `ikecp._reference.esp`.

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use super::crypto::{to_py, transform_ids};
use crate::crypto::Error;
use crate::esp;

/// An unsigned argument of at most `bits` bits, or CryptoError(`what`) like the twin.
fn uint_arg(py: Python<'_>, v: &Bound<'_, PyAny>, bits: u32, what: &'static str) -> PyResult<u64> {
    v.extract::<u64>()
        .ok()
        .filter(|&n| bits == 64 || n >> bits == 0)
        .ok_or_else(|| to_py(py, Error::Crypto(what)))
}

/// One direction of an ESP SA's keyed transform (RFC 4303, RFC 4106, RFC 7634, RFC 4868).
#[pyclass(frozen, name = "EspTransform", module = "ikecp._native")]
pub(crate) struct EspTransform {
    inner: esp::EspTransform,
}

#[pymethods]
impl EspTransform {
    #[new]
    fn new(
        py: Python<'_>,
        encr_id: &Bound<'_, PyAny>,
        encr_key: PyBackedBytes,
        integ_id: &Bound<'_, PyAny>,
        integ_key: PyBackedBytes,
    ) -> PyResult<Self> {
        let (e, i) = transform_ids(py, encr_id, integ_id)?;
        let inner =
            esp::EspTransform::new(e, &encr_key, i, &integ_key).map_err(|e| to_py(py, e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn iv_size(&self) -> usize {
        self.inner.iv_size()
    }

    #[getter]
    fn icv_size(&self) -> usize {
        self.inner.icv_size()
    }

    /// SPI | low 32 bits of `seq` | IV | ciphertext | ICV. With `esn` the high 32 bits of
    /// `seq` are authenticated too. Without `iv`, the IV is derived from `seq` (unique).
    #[pyo3(signature = (spi, seq, next_header, payload, *, esn = false, iv = None))]
    #[allow(clippy::too_many_arguments)]
    fn seal<'py>(
        &self,
        py: Python<'py>,
        spi: &Bound<'py, PyAny>,
        seq: &Bound<'py, PyAny>,
        next_header: &Bound<'py, PyAny>,
        payload: PyBackedBytes,
        esn: bool,
        iv: Option<PyBackedBytes>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let spi = uint_arg(py, spi, 32, "SPI must fit 32 bits")? as u32;
        let seq = uint_arg(py, seq, 64, "sequence number must fit 64 bits")?;
        let nh = uint_arg(py, next_header, 8, "next header must fit one octet")? as u8;
        let mut out = Vec::with_capacity(payload.len() + self.inner.overhead(payload.len()));
        self.inner
            .seal_into(&mut out, spi, seq, esn, nh, &payload, iv.as_deref())
            .map_err(|e| to_py(py, e))?;
        Ok(PyBytes::new(py, &out))
    }

    /// (next header, payload); IntegrityError on a bad ICV, ParseError on a malformed
    /// packet or padding. `seq_hi`: the high half of the sequence number with ESN.
    #[pyo3(signature = (packet, *, seq_hi = None))]
    fn open<'py>(
        &self,
        py: Python<'py>,
        packet: PyBackedBytes,
        seq_hi: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let hi = seq_hi
            .map(|v| uint_arg(py, v, 32, "seq_hi must fit 32 bits").map(|n| n as u32))
            .transpose()?;
        let mut buf = packet.to_vec();
        let o = self
            .inner
            .open_in_place(&mut buf, hi)
            .map_err(|e| to_py(py, e))?;
        Ok((o.next_header, PyBytes::new(py, &buf[o.payload])))
    }
}

/// The receiver's anti-replay window (RFC 4303 §3.4.3, Appendix A for ESN).
#[pyclass(name = "ReplayWindow", module = "ikecp._native")]
pub(crate) struct ReplayWindow {
    inner: esp::ReplayWindow,
}

#[pymethods]
impl ReplayWindow {
    #[new]
    #[pyo3(signature = (size = 1024, esn = false))]
    fn new(size: usize, esn: bool) -> Self {
        Self {
            inner: esp::ReplayWindow::new(size.min(1 << 20), esn),
        }
    }

    #[getter]
    fn size(&self) -> u64 {
        self.inner.size()
    }

    #[getter]
    fn top(&self) -> u64 {
        self.inner.top()
    }

    /// The full sequence number for the received low half, or None if it is a replay or
    /// left of the window. Call before the ICV check; `accept` after it.
    fn check(&self, seq_lo: u32) -> Option<u64> {
        self.inner.check(seq_lo).ok()
    }

    /// Mark `seq` received; False if it was a replay or too old after all.
    fn accept(&mut self, seq: u64) -> bool {
        self.inner.accept(seq).is_ok()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EspTransform>()?;
    m.add_class::<ReplayWindow>()?;
    Ok(())
}
