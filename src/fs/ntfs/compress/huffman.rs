//! Canonical Huffman codes as XPRESS and LZX write them: codeword lengths per symbol,
//! codes assigned shortest first and, within a length, by symbol value, read MSB-first.

/// A decoder for one code. Codes up to `fast_bits` long are found with one table look-up;
/// longer (rare) ones by walking the lengths.
pub(super) struct Huffman {
    fast_bits: u32,
    max_len: u32,
    /// Indexed by the next `fast_bits` bits: `symbol << 5 | length`, or 0 when the code
    /// there is longer than `fast_bits` or unused.
    fast: Vec<u32>,
    /// Per length: the first canonical code, how many codes, and where their symbols
    /// start in `sorted`.
    first: [u32; 17],
    count: [u32; 17],
    start: [u32; 17],
    sorted: Vec<u16>,
}

impl Huffman {
    /// A decoder for codes of at most `max_len` (≤ 16) bits.
    pub fn new(max_len: u32, fast_bits: u32, symbols: usize) -> Huffman {
        let fast_bits = fast_bits.min(max_len);
        Huffman {
            fast_bits,
            max_len,
            fast: vec![0; 1 << fast_bits],
            first: [0; 17],
            count: [0; 17],
            start: [0; 17],
            sorted: vec![0; symbols],
        }
    }

    /// Set the code from each symbol's codeword length (0: unused). An over-subscribed
    /// set of lengths is an error; an incomplete one is accepted, and reading one of its
    /// unused codes fails.
    pub fn build(&mut self, lens: &[u8]) -> Result<(), &'static str> {
        self.count = [0; 17];
        for &l in lens {
            if u32::from(l) > self.max_len {
                return Err("a Huffman codeword is longer than the format allows");
            }
            self.count[l as usize] += 1;
        }
        self.count[0] = 0;
        let mut left: i64 = 1;
        for l in 1..=self.max_len as usize {
            left = (left << 1) - i64::from(self.count[l]);
            if left < 0 {
                return Err("over-subscribed Huffman code");
            }
        }
        let (mut code, mut index) = (0u32, 0u32);
        for l in 1..=self.max_len as usize {
            code = (code + self.count[l - 1]) << 1;
            self.first[l] = code;
            self.start[l] = index;
            index += self.count[l];
        }
        if self.sorted.len() < index as usize {
            self.sorted.resize(index as usize, 0);
        }
        let mut next = self.start;
        for (sym, &l) in lens.iter().enumerate() {
            if l != 0 {
                self.sorted[next[l as usize] as usize] = sym as u16;
                next[l as usize] += 1;
            }
        }
        self.fast.fill(0);
        let fb = self.fast_bits;
        for l in 1..=fb {
            for k in 0..self.count[l as usize] {
                let sym = u32::from(self.sorted[(self.start[l as usize] + k) as usize]);
                let c = (self.first[l as usize] + k) as usize;
                let span = 1usize << (fb - l);
                self.fast[c * span..(c + 1) * span].fill(sym << 5 | l);
            }
        }
        Ok(())
    }

    /// Bits a reader must offer `decode`.
    #[inline]
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// The symbol at the start of `bits`, the next `max_len` bits of the stream, and its
    /// codeword length; `None` for a code the lengths leave unused.
    #[inline]
    pub fn decode(&self, bits: u32) -> Option<(u32, u32)> {
        let e = self.fast[(bits >> (self.max_len - self.fast_bits)) as usize];
        if e != 0 {
            return Some((e >> 5, e & 31));
        }
        self.decode_long(bits)
    }

    #[cold]
    fn decode_long(&self, bits: u32) -> Option<(u32, u32)> {
        for l in self.fast_bits + 1..=self.max_len {
            let c = bits >> (self.max_len - l);
            let i = c.wrapping_sub(self.first[l as usize]);
            if i < self.count[l as usize] {
                let sym = self.sorted[(self.start[l as usize] + i) as usize];
                return Some((u32::from(sym), l));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_codes_decode() {
        // Lengths A=2, B=1, C=3, D=3: B=0, A=10, C=110, D=111.
        for fast in [1, 2, 3] {
            let mut h = Huffman::new(3, fast, 4);
            h.build(&[2, 1, 3, 3]).unwrap();
            assert_eq!(h.decode(0b000), Some((1, 1)));
            assert_eq!(h.decode(0b011), Some((1, 1)));
            assert_eq!(h.decode(0b100), Some((0, 2)));
            assert_eq!(h.decode(0b110), Some((2, 3)));
            assert_eq!(h.decode(0b111), Some((3, 3)));
        }
    }

    #[test]
    fn bad_lengths() {
        let mut h = Huffman::new(3, 2, 4);
        assert!(h.build(&[1, 1, 1, 0]).is_err(), "over-subscribed");
        assert!(h.build(&[4, 1, 0, 0]).is_err(), "too long");
        // Incomplete: only code 0 is used; 1 is not.
        h.build(&[1, 0, 0, 0]).unwrap();
        assert_eq!(h.decode(0b000), Some((0, 1)));
        assert_eq!(h.decode(0b100), None);
        // Empty.
        h.build(&[0, 0, 0, 0]).unwrap();
        assert_eq!(h.decode(0), None);
    }
}
