//! The sector bitmap in front of each allocated block: one bit per sector of the block,
//! most-significant bit first (bit 7 of byte 0 is the block's first sector); 1 = the
//! sector is in this file, 0 = it is not (the parent's, or zeros without a parent).

/// Bytes of the bitmap of a block of `sectors` sectors: one bit each, padded to whole
/// sectors.
pub fn bitmap_size(sectors: u64) -> u64 {
    sectors.div_ceil(8).div_ceil(512) * 512
}

/// Split `count` sectors starting at sector `first` of `bits` into runs of equal bits:
/// `(present, sectors)`. Bits past the end of `bits` count as absent (0).
pub fn runs(bits: &[u8], first: u64, count: u64) -> Vec<(bool, u64)> {
    crate::format::bitmap::runs(bits, first, count, crate::format::bitmap::BitOrder::MsbFirst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(bits: &[u8], first: u64, count: u64) -> Vec<(bool, u64)> {
        let mut out: Vec<(bool, u64)> = Vec::new();
        for i in first..first + count {
            let byte = (i / 8) as usize;
            let v = byte < bits.len() && (bits[byte] << (i % 8)) & 0x80 != 0;
            match out.last_mut() {
                Some((pv, n)) if *pv == v => *n += 1,
                _ => out.push((v, 1)),
            }
        }
        out
    }

    #[test]
    fn most_significant_bit_is_the_first_sector() {
        assert_eq!(runs(&[0b1000_0000], 0, 8), vec![(true, 1), (false, 7)]);
        assert_eq!(runs(&[0b0000_0001], 0, 8), vec![(false, 7), (true, 1)]);
        assert_eq!(runs(&[0x0F, 0xFF, 0x00], 4, 16), vec![(true, 12), (false, 4)]);
        assert_eq!(runs(&[0b0110_0000], 1, 3), vec![(true, 2), (false, 1)]);
    }

    #[test]
    fn matches_the_bit_by_bit_reference() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..300 {
            let bits: Vec<u8> = (0..24)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [0u8, 0xFF, x as u8][(x % 3) as usize]
                })
                .collect();
            let first = u64::from(x % 64);
            let count = u64::from((x >> 8) % 150);
            assert_eq!(runs(&bits, first, count), naive(&bits, first, count));
        }
    }

    #[test]
    fn sizes_and_bits_past_the_end() {
        assert_eq!(bitmap_size(4096), 512);
        assert_eq!(bitmap_size(1), 512);
        assert_eq!(bitmap_size(4097), 1024);
        assert_eq!(bitmap_size(1 << 22), 1 << 19);
        assert_eq!(runs(&[0xFF], 4, 8), vec![(true, 4), (false, 4)]);
        assert_eq!(runs(&[], u64::MAX - 2, 3), vec![(false, 2)]);
    }
}
