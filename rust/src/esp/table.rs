//! The SA database of one data plane: inbound SAs by SPI, outbound SAs by the destination
//! of the inner packet. Install, replace (make-before-break) and remove come from the control
//! plane while the packet loops read it.
//!
//! Outbound lookup first tries the destination as a host (the SeGW's case: each FAP's inner
//! /32 is its own CHILD SA's remote selector), then the other SAs newest first (the FAP's
//! case: a few ranges). A packet no SA takes is dropped and counted, never sent in clear.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::child::{ChildConfig, ChildSa};
use super::selector::Flow;

#[derive(Default)]
struct Inner {
    by_spi: HashMap<u32, Arc<ChildSa>>,
    /// Newest last; a replaced SA leaves this list but stays inbound until removed.
    outbound: Vec<Arc<ChildSa>>,
    by_host: HashMap<IpAddr, Arc<ChildSa>>,
}

impl Inner {
    fn reindex(&mut self) {
        self.by_host.clear();
        for sa in &self.outbound {
            if let [sel] = sa.selectors.remote.as_slice() {
                if let Some(host) = sel.single_host() {
                    self.by_host.insert(host, sa.clone());
                }
            }
        }
    }
}

/// Packets that found no SA, either way.
#[derive(Debug, Default)]
pub struct TableCounters {
    pub no_sa_in: AtomicU64,
    pub no_sa_out: AtomicU64,
}

#[derive(Default)]
pub struct SaTable {
    inner: RwLock<Inner>,
    pub counters: TableCounters,
}

/// Why an install was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallError {
    SpiInUse,
    NoSuchSa,
}

impl SaTable {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a CHILD SA; from now on it receives and it is the first choice for sending.
    pub fn install(&self, cfg: ChildConfig) -> Result<Arc<ChildSa>, InstallError> {
        let mut t = self.write();
        if t.by_spi.contains_key(&cfg.spi_in) {
            return Err(InstallError::SpiInUse);
        }
        let sa = Arc::new(ChildSa::new(cfg));
        t.by_spi.insert(sa.spi_in, sa.clone());
        t.outbound.push(sa.clone());
        t.reindex();
        Ok(sa)
    }

    /// Make-before-break: installs `cfg`, then stops sending on `old` (it still receives,
    /// so packets in flight under the old SPI arrive, until `remove(old)`).
    pub fn replace(&self, old: u32, cfg: ChildConfig) -> Result<Arc<ChildSa>, InstallError> {
        if !self.read().by_spi.contains_key(&old) {
            return Err(InstallError::NoSuchSa);
        }
        let sa = self.install(cfg)?;
        let mut t = self.write();
        t.outbound.retain(|s| s.spi_in != old);
        t.reindex();
        Ok(sa)
    }

    /// Forgets the SA that receives on `spi_in` (both directions).
    pub fn remove(&self, spi_in: u32) -> Option<Arc<ChildSa>> {
        let mut t = self.write();
        let sa = t.by_spi.remove(&spi_in)?;
        t.outbound.retain(|s| s.spi_in != spi_in);
        t.reindex();
        Some(sa)
    }

    pub fn get(&self, spi_in: u32) -> Option<Arc<ChildSa>> {
        self.read().by_spi.get(&spi_in).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ChildSa>> {
        self.read().by_spi.values().cloned().collect()
    }

    /// The SA an inbound ESP packet with this SPI belongs to (counted when none).
    pub fn inbound(&self, spi: u32) -> Option<Arc<ChildSa>> {
        let sa = self.get(spi);
        if sa.is_none() {
            self.counters.no_sa_in.fetch_add(1, Ordering::Relaxed);
        }
        sa
    }

    /// The SA an inner packet leaves through (counted when none).
    pub fn outbound(&self, packet: &[u8]) -> Option<Arc<ChildSa>> {
        let found = Flow::parse(packet).and_then(|f| {
            let t = self.read();
            if let Some(sa) = t.by_host.get(&f.dst) {
                if sa.selectors.outbound(&f) {
                    return Some(sa.clone());
                }
            }
            t.outbound
                .iter()
                .rev()
                .find(|sa| sa.selectors.outbound(&f))
                .cloned()
        });
        if found.is_none() {
            self.counters.no_sa_out.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
}
