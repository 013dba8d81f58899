//! The one place where Rust meets Python: converts between the core's types and the Python
//! data model in `ikecp.message`, and turns core errors into `ikecp.errors` exceptions.

use pyo3::prelude::*;

mod buf;
mod codec;
mod crypto;
#[cfg(target_os = "linux")]
mod dataplane;
mod esp;
#[cfg(target_os = "linux")]
mod io;
mod lowlevel;
mod sk;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    codec::register(m)?;
    crypto::register(m)?;
    esp::register(m)?;
    #[cfg(target_os = "linux")]
    dataplane::register(m)?;
    #[cfg(target_os = "linux")]
    io::register(m)?;
    sk::register(m)?;
    lowlevel::register(m)?;
    Ok(())
}
