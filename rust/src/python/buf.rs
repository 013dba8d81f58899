//! Byte arguments from any buffer-protocol object. `bytes` is borrowed as is; anything else
//! (`bytearray`, `memoryview`, `array.array`, `mmap`, ...) is copied once into a `bytes`
//! through a memoryview, which the stable ABI of every supported Python offers (`PyBuffer`
//! itself only joined the limited API in 3.11). Objects without the buffer protocol get the
//! `TypeError` that `memoryview(obj)` raises, as in the pure-Python twin.

use std::ops::Deref;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

pub(crate) enum Buf {
    Py(PyBackedBytes),
    /// No octets: the default of an optional byte argument.
    Empty,
}

impl Deref for Buf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buf::Py(b) => b,
            Buf::Empty => &[],
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Buf {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Buf::Py(PyBackedBytes::from(bytes.to_owned())));
        }
        let py = obj.py();
        // SAFETY: `obj` is a live object; both calls return a new reference, or NULL with a
        // Python exception set, which from_owned_ptr_or_err turns into Err.
        let view = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(obj.as_ptr()))?
        };
        // SAFETY: as above; PyBytes_FromObject copies a buffer (contiguous or not) into bytes.
        let bytes =
            unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromObject(view.as_ptr()))? };
        Ok(Buf::Py(PyBackedBytes::from(bytes.cast_into::<PyBytes>()?)))
    }
}
