//! The owning UDP socket with batched receive and send.

use std::io;
use std::mem::zeroed;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use super::addr::{from_storage, to_storage};

/// Room for any UDP payload (65,507 octets over IPv4, 65,527 over IPv6 without jumbograms),
/// so the kernel never truncates a datagram.
pub const MAX_DATAGRAM: usize = 65_535;

/// Most datagrams one `recv` call returns: bounds the scratch memory at 16 MiB (virtual; only
/// pages a datagram was written into become resident).
pub const MAX_BATCH: usize = 256;

/// Most messages handed to one `sendmmsg` call (the kernel's UIO_MAXIOV limit).
const SEND_CHUNK: usize = 1024;

/// What a batched send achieved: datagrams `..sent` are with the kernel; `error` (if any) is
/// what stopped datagram `sent`.
#[derive(Debug)]
pub struct SendOutcome {
    pub sent: usize,
    pub error: Option<io::Error>,
}

/// A bound, non-blocking UDP socket that it owns (closed on drop). Sending needs only
/// `&self`, so one thread can send while another receives; receiving fills a [`RecvBuffer`].
#[derive(Debug)]
pub struct BatchSocket {
    sock: UdpSocket,
}

/// Scratch for up to [`MAX_BATCH`] received datagrams, reused across calls.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    slots: Vec<u8>,
    received: Vec<(usize, Option<SocketAddr>)>,
}

impl RecvBuffer {
    /// The datagrams of the last successful receive into this buffer, in arrival order.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.slots
            .chunks_exact(MAX_DATAGRAM)
            .zip(&self.received)
            .filter_map(|(slot, &(len, src))| Some((slot.get(..len)?, src?)))
    }
}

impl BatchSocket {
    /// Binds a new UDP socket to `addr` (port 0 picks a free port). An IPv6 socket is
    /// IPv6-only, so every socket sees and sends one address family and "::" can share a
    /// port number with "0.0.0.0".
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let family = if addr.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let flags = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(family, flags, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns; dropping closes it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if addr.is_ipv6() {
            let on: libc::c_int = 1;
            // SAFETY: the option value is a live c_int of the length given.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_V6ONLY,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY (zeroed): all-zero is a valid sockaddr_storage; to_storage fills it.
        let mut st: libc::sockaddr_storage = unsafe { zeroed() };
        let len = to_storage(&addr, &mut st);
        // SAFETY: `st` holds a sockaddr of `len` octets.
        let r = unsafe { libc::bind(fd, (&st as *const libc::sockaddr_storage).cast(), len) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            sock: UdpSocket::from(owned),
        })
    }

    /// Asks for `bytes` of kernel receive and send buffer: first beyond the sysctl limits
    /// (`SO_RCVBUFFORCE`, needs CAP_NET_ADMIN), else up to them. Bursts of ESP then wait in
    /// the kernel instead of being dropped while a packet thread is not scheduled.
    pub fn set_buffers(&self, bytes: usize) -> io::Result<()> {
        let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        for (forced, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            let set = |opt| {
                // SAFETY: the option value is a live c_int of the length given.
                unsafe {
                    libc::setsockopt(
                        self.fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&v as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                }
            };
            if set(forced) < 0 && set(plain) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub fn is_ipv6(&self) -> bool {
        self.local_addr().is_ok_and(|a| a.is_ipv6())
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Receives between 1 and `max` datagrams, waiting until `deadline` (`None`: forever) for
    /// the first; returns how many arrived (0 when the deadline passed). Read them with
    /// [`RecvBuffer::datagrams`]. `EINTR` while waiting is returned as `Interrupted`.
    pub fn recv(
        &self,
        buf: &mut RecvBuffer,
        max: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        if max == 0 || max > MAX_BATCH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_datagrams out of range",
            ));
        }
        buf.received.clear();
        let need = max * MAX_DATAGRAM;
        if buf.slots.len() < need {
            // A fresh zeroed allocation maps untouched pages instead of writing zeros.
            buf.slots = vec![0; need];
        }
        loop {
            match self.recv_ready(buf, max) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            let wait = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(0),
                },
            };
            wait_for(self.fd(), libc::POLLIN, wait)?;
        }
    }

    /// One `recvmmsg` of whatever is queued now; `WouldBlock` when nothing is.
    fn recv_ready(&self, buf: &mut RecvBuffer, max: usize) -> io::Result<usize> {
        // SAFETY (zeroed): all-zero is a valid sockaddr_storage (an unspecified family).
        let mut names: Vec<libc::sockaddr_storage> =
            (0..max).map(|_| unsafe { zeroed() }).collect();
        let mut iov: Vec<libc::iovec> = buf
            .slots
            .chunks_exact_mut(MAX_DATAGRAM)
            .take(max)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = names
            .iter_mut()
            .zip(iov.iter_mut())
            .map(|(name, v)| {
                // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths); the
                // fields that matter are set below.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_namelen = size_of_storage();
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: `msgs` has `msgs.len()` entries whose name and iovec pointers point into
        // `names` and `buf.slots`, which outlive the call and have the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                self.fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).unwrap_or(0).min(msgs.len());
        buf.received
            .extend(msgs.iter().zip(&names).take(n).map(|(m, name)| {
                let len = (m.msg_len as usize).min(MAX_DATAGRAM);
                (len, from_storage(name, m.msg_hdr.msg_namelen))
            }));
        Ok(buf.received.len())
    }

    /// Sends `datagrams` in order, each to its own destination, waiting while the send
    /// buffer is full. Stops at the first datagram the kernel refuses (or at `EINTR`).
    pub fn send<B: AsRef<[u8]>>(&self, datagrams: &[(B, SocketAddr)]) -> SendOutcome {
        let mut sent = 0;
        while let Some(rest) = datagrams.get(sent..).filter(|r| !r.is_empty()) {
            let chunk = rest.get(..SEND_CHUNK).unwrap_or(rest);
            match self.send_now(chunk) {
                Ok(0) => {
                    return SendOutcome {
                        sent,
                        error: Some(io::ErrorKind::WriteZero.into()),
                    }
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = wait_for(self.fd(), libc::POLLOUT, None) {
                        return SendOutcome {
                            sent,
                            error: Some(e),
                        };
                    }
                }
                Err(e) => {
                    return SendOutcome {
                        sent,
                        error: Some(e),
                    }
                }
            }
        }
        SendOutcome { sent, error: None }
    }

    /// One `sendmmsg` of `chunk` (at most SEND_CHUNK entries).
    fn send_now<B: AsRef<[u8]>>(&self, chunk: &[(B, SocketAddr)]) -> io::Result<usize> {
        let mut names: Vec<(libc::sockaddr_storage, libc::socklen_t)> = chunk
            .iter()
            .map(|(_, to)| {
                // SAFETY: all-zero is a valid sockaddr_storage; to_storage fills it.
                let mut st: libc::sockaddr_storage = unsafe { zeroed() };
                let len = to_storage(to, &mut st);
                (st, len)
            })
            .collect();
        let mut iov: Vec<libc::iovec> = chunk
            .iter()
            .map(|(data, _)| {
                let data = data.as_ref();
                libc::iovec {
                    // The kernel only reads through this pointer (sendmmsg).
                    iov_base: data.as_ptr().cast_mut().cast(),
                    iov_len: data.len(),
                }
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = names
            .iter_mut()
            .zip(iov.iter_mut())
            .map(|((st, len), v)| {
                // SAFETY: all-zero is a valid mmsghdr; the fields that matter are set below.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (st as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_namelen = *len;
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: every entry points at a live sockaddr of the stated length and one iovec
        // over a live byte slice; the kernel writes only msg_len.
        let n = unsafe {
            libc::sendmmsg(
                self.fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT as _,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0).min(chunk.len()))
    }
}

fn size_of_storage() -> libc::socklen_t {
    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t
}

/// Waits until `fd` is ready for `events` or `wait` passes (`None`: no limit).
pub fn wait_for(fd: RawFd, events: libc::c_short, wait: Option<Duration>) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = wait.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos().into(),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: one valid pollfd; the timespec (if any) lives across the call; no sigmask.
    let r = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r > 0 && pfd.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(())
}
