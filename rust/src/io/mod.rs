//! Batched UDP datagram I/O: many datagrams per system call (`recvmmsg`/`sendmmsg`).
//!
//! One IKE handshake side is two datagrams; at thousands of handshakes per second the
//! per-datagram cost of a Python socket call dominates the budget, so the hot loops hand the
//! kernel whole batches instead. Plain Rust, no Python: the binding in `crate::python::io`
//! wraps it. Linux only (the `mmsg` calls are Linux APIs); elsewhere the module is absent and
//! callers use the pure-Python twin.
//!
//! The socket is non-blocking; waiting is done with `ppoll` so a timeout needs no socket
//! option and an `EINTR` surfaces as [`std::io::ErrorKind::Interrupted`] for the caller to
//! check signals and call again (with the same deadline).

mod addr;
mod socket;

pub use socket::{wait_for, BatchSocket, RecvBuffer, SendOutcome, MAX_BATCH, MAX_DATAGRAM};

#[cfg(test)]
mod tests;
