//! The running data plane: one UDP socket on the NAT-T port and one TUN device, two threads.
//!
//! - net → TUN: `recvmmsg` batches from the socket. ESP (a non-zero SPI first, RFC 3948 §2.1)
//!   is looked up by SPI, verified, decrypted, checked against the SA's selectors and written
//!   to the TUN device. Everything else (IKE behind the non-ESP marker, NAT keepalives,
//!   garbage) is queued for the control plane untouched: the socket has one owner, and the
//!   control plane reads its datagrams from here (`recv_control`) and sends through it
//!   (`send`).
//! - TUN → net: packets read from the TUN device are matched to an outbound SA, sealed and
//!   sent with `sendmmsg`. No SA: dropped and counted, never sent in clear.
//!
//! An eventfd becomes readable whenever control datagrams or events wait, so an event loop
//! can watch it like a socket.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::offload;
use super::tun::Tun;
use crate::esp::{self, Event, SaTable};
use crate::io::{wait_for, BatchSocket, RecvBuffer};

/// Datagrams per `recvmmsg`/`sendmmsg` and TUN packets per wakeup.
pub const BATCH: usize = 64;
/// Control datagrams held for the control plane before new ones are dropped.
const CONTROL_QUEUE: usize = 4096;
/// Events held before new ones are dropped (the control plane is not reading).
const EVENT_QUEUE: usize = 4096;
/// How often the threads look at the stop flag when idle.
const IDLE: Duration = Duration::from_millis(100);
/// Kernel buffer of the UDP socket each way: about 2,500 full-size ESP packets.
const SOCKET_BUFFER: usize = 4 << 20;
/// Room for one read from the TUN device: a 64 KiB TCP super-segment and its vnet header.
const TUN_BUF: usize = 65_536 + offload::VNET_HDR_LEN;

/// Counters of the plane itself (per-SA counters live in each SA).
#[derive(Debug, Default)]
pub struct PlaneCounters {
    pub control_in: AtomicU64,
    pub control_dropped: AtomicU64,
    pub tun_write_errors: AtomicU64,
    pub send_errors: AtomicU64,
    pub events_dropped: AtomicU64,
}

#[derive(Default)]
struct Mailbox {
    control: VecDeque<(Vec<u8>, SocketAddr)>,
    events: VecDeque<Event>,
}

struct Shared {
    sock: BatchSocket,
    tun: Tun,
    table: Arc<SaTable>,
    mailbox: Mutex<Mailbox>,
    wake: OwnedFd,
    stop: AtomicBool,
    counters: PlaneCounters,
}

impl Shared {
    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        self.mailbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called with the mailbox locked, before it gains its first item.
    fn signal(&self, was_empty: bool) {
        if was_empty {
            let one: u64 = 1;
            // SAFETY: writes 8 octets from a live u64 to our eventfd.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Called with the mailbox locked, after it became empty.
    fn unsignal(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 octets into a live u64 from our non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    fn push_control(&self, data: &[u8], src: SocketAddr) {
        let mut mb = self.mailbox();
        if mb.control.len() >= CONTROL_QUEUE {
            self.counters
                .control_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = mb.control.is_empty() && mb.events.is_empty();
        mb.control.push_back((data.to_vec(), src));
        self.counters.control_in.fetch_add(1, Ordering::Relaxed);
        self.signal(was_empty);
    }

    fn push_event(&self, ev: Event) {
        let mut mb = self.mailbox();
        if mb.events.len() >= EVENT_QUEUE {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = mb.control.is_empty() && mb.events.is_empty();
        mb.events.push_back(ev);
        self.signal(was_empty);
    }
}

/// A running data plane; dropping it (or `close`) stops the threads and closes socket and
/// TUN device.
pub struct Plane {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn is_esp(data: &[u8]) -> bool {
    // The non-ESP marker is four zero octets; a keepalive is one 0xFF; ESP needs SPI + seq.
    data.len() >= esp::HEADER_LEN && data[..4] != [0, 0, 0, 0]
}

fn net_to_tun(sh: &Shared) {
    let mut rx = RecvBuffer::default();
    let mut buf = Vec::with_capacity(2048);
    while !sh.stop.load(Ordering::Relaxed) {
        match sh.sock.recv(&mut rx, BATCH, Some(Instant::now() + IDLE)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // e.g. an ICMP error reported on the socket: keep serving.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        for (data, src) in rx.datagrams() {
            if !is_esp(data) {
                sh.push_control(data, src);
                continue;
            }
            let Some((spi, _)) = esp::header(data) else {
                continue;
            };
            let Some(sa) = sh.table.inbound(spi) else {
                continue;
            };
            buf.clear();
            buf.extend_from_slice(data);
            if let Ok((inner, moved)) = sa.decapsulate(&mut buf, src) {
                if let Some(ev) = moved {
                    sh.push_event(ev);
                }
                let packet = buf.get(inner).unwrap_or_default();
                if sh.tun.write(packet).is_err() {
                    sh.counters.tun_write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn tun_to_net(sh: &Shared) {
    let mut packet = vec![0u8; TUN_BUF];
    let mut out: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut spare: Vec<Vec<u8>> = Vec::new();
    while !sh.stop.load(Ordering::Relaxed) {
        if wait_for(sh.tun.fd(), libc::POLLIN, Some(IDLE)).is_err() {
            continue;
        }
        while out.len() < BATCH {
            let n = match sh.tun.read(&mut packet) {
                Ok(n) => n,
                Err(_) => break, // WouldBlock: the queue is drained
            };
            // One read may be a TCP super-segment: seal each MSS-sized packet it stands for.
            offload::split(&packet[..n], |inner| {
                let Some(sa) = sh.table.outbound(inner) else {
                    return;
                };
                let mut wire = spare.pop().unwrap_or_default();
                match sa.encapsulate(inner, &mut wire) {
                    Ok(ev) => {
                        if let Some(ev) = ev {
                            sh.push_event(ev);
                        }
                        out.push((wire, sa.peer()));
                    }
                    Err(_) => spare.push(wire), // counted by the SA
                }
            });
        }
        if !out.is_empty() {
            let sent = sh.sock.send(&out);
            if sent.error.is_some() {
                let lost = out.len() - sent.sent;
                sh.counters
                    .send_errors
                    .fetch_add(lost as u64, Ordering::Relaxed);
            }
            spare.extend(out.drain(..).map(|(w, _)| w));
        }
    }
}

impl Plane {
    /// Binds the UDP socket at `addr`, opens the TUN device `tun_name` and starts the threads.
    pub fn start(addr: SocketAddr, tun_name: &str, table: Arc<SaTable>) -> io::Result<Self> {
        let tun = Tun::open(tun_name)?;
        let sock = BatchSocket::bind(addr)?;
        sock.set_buffers(SOCKET_BUFFER)?;
        // SAFETY: plain eventfd(2); checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let shared = Arc::new(Shared {
            sock,
            tun,
            table,
            mailbox: Mutex::new(Mailbox::default()),
            wake,
            stop: AtomicBool::new(false),
            counters: PlaneCounters::default(),
        });
        let mut threads = Vec::new();
        for (name, run) in [
            ("ikecp-esp-rx", net_to_tun as fn(&Shared)),
            ("ikecp-esp-tx", tun_to_net as fn(&Shared)),
        ] {
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&sh));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let mut p = Plane { shared, threads };
                    p.close();
                    return Err(e);
                }
            }
        }
        Ok(Plane { shared, threads })
    }

    pub fn table(&self) -> &Arc<SaTable> {
        &self.shared.table
    }

    pub fn counters(&self) -> &PlaneCounters {
        &self.shared.counters
    }

    pub fn tun_name(&self) -> &str {
        self.shared.tun.name()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.sock.local_addr()
    }

    /// Readable while control datagrams or events wait.
    pub fn wake_fd(&self) -> RawFd {
        self.shared.wake.as_raw_fd()
    }

    /// Up to `max` control datagrams, waiting until `deadline` (`None`: not at all) for one.
    pub fn recv_control(
        &self,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<Vec<(Vec<u8>, SocketAddr)>> {
        loop {
            {
                let mut mb = self.shared.mailbox();
                let n = max.min(mb.control.len());
                let got: Vec<_> = mb.control.drain(..n).collect();
                if mb.control.is_empty() && mb.events.is_empty() {
                    self.shared.unsignal();
                }
                if !got.is_empty() {
                    return Ok(got);
                }
            }
            let left = deadline.and_then(|d| d.checked_duration_since(Instant::now()));
            match left {
                Some(left) if !left.is_zero() => {
                    wait_for(self.wake_fd(), libc::POLLIN, Some(left.min(IDLE)))?
                }
                _ => return Ok(Vec::new()),
            }
        }
    }

    /// Every event since the last call.
    pub fn events(&self) -> Vec<Event> {
        let mut mb = self.shared.mailbox();
        let out: Vec<Event> = mb.events.drain(..).collect();
        if mb.control.is_empty() {
            self.shared.unsignal();
        }
        out
    }

    /// Sends datagrams (the control plane's IKE messages and keepalives) from the socket.
    pub fn send<B: AsRef<[u8]>>(&self, datagrams: &[(B, SocketAddr)]) -> crate::io::SendOutcome {
        self.shared.sock.send(datagrams)
    }

    /// Stops the threads (they notice within 100 ms) and waits for them.
    pub fn close(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.close();
    }
}
