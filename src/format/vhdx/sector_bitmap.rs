//! Sector bitmaps (MS-VHDX 2.4): one bit per logical sector of a chunk, bit 0 of byte 0
//! first; 1 = the sector is in this file, 0 = read it from the parent.

/// Split `count` sectors starting at bit `first_bit` of `bits` into runs of equal bits:
/// `(present, sectors)`. Bits past the end of `bits` count as absent (0).
pub fn runs(bits: &[u8], first_bit: u64, count: u64) -> Vec<(bool, u64)> {
    crate::format::bitmap::runs(bits, first_bit, count, crate::format::bitmap::BitOrder::LsbFirst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain bit-by-bit reference for the fast path.
    fn naive(bits: &[u8], first: u64, count: u64) -> Vec<(bool, u64)> {
        let mut out: Vec<(bool, u64)> = Vec::new();
        for i in first..first + count {
            let byte = (i / 8) as usize;
            let v = byte < bits.len() && (bits[byte] >> (i % 8)) & 1 == 1;
            match out.last_mut() {
                Some((pv, n)) if *pv == v => *n += 1,
                _ => out.push((v, 1)),
            }
        }
        out
    }

    #[test]
    fn bit_zero_of_byte_zero_is_the_first_sector() {
        assert_eq!(runs(&[0b0000_0001], 0, 8), vec![(true, 1), (false, 7)]);
        assert_eq!(runs(&[0b1000_0000], 0, 8), vec![(false, 7), (true, 1)]);
        assert_eq!(runs(&[0xFF, 0xFF, 0x00], 4, 16), vec![(true, 12), (false, 4)]);
    }

    #[test]
    fn matches_the_bit_by_bit_reference() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..200 {
            let bits: Vec<u8> = (0..24)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [0u8, 0xFF, x as u8][(x % 3) as usize]
                })
                .collect();
            let first = u64::from(x % 64);
            let count = u64::from((x >> 8) % 140);
            assert_eq!(runs(&bits, first, count), naive(&bits, first, count));
        }
    }

    #[test]
    fn bits_past_the_end_are_absent() {
        assert_eq!(runs(&[0xFF], 4, 8), vec![(true, 4), (false, 4)]);
        assert_eq!(runs(&[], 0, 3), vec![(false, 3)]);
    }
}
