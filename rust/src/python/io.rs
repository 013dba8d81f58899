//! PyO3 face of `crate::io`: `BatchSocket`, batched UDP receive/send with the GIL released.
//!
//! Ownership: a `BatchSocket` binds its own socket and owns the descriptor; `close()` (or
//! leaving a `with` block, or garbage collection) closes it. `fileno()` is lent for
//! readiness polling only (selectors, `loop.add_reader`); the caller must not close it.
//! Threads: any number may send while one receives; a second concurrent receiver gets
//! `RuntimeError` (one receive buffer per socket). `close()` while another thread is inside a
//! call takes effect when that call returns (the descriptor is never closed under it).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::io::{self, RecvBuffer, MAX_BATCH};

/// An `OSError` carrying the errno, so CPython picks the same subclass as its socket module.
pub(crate) fn os_error(err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => {
            let text = err.to_string();
            let suffix = format!(" (os error {code})");
            let text = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
            PyOSError::new_err((code, text))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

fn closed() -> PyErr {
    PyOSError::new_err((libc::EBADF, "BatchSocket is closed"))
}

pub(crate) fn parse_host(host: &str) -> PyResult<IpAddr> {
    host.parse()
        .map_err(|_| PyValueError::new_err(format!("{host:?} is not a numeric IP address")))
}

pub(crate) fn addr_tuple<'py>(py: Python<'py>, addr: SocketAddr) -> PyResult<Bound<'py, PyTuple>> {
    (addr.ip().to_string(), addr.port()).into_pyobject(py)
}

/// A timeout in seconds as a deadline; `None` or infinity waits forever.
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(t) => Ok(Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))),
    }
}

/// The open socket: shared by calls in flight so `close()` never frees the descriptor under
/// a system call.
struct Open {
    sock: io::BatchSocket,
    rx: Mutex<RecvBuffer>,
}

/// UDP socket with batched receive (`recvmmsg`) and send (`sendmmsg`).
#[pyclass(frozen, name = "BatchSocket", module = "ikecp._native")]
pub struct PyBatchSocket {
    state: Mutex<Option<Arc<Open>>>,
}

impl PyBatchSocket {
    /// Held only for a clone or a take, never across a system call or a GIL wait.
    fn state(&self) -> MutexGuard<'_, Option<Arc<Open>>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> PyResult<Arc<Open>> {
        self.state().clone().ok_or_else(closed)
    }
}

#[pymethods]
impl PyBatchSocket {
    #[classattr]
    const MAX_BATCH: usize = MAX_BATCH;

    /// Binds a new UDP socket to `host` (a numeric IPv4 or IPv6 address) and `port`.
    #[new]
    fn new(host: PyBackedStr, port: u16) -> PyResult<Self> {
        let ip = parse_host(&host)?;
        let inner = io::BatchSocket::bind(SocketAddr::new(ip, port)).map_err(os_error)?;
        let open = Open {
            sock: inner,
            rx: Mutex::new(RecvBuffer::default()),
        };
        Ok(Self {
            state: Mutex::new(Some(Arc::new(open))),
        })
    }

    /// The descriptor for readiness polling (-1 once closed); still owned by this object.
    fn fileno(&self) -> i32 {
        self.state().as_ref().map_or(-1, |o| o.sock.fd())
    }

    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let addr = self.open()?.sock.local_addr().map_err(os_error)?;
        addr_tuple(py, addr)
    }

    /// Closes the socket; later calls raise `OSError(EBADF)`. Closing twice is harmless.
    fn close(&self) {
        self.state().take();
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) {
        self.close();
    }

    /// Up to `max_datagrams` (1..=MAX_BATCH) datagrams with their (host, port) sources,
    /// waiting at most `timeout` seconds (None: forever) for the first; [] on timeout.
    #[pyo3(signature = (max_datagrams, timeout = None))]
    fn recv_batch<'py>(
        &self,
        py: Python<'py>,
        max_datagrams: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let max = match max_datagrams.extract::<i64>() {
            Ok(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_BATCH).contains(n)),
            Err(e) if e.is_instance_of::<PyOverflowError>(py) => None,
            Err(e) => return Err(e),
        }
        .ok_or_else(|| {
            PyValueError::new_err(format!("max_datagrams must be in 1..={MAX_BATCH}"))
        })?;
        let until = deadline(timeout)?;
        let open = self.open()?;
        let mut guard = match open.rx.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(PyRuntimeError::new_err(
                    "another thread is receiving on this BatchSocket",
                ))
            }
        };
        let buf: &mut RecvBuffer = &mut guard;
        loop {
            match py.detach(|| open.sock.recv(buf, max, until)) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Err(e) => return Err(os_error(e)),
            }
        }
        let out = PyList::empty(py);
        for (data, src) in buf.datagrams() {
            out.append((PyBytes::new(py, data), addr_tuple(py, src)?))?;
        }
        Ok(out)
    }

    /// Sends each (data, (host, port)) to its own destination, in order; returns how many
    /// were sent. Every address is checked before anything is sent. If the kernel refuses
    /// datagram k, the first k are sent and k is returned; if it refuses the first, OSError.
    fn send_batch(&self, py: Python<'_>, datagrams: &Bound<'_, PyAny>) -> PyResult<usize> {
        let open = self.open()?;
        let v6 = open.sock.is_ipv6();
        let mut out: Vec<(PyBackedBytes, SocketAddr)> = Vec::new();
        for item in datagrams.try_iter()? {
            let (data, (host, port)): (PyBackedBytes, (PyBackedStr, u16)) = item?.extract()?;
            let ip = parse_host(&host)?;
            if ip.is_ipv6() != v6 {
                return Err(PyValueError::new_err(format!(
                    "{host:?} is not of the socket's address family"
                )));
            }
            out.push((data, SocketAddr::new(ip, port)));
        }
        let mut sent = 0;
        loop {
            let rest = out.get(sent..).unwrap_or_default();
            let outcome = py.detach(|| open.sock.send(rest));
            sent += outcome.sent;
            match outcome.error {
                None => return Ok(sent),
                Some(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Some(_) if sent > 0 => return Ok(sent),
                Some(e) => return Err(os_error(e)),
            }
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBatchSocket>()
}
