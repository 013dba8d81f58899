//! PyO3 face of `crate::dataplane`: `Dataplane`, the userspace ESP data plane (Linux).
//!
//! It owns the NAT-T UDP socket and behaves as a `BatchSocket` towards the control plane:
//! `recv_batch` returns the datagrams that are not ESP (IKE, keepalives), `send_batch` sends
//! IKE messages, `fileno` is an eventfd readable while datagrams or events wait. CHILD SAs
//! are installed, replaced (make-before-break) and removed by inbound SPI. Calls that wait
//! or move packets release the GIL; the packet threads never take it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::{PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::crypto::to_py;
use super::io::{addr_tuple, deadline, os_error, parse_host};
use crate::dataplane::{Plane, BATCH};
use crate::esp::{
    ChildConfig, EspTransform, Event, InstallError, Limits, SaTable, Selector, Selectors,
};

type Ts = (u8, u16, u16, PyBackedStr, PyBackedStr);

fn selectors(list: Vec<Ts>) -> PyResult<Vec<Selector>> {
    list.into_iter()
        .map(|(protocol, start_port, end_port, start, end)| {
            Ok(Selector {
                protocol,
                start_port,
                end_port,
                start: parse_host(&start)?,
                end: parse_host(&end)?,
            })
        })
        .collect()
}

fn peer_addr(peer: (PyBackedStr, u16)) -> PyResult<SocketAddr> {
    Ok(SocketAddr::new(parse_host(&peer.0)?, peer.1))
}

fn closed() -> PyErr {
    PyOSError::new_err((libc::EBADF, "Dataplane is closed"))
}

/// The ESP data plane on one UDP socket and one TUN device.
#[pyclass(frozen, name = "Dataplane", module = "ikecp._native")]
pub struct PyDataplane {
    plane: Mutex<Option<Arc<Plane>>>,
    tun_name: String,
}

impl PyDataplane {
    fn state(&self) -> MutexGuard<'_, Option<Arc<Plane>>> {
        self.plane.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> PyResult<Arc<Plane>> {
        self.state().clone().ok_or_else(closed)
    }
}

#[pymethods]
impl PyDataplane {
    #[classattr]
    const MAX_BATCH: usize = BATCH;

    /// Opens TUN device `tun_name` ("" lets the kernel choose), binds UDP `host`:`port` and
    /// starts the packet threads. OSError if either is refused (no root, no /dev/net/tun).
    #[new]
    #[pyo3(signature = (host, port, tun_name = ""))]
    fn new(py: Python<'_>, host: PyBackedStr, port: u16, tun_name: &str) -> PyResult<Self> {
        let addr = SocketAddr::new(parse_host(&host)?, port);
        let name = tun_name.to_owned();
        let plane = py
            .detach(|| Plane::start(addr, &name, Arc::new(SaTable::default())))
            .map_err(os_error)?;
        let tun_name = plane.tun_name().to_owned();
        Ok(Self {
            plane: Mutex::new(Some(Arc::new(plane))),
            tun_name,
        })
    }

    #[getter]
    fn tun_name(&self) -> &str {
        &self.tun_name
    }

    /// The eventfd: readable while control datagrams or events wait (-1 once closed).
    fn fileno(&self) -> i32 {
        self.state().as_ref().map_or(-1, |p| p.wake_fd())
    }

    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let addr = self.open()?.local_addr().map_err(os_error)?;
        addr_tuple(py, addr)
    }

    /// Stops the threads and closes the socket and the TUN device (the interface goes away).
    fn close(&self, py: Python<'_>) {
        let plane = self.state().take();
        // The last reference joins the threads on drop: up to 100 ms, without the GIL.
        py.detach(move || drop(plane));
    }

    /// Up to `max_datagrams` control datagrams (everything on the socket that is not ESP),
    /// waiting at most `timeout` seconds (None: until one arrives).
    #[pyo3(signature = (max_datagrams, timeout = None))]
    fn recv_batch<'py>(
        &self,
        py: Python<'py>,
        max_datagrams: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if !(1..=BATCH).contains(&max_datagrams) {
            return Err(PyValueError::new_err(format!(
                "max_datagrams must be in 1..={BATCH}"
            )));
        }
        let plane = self.open()?;
        let until = match timeout {
            None => Some(std::time::Instant::now() + std::time::Duration::from_secs(86_400)),
            t => deadline(t)?,
        };
        let got = py
            .detach(|| plane.recv_control(max_datagrams, until))
            .map_err(os_error)?;
        let out = PyList::empty(py);
        for (data, src) in got {
            out.append((PyBytes::new(py, &data), addr_tuple(py, src)?))?;
        }
        Ok(out)
    }

    /// Sends (data, (host, port)) datagrams from the socket; returns how many went.
    fn send_batch(&self, py: Python<'_>, datagrams: &Bound<'_, PyAny>) -> PyResult<usize> {
        let plane = self.open()?;
        let mut out: Vec<(PyBackedBytes, SocketAddr)> = Vec::new();
        for item in datagrams.try_iter()? {
            let (data, peer): (PyBackedBytes, (PyBackedStr, u16)) = item?.extract()?;
            out.push((data, peer_addr(peer)?));
        }
        let outcome = py.detach(|| plane.send(&out));
        match outcome.error {
            Some(e) if outcome.sent == 0 && !out.is_empty() => Err(os_error(e)),
            _ => Ok(outcome.sent),
        }
    }

    /// Installs a CHILD SA (or, with `replaces`, installs it and stops sending on the old
    /// one, which keeps receiving until `remove`). Keys are (encryption key with salt,
    /// integrity key) per direction; selectors are (protocol, start port, end port, start
    /// address, end address) as negotiated: `local_ts` ours, `remote_ts` the peer's.
    #[pyo3(signature = (spi_in, spi_out, encr_id, integ_id, key_in, key_out, esn, local_ts,
        remote_ts, peer, *, replay_window = 1024, soft_bytes = 0, hard_bytes = 0,
        soft_packets = 0, hard_packets = 0, replaces = None))]
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        py: Python<'_>,
        spi_in: u32,
        spi_out: u32,
        encr_id: i64,
        integ_id: i64,
        key_in: (PyBackedBytes, PyBackedBytes),
        key_out: (PyBackedBytes, PyBackedBytes),
        esn: bool,
        local_ts: Vec<Ts>,
        remote_ts: Vec<Ts>,
        peer: (PyBackedStr, u16),
        replay_window: usize,
        soft_bytes: u64,
        hard_bytes: u64,
        soft_packets: u64,
        hard_packets: u64,
        replaces: Option<u32>,
    ) -> PyResult<()> {
        let plane = self.open()?;
        let crypto = |e| to_py(py, e);
        let cfg = ChildConfig {
            spi_in,
            spi_out,
            inbound: EspTransform::new(encr_id, &key_in.0, integ_id, &key_in.1).map_err(crypto)?,
            outbound: EspTransform::new(encr_id, &key_out.0, integ_id, &key_out.1)
                .map_err(crypto)?,
            esn,
            replay_window: replay_window.clamp(64, 1 << 16),
            selectors: Selectors {
                local: selectors(local_ts)?,
                remote: selectors(remote_ts)?,
            },
            peer: peer_addr(peer)?,
            limits: Limits {
                soft_bytes,
                hard_bytes,
                soft_packets,
                hard_packets,
            },
        };
        let table = plane.table();
        let done = match replaces {
            Some(old) => table.replace(old, cfg),
            None => table.install(cfg),
        };
        match done {
            Ok(_) => Ok(()),
            Err(InstallError::SpiInUse) => Err(PyValueError::new_err(format!(
                "inbound SPI {spi_in:#010x} is already installed"
            ))),
            Err(InstallError::NoSuchSa) => Err(PyKeyError::new_err(replaces)),
        }
    }

    /// Removes the CHILD SA receiving on `spi_in`; False if there was none.
    fn remove(&self, spi_in: u32) -> PyResult<bool> {
        Ok(self.open()?.table().remove(spi_in).is_some())
    }

    /// Moves the SA's peer (the control plane saw the peer at a new address).
    fn set_peer(&self, spi_in: u32, peer: (PyBackedStr, u16)) -> PyResult<bool> {
        let addr = peer_addr(peer)?;
        Ok(self
            .open()?
            .table()
            .get(spi_in)
            .map(|sa| sa.set_peer(addr))
            .is_some())
    }

    /// The SA's counters as a dict (None if no such SA).
    fn counters<'py>(&self, py: Python<'py>, spi_in: u32) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(sa) = self.open()?.table().get(spi_in) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        for (k, v) in sa.counters.snapshot() {
            d.set_item(k, v)?;
        }
        d.set_item("peer", addr_tuple(py, sa.peer())?)?;
        Ok(Some(d))
    }

    /// Counters of the plane itself: packets no SA took, control datagrams, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let plane = self.open()?;
        let d = PyDict::new(py);
        let t = &plane.table().counters;
        let c = plane.counters();
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        d.set_item("no_sa_in", g(&t.no_sa_in))?;
        d.set_item("no_sa_out", g(&t.no_sa_out))?;
        d.set_item("control_in", g(&c.control_in))?;
        d.set_item("control_dropped", g(&c.control_dropped))?;
        d.set_item("tun_write_errors", g(&c.tun_write_errors))?;
        d.set_item("send_errors", g(&c.send_errors))?;
        d.set_item("events_dropped", g(&c.events_dropped))?;
        d.set_item("sas", plane.table().all().len())?;
        Ok(d)
    }

    /// Events since the last call: ("rekey" | "expired", spi_in, what) or
    /// ("peer_moved", spi_in, (old host, port), (new host, port)).
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for ev in self.open()?.events() {
            let item = match ev {
                Event::Rekey { spi_in, what } => ("rekey", spi_in, what).into_pyobject(py)?,
                Event::Expired { spi_in, what } => ("expired", spi_in, what).into_pyobject(py)?,
                Event::PeerMoved { spi_in, old, new } => (
                    "peer_moved",
                    spi_in,
                    addr_tuple(py, old)?,
                    addr_tuple(py, new)?,
                )
                    .into_pyobject(py)?,
            };
            out.append(item)?;
        }
        Ok(out)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDataplane>()
}
