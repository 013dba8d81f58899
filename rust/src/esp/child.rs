//! One CHILD SA as the data plane holds it: the outbound and inbound transforms, the
//! sequence counter, the replay window, the selectors, the peer's address and the counters.
//!
//! `encapsulate` and `decapsulate` do everything RFC 4303 asks per packet except the I/O:
//! the caller (the TUN/UDP loops) moves the bytes. Every refusal is a [`Drop`] with a
//! counter behind it, never a panic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::replay::{Replay, ReplayWindow};
use super::selector::{Flow, Selectors};
use super::transform::{
    header, EspTransform, NEXT_HEADER_DUMMY, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6,
};
use crate::crypto::Error;

/// Volume limits of an SA (RFC 4301 §4.4.2.1): the soft ones ask for a rekey, the hard ones
/// stop the outbound direction. 0 is "none".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    pub soft_packets: u64,
    pub hard_packets: u64,
}

/// Everything the control plane hands over to install one CHILD SA.
pub struct ChildConfig {
    pub spi_in: u32,
    pub spi_out: u32,
    pub inbound: EspTransform,
    pub outbound: EspTransform,
    pub esn: bool,
    pub replay_window: usize,
    pub selectors: Selectors,
    pub peer: SocketAddr,
    pub limits: Limits,
}

/// Why the data plane told the control plane something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A soft limit was passed (once per SA): rekey. `what` is "bytes", "packets" or
    /// "sequence".
    Rekey { spi_in: u32, what: &'static str },
    /// A hard limit was reached: the SA sends no more.
    Expired { spi_in: u32, what: &'static str },
    /// An authenticated packet came from a new address (NAT rebinding): the SA moved there.
    PeerMoved {
        spi_in: u32,
        old: SocketAddr,
        new: SocketAddr,
    },
}

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Replay,
    Integrity,
    /// Malformed ESP (short, misaligned, bad padding) or a payload that is not IP.
    Invalid,
    /// A dummy packet (next header 59, RFC 4303 §2.6).
    Dummy,
    /// The inner packet is outside the SA's traffic selectors.
    Selector,
    /// The SA may send no more (sequence numbers or a hard limit used up).
    Expired,
}

/// Per-SA counters, readable while the loops run.
#[derive(Debug, Default)]
pub struct Counters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub replay_drops: AtomicU64,
    pub icv_failures: AtomicU64,
    pub invalid: AtomicU64,
    pub dummies: AtomicU64,
    pub selector_drops: AtomicU64,
    pub expired_drops: AtomicU64,
}

/// A snapshot of [`Counters`] in a fixed order (see `Counters::NAMES`).
pub type CounterValues = [(&'static str, u64); 10];

impl Counters {
    pub fn snapshot(&self) -> CounterValues {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("packets_in", g(&self.packets_in)),
            ("bytes_in", g(&self.bytes_in)),
            ("packets_out", g(&self.packets_out)),
            ("bytes_out", g(&self.bytes_out)),
            ("replay_drops", g(&self.replay_drops)),
            ("icv_failures", g(&self.icv_failures)),
            ("invalid", g(&self.invalid)),
            ("dummies", g(&self.dummies)),
            ("selector_drops", g(&self.selector_drops)),
            ("expired_drops", g(&self.expired_drops)),
        ]
    }

    fn count(&self, d: Drop) {
        let c = match d {
            Drop::Replay => &self.replay_drops,
            Drop::Integrity => &self.icv_failures,
            Drop::Invalid => &self.invalid,
            Drop::Dummy => &self.dummies,
            Drop::Selector => &self.selector_drops,
            Drop::Expired => &self.expired_drops,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Soft limit on sequence numbers: this far before the last one, ask for a rekey.
const SEQ_SOFT_MARGIN: u64 = 1 << 20;

pub struct ChildSa {
    pub spi_in: u32,
    pub spi_out: u32,
    pub selectors: Selectors,
    pub counters: Counters,
    inbound: EspTransform,
    pub(crate) outbound: EspTransform,
    esn: bool,
    limits: Limits,
    /// The last sequence number sent.
    seq: AtomicU64,
    window: Mutex<ReplayWindow>,
    peer: Mutex<SocketAddr>,
    rekey_asked: AtomicBool,
    expired: AtomicBool,
}

impl ChildSa {
    pub fn new(cfg: ChildConfig) -> Self {
        Self {
            spi_in: cfg.spi_in,
            spi_out: cfg.spi_out,
            selectors: cfg.selectors,
            counters: Counters::default(),
            inbound: cfg.inbound,
            outbound: cfg.outbound,
            esn: cfg.esn,
            limits: cfg.limits,
            seq: AtomicU64::new(0),
            window: Mutex::new(ReplayWindow::new(cfg.replay_window, cfg.esn)),
            peer: Mutex::new(cfg.peer),
            rekey_asked: AtomicBool::new(false),
            expired: AtomicBool::new(false),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        *self.peer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The control plane moved the peer (an authenticated IKE message from a new address).
    pub fn set_peer(&self, peer: SocketAddr) {
        *self.peer.lock().unwrap_or_else(PoisonError::into_inner) = peer;
    }

    /// Start the outbound counter elsewhere (tests of sequence exhaustion).
    #[cfg(test)]
    pub(crate) fn set_seq(&self, last_sent: u64) {
        self.seq.store(last_sent, Ordering::Relaxed);
    }

    fn max_seq(&self) -> u64 {
        if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// The soft/hard limit passed by this packet, if any.
    fn limit_event(&self, seq: u64, bytes: u64) -> Option<Event> {
        let l = &self.limits;
        let over = |limit: u64, v: u64| limit != 0 && v >= limit;
        let hard = if over(l.hard_packets, seq) {
            Some("packets")
        } else if over(l.hard_bytes, bytes) {
            Some("bytes")
        } else {
            None
        };
        if let Some(what) = hard {
            if !self.expired.swap(true, Ordering::Relaxed) {
                return Some(Event::Expired {
                    spi_in: self.spi_in,
                    what,
                });
            }
            return None;
        }
        let soft = if seq >= self.max_seq() - SEQ_SOFT_MARGIN {
            Some("sequence")
        } else if over(l.soft_packets, seq) {
            Some("packets")
        } else if over(l.soft_bytes, bytes) {
            Some("bytes")
        } else {
            None
        };
        let what = soft?;
        (!self.rekey_asked.swap(true, Ordering::Relaxed)).then_some(Event::Rekey {
            spi_in: self.spi_in,
            what,
        })
    }

    /// Seals the inner IP `packet` into `out` (cleared first) for the peer. `Ok(event)`
    /// may carry a limit event for the control plane.
    pub fn encapsulate(&self, packet: &[u8], out: &mut Vec<u8>) -> Result<Option<Event>, Drop> {
        let d = |e: Drop| {
            self.counters.count(e);
            e
        };
        let flow = Flow::parse(packet).ok_or_else(|| d(Drop::Invalid))?;
        if !self.selectors.outbound(&flow) {
            return Err(d(Drop::Selector));
        }
        if self.expired.load(Ordering::Relaxed) {
            return Err(d(Drop::Expired));
        }
        let max = self.max_seq();
        let seq = self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s < max).then_some(s + 1)
            })
            .map_err(|_| {
                self.expired.store(true, Ordering::Relaxed);
                d(Drop::Expired)
            })?
            + 1;
        let next_header = if flow.src.is_ipv4() {
            NEXT_HEADER_IPV4
        } else {
            NEXT_HEADER_IPV6
        };
        out.clear();
        self.outbound
            .seal_into(out, self.spi_out, seq, self.esn, next_header, packet, None)
            .map_err(|_| d(Drop::Invalid))?;
        let c = &self.counters;
        c.packets_out.fetch_add(1, Ordering::Relaxed);
        let bytes = c
            .bytes_out
            .fetch_add(packet.len() as u64, Ordering::Relaxed)
            + packet.len() as u64;
        Ok(self.limit_event(seq, bytes))
    }

    /// Verifies, replay-checks and decrypts the ESP packet in `buf` (in place) that came
    /// from `src`; returns where the inner packet lies and an event if the peer moved.
    pub fn decapsulate(
        &self,
        buf: &mut [u8],
        src: SocketAddr,
    ) -> Result<(core::ops::Range<usize>, Option<Event>), Drop> {
        let d = |e: Drop| {
            self.counters.count(e);
            e
        };
        let (_, seq_lo) = header(buf).ok_or_else(|| d(Drop::Invalid))?;
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = window.check(seq_lo).map_err(|_| d(Drop::Replay))?;
        let seq_hi = self.esn.then_some((seq >> 32) as u32);
        let opened = self.inbound.open_in_place(buf, seq_hi).map_err(|e| {
            d(match e {
                Error::Integrity => Drop::Integrity,
                _ => Drop::Invalid,
            })
        })?;
        // Authentic from here on: the sequence number counts even if the payload is dropped.
        let newest = seq > window.top();
        window.accept(seq).map_err(|r| {
            d(match r {
                Replay::TooOld | Replay::Duplicate => Drop::Replay,
            })
        })?;
        drop(window);
        match opened.next_header {
            NEXT_HEADER_DUMMY => return Err(d(Drop::Dummy)),
            NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6 => {}
            _ => return Err(d(Drop::Invalid)),
        }
        let inner = buf
            .get(opened.payload.clone())
            .ok_or_else(|| d(Drop::Invalid))?;
        let flow = Flow::parse(inner).ok_or_else(|| d(Drop::Invalid))?;
        if !self.selectors.inbound(&flow) {
            return Err(d(Drop::Selector));
        }
        let c = &self.counters;
        c.packets_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(inner.len() as u64, Ordering::Relaxed);
        let mut peer = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the newest packet moves the SA: a late one from the old mapping must not.
        let moved = (newest && *peer != src).then(|| {
            let old = std::mem::replace(&mut *peer, src);
            Event::PeerMoved {
                spi_in: self.spi_in,
                old,
                new: src,
            }
        });
        Ok((opened.payload, moved))
    }
}
