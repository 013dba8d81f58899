//! The receiver's anti-replay window (RFC 4303 §3.4.3, Appendix A for ESN), kept as a ring
//! of 64-bit blocks so sliding forward clears whole blocks instead of shifting bits
//! (the layout of RFC 6479).

/// Why a sequence number is refused before or after the ICV check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Left of the window, or the never-sent number 0.
    TooOld,
    /// Already received.
    Duplicate,
}

/// Bits per block of the ring.
const BLOCK_BITS: u64 = 64;

/// The window of one inbound SA. `size` packets left of the highest received are tracked.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    blocks: Vec<u64>,
    /// Highest sequence number received so far (0: none).
    top: u64,
    size: u64,
    esn: bool,
}

impl ReplayWindow {
    /// A window of at least `size` packets (rounded up to a multiple of 64, at least 64).
    pub fn new(size: usize, esn: bool) -> Self {
        let blocks = (size as u64).div_ceil(BLOCK_BITS).max(1);
        Self {
            // One spare block: the block holding `top` is partly in the future.
            blocks: vec![0; (blocks + 1) as usize],
            top: 0,
            size: blocks * BLOCK_BITS,
            esn,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number accepted so far.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The full sequence number the low half `seq_lo` stands for (RFC 4303 Appendix A2.2
    /// with ESN; the low half itself without), refused early when it cannot be new. Call
    /// before the ICV check; `accept` after it.
    pub fn check(&self, seq_lo: u32) -> Result<u64, Replay> {
        let seq = self.infer(seq_lo).ok_or(Replay::TooOld)?;
        if seq == 0 {
            return Err(Replay::TooOld);
        }
        if seq > self.top {
            return Ok(seq);
        }
        if self.top - seq >= self.size {
            return Err(Replay::TooOld);
        }
        if self.blocks[self.slot(seq)] & bit(seq) != 0 {
            return Err(Replay::Duplicate);
        }
        Ok(seq)
    }

    /// Marks `seq` (from `check`, after its ICV passed) received, sliding the window.
    pub fn accept(&mut self, seq: u64) -> Result<(), Replay> {
        if seq > self.top {
            let n = self.blocks.len() as u64;
            let from = self.top / BLOCK_BITS;
            let to = seq / BLOCK_BITS;
            // Clear the blocks the window slides into (all of them after a long jump).
            for b in (from + 1..=to).take(n as usize) {
                self.blocks[(b % n) as usize] = 0;
            }
            self.top = seq;
        } else {
            self.check_old(seq)?;
        }
        let slot = self.slot(seq);
        self.blocks[slot] |= bit(seq);
        Ok(())
    }

    fn check_old(&self, seq: u64) -> Result<(), Replay> {
        if seq == 0 || self.top - seq >= self.size {
            return Err(Replay::TooOld);
        }
        if self.blocks[self.slot(seq)] & bit(seq) != 0 {
            return Err(Replay::Duplicate);
        }
        Ok(())
    }

    fn slot(&self, seq: u64) -> usize {
        ((seq / BLOCK_BITS) % self.blocks.len() as u64) as usize
    }

    fn infer(&self, seq_lo: u32) -> Option<u64> {
        if !self.esn {
            return Some(u64::from(seq_lo));
        }
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let w = self.size as u32;
        let bottom = tl.wrapping_sub(w).wrapping_add(1);
        let hi = if tl >= w - 1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_lo >= bottom {
                th
            } else {
                th.checked_add(1)?
            }
        } else if seq_lo >= bottom {
            // Case B: the window straddles two subspaces; this one is from the lower.
            th.checked_sub(1)?
        } else {
            th
        };
        Some((u64::from(hi) << 32) | u64::from(seq_lo))
    }
}

fn bit(seq: u64) -> u64 {
    1 << (seq % BLOCK_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(w: &mut ReplayWindow, lo: u32) -> Result<u64, Replay> {
        let s = w.check(lo)?;
        w.accept(s)?;
        Ok(s)
    }

    #[test]
    fn in_order_out_of_order_duplicates_and_old() {
        let mut w = ReplayWindow::new(1024, false);
        assert_eq!(w.size(), 1024);
        assert_eq!(take(&mut w, 0), Err(Replay::TooOld));
        for s in 1..=2000 {
            assert_eq!(take(&mut w, s), Ok(u64::from(s)));
        }
        assert_eq!(take(&mut w, 2000), Err(Replay::Duplicate));
        assert_eq!(take(&mut w, 977), Err(Replay::Duplicate)); // inside, seen
        assert_eq!(take(&mut w, 976), Err(Replay::TooOld)); // 2000 - 976 = 1024
        assert_eq!(take(&mut w, 3000), Ok(3000));
        // a hole left behind may be filled once, and only while inside the window
        assert_eq!(take(&mut w, 2500), Ok(2500));
        assert_eq!(take(&mut w, 2500), Err(Replay::Duplicate));
        assert_eq!(take(&mut w, 1976), Err(Replay::TooOld));
        assert_eq!(take(&mut w, 1977), Err(Replay::Duplicate));
        assert_eq!(take(&mut w, 2001), Ok(2001));
    }

    #[test]
    fn long_jump_clears_the_ring() {
        let mut w = ReplayWindow::new(128, false);
        for s in 1..=200 {
            assert!(take(&mut w, s).is_ok());
        }
        assert_eq!(take(&mut w, 100_000), Ok(100_000));
        for s in (100_000 - 127)..100_000 {
            assert_eq!(take(&mut w, s), Ok(u64::from(s)), "{s}");
        }
    }

    #[test]
    fn esn_crosses_the_32_bit_boundary() {
        let mut w = ReplayWindow::new(1024, true);
        assert_eq!(take(&mut w, 5000), Ok(5000));
        // Right after the start a low half just below 2^32 would be from subspace -1.
        assert_eq!(take(&mut w, u32::MAX), Ok(u64::from(u32::MAX)));
        let mut w = ReplayWindow::new(1024, true);
        assert_eq!(take(&mut w, 1), Ok(1));
        assert_eq!(w.check(u32::MAX), Err(Replay::TooOld));
        assert_eq!(take(&mut w, 3_000_000_000), Ok(3_000_000_000));
        for s in (u32::MAX - 10)..=u32::MAX {
            assert!(take(&mut w, s).is_ok());
        }
        // The low half wraps: the next packets are in the next 2^32 subspace.
        assert_eq!(take(&mut w, 0), Ok(1 << 32));
        assert_eq!(take(&mut w, 5), Ok((1 << 32) + 5));
        // A late packet from before the wrap still counts in the lower subspace (case B).
        assert_eq!(take(&mut w, u32::MAX - 20), Ok(u64::from(u32::MAX - 20)));
        assert_eq!(take(&mut w, u32::MAX), Err(Replay::Duplicate));
        // Without ESN the same low half is simply old.
        let mut plain = ReplayWindow::new(1024, false);
        assert!(take(&mut plain, u32::MAX).is_ok());
        assert_eq!(take(&mut plain, 5), Err(Replay::TooOld));
    }
}
