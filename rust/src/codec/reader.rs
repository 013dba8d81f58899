//! Bounds-checked big-endian reads at absolute offsets. Every accessor returns `None`
//! instead of panicking, so a logic slip in the decoder turns into an error, never a crash.

#[derive(Clone, Copy)]
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn len(self) -> usize {
        self.0.len()
    }

    pub(crate) fn u8(self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }

    pub(crate) fn u16(self, at: usize) -> Option<u16> {
        let b = self.0.get(at..at.checked_add(2)?)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    pub(crate) fn u32(self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.0.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    pub(crate) fn bytes(self, from: usize, to: usize) -> Option<&'a [u8]> {
        self.0.get(from..to)
    }
}
