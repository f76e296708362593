//! Sector bitmaps as runs: one bit per sector, 1 = stored in this file. VHDX numbers the
//! bits least-significant first, VHD most-significant first; the run-splitting is the
//! same.

/// Which bit of a byte is its first sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOrder {
    /// Bit 0 of byte 0 is the first sector (VHDX).
    LsbFirst,
    /// Bit 7 of byte 0 is the first sector (VHD).
    MsbFirst,
}

/// Split `count` sectors starting at bit `first` of `bits` into runs of equal bits:
/// `(present, sectors)`. Bits past the end of `bits` count as absent (0).
pub fn runs(bits: &[u8], first: u64, count: u64, order: BitOrder) -> Vec<(bool, u64)> {
    let byte_at = |i: u64| usize::try_from(i / 8).ok().and_then(|byte| bits.get(byte)).copied();
    let bit = |i: u64| -> bool {
        let shift = match order {
            BitOrder::LsbFirst => i % 8,
            BitOrder::MsbFirst => 7 - i % 8,
        };
        byte_at(i).is_some_and(|b| b >> shift & 1 == 1)
    };
    let mut out: Vec<(bool, u64)> = Vec::new();
    let mut i = first;
    let end = first.saturating_add(count);
    while i < end {
        // Whole bytes of one value are the common case: take them eight at a time.
        let whole = byte_at(i).filter(|&b| i % 8 == 0 && end - i >= 8 && (b == 0 || b == 0xFF));
        let (value, n) = match whole {
            Some(b) => (b == 0xFF, 8),
            None => (bit(i), 1),
        };
        match out.last_mut() {
            Some((v, len)) if *v == value => *len += n,
            _ => out.push((value, n)),
        }
        i += n;
    }
    out
}
