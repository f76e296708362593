//! XPRESS with Huffman coding ([MS-XCA] 2.2, "LZ77+Huffman"), the codec of WOF's XPRESS4K,
//! XPRESS8K and XPRESS16K: a 256-byte table of 4-bit codeword lengths for 512 symbols
//! (256 literals, 256 match headers), then a bit stream read in 16-bit little-endian
//! words, MSB first. A WOF chunk is at most 16 KiB, so one table covers it.

use super::copy_match;
use super::huffman::Huffman;

const TABLE: usize = 256;
const SYMBOLS: usize = 512;
const MAX_LEN: u32 = 15;
const MAX_OUTPUT: usize = 65536;

/// The bit reader [MS-XCA] describes, kept exact because the bytes of long match lengths
/// sit in the input right after the words it has loaded: at least 16 bits are held after
/// every step, topped up one word at a time.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    n: u32,
    /// Words loaded from past the end of the input (as zeros).
    phantom: u32,
}

impl Bits<'_> {
    #[inline]
    fn word(&mut self) -> u64 {
        match self.data.get(self.pos..self.pos + 2) {
            Some(w) => {
                self.pos += 2;
                u64::from(u16::from_le_bytes([w[0], w[1]]))
            }
            None => {
                self.phantom += 1;
                0
            }
        }
    }

    #[inline]
    fn peek(&self, k: u32) -> u32 {
        ((self.buf >> (self.n - k)) & ((1u64 << k) - 1)) as u32
    }

    #[inline]
    fn skip(&mut self, k: u32) {
        self.n -= k;
        if self.n < 16 {
            self.buf = self.buf << 16 | self.word();
            self.n += 16;
        }
    }

    fn byte(&mut self) -> Result<u32, String> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or("a match length is cut off by the end of the data")?;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let b = self
            .data
            .get(self.pos..self.pos + N)
            .ok_or("a match length is cut off by the end of the data")?;
        self.pos += N;
        Ok(b.try_into().unwrap())
    }
}

/// Decode `input` into exactly `out.len()` (≤ 64 KiB) bytes.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    if out.len() > MAX_OUTPUT {
        return Err(format!("{} bytes is more than one 64 KiB block", out.len()));
    }
    let table = input
        .get(..TABLE)
        .ok_or_else(|| format!("{} bytes, too short for the Huffman table", input.len()))?;
    let mut lens = [0u8; SYMBOLS];
    for (i, &b) in table.iter().enumerate() {
        lens[2 * i] = b & 0x0F;
        lens[2 * i + 1] = b >> 4;
    }
    let mut code = Huffman::new(MAX_LEN, 11, SYMBOLS);
    code.build(&lens).map_err(str::to_string)?;

    let mut bits = Bits {
        data: input,
        pos: TABLE,
        buf: 0,
        n: 32,
        phantom: 0,
    };
    bits.buf = bits.word() << 16;
    bits.buf |= bits.word();

    let mut op = 0usize;
    while op < out.len() {
        let (sym, len) = code
            .decode(bits.peek(MAX_LEN))
            .ok_or_else(|| format!("byte {op}: a code the Huffman table does not use"))?;
        bits.skip(len);
        if sym < 256 {
            out[op] = sym as u8;
            op += 1;
            continue;
        }
        let sym = sym - 256;
        let mut length = (sym & 15) as usize;
        let dist_bits = sym >> 4;
        if length == 15 {
            length = bits.byte()? as usize;
            if length == 255 {
                length = u16::from_le_bytes(bits.bytes::<2>()?) as usize;
                if length == 0 {
                    length = u32::from_le_bytes(bits.bytes::<4>()?) as usize;
                }
                if length < 15 {
                    return Err(format!("byte {op}: bad long match length {length}"));
                }
                length -= 15;
            }
            length += 15;
        }
        length += 3;
        let dist = (1usize << dist_bits) | bits.peek(dist_bits) as usize;
        bits.skip(dist_bits);
        if dist > op {
            return Err(format!("byte {op}: a match reaches {dist} bytes back"));
        }
        if length > out.len() - op {
            return Err(format!(
                "byte {op}: a match of {length} bytes runs past the {}-byte output",
                out.len()
            ));
        }
        copy_match(out, op, dist, length);
        op += length;
    }
    // The bits held but not used may come from past the end; bits used may not.
    if bits.phantom * 16 > bits.n {
        return Err("the data ends before the output is complete".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_table(nonzero: &[(usize, u8)]) -> Vec<u8> {
        let mut t = vec![0u8; 256];
        for &(i, b) in nonzero {
            t[i] = b;
        }
        t
    }

    /// [MS-XCA] 3.2: "abcdefghijklmnopqrstuvwxyz" as literals.
    #[test]
    fn spec_literals() {
        let mut input = spec_table(&[
            (48, 0x50),
            (49, 0x55),
            (50, 0x55),
            (51, 0x55),
            (52, 0x55),
            (53, 0x55),
            (54, 0x55),
            (55, 0x55),
            (56, 0x55),
            (57, 0x55),
            (58, 0x55),
            (59, 0x45),
            (60, 0x44),
            (61, 0x04),
            (128, 0x04),
        ]);
        input.extend([
            0xd8, 0x52, 0x3e, 0xd7, 0x94, 0x11, 0x5b, 0xe9, 0x19, 0x5f, 0xf9, 0xd6, 0x7c, 0xdf, 0x8d, 0x04, 0x00, 0x00,
            0x00, 0x00,
        ]);
        let mut out = [0u8; 26];
        decompress(&input, &mut out).unwrap();
        assert_eq!(&out, b"abcdefghijklmnopqrstuvwxyz");
    }

    /// [MS-XCA] 3.2: "abc" then a match of 297 bytes at distance 3, whose length takes
    /// an extra byte and a 16-bit word from between the bit stream's words.
    #[test]
    fn spec_long_match() {
        let mut input = spec_table(&[(48, 0x30), (49, 0x23), (128, 0x02), (143, 0x20)]);
        input.extend([0xa8, 0xdc, 0x00, 0x00, 0xff, 0x26, 0x01]);
        let mut out = [0u8; 300];
        decompress(&input, &mut out).unwrap();
        assert_eq!(out.to_vec(), b"abc".repeat(100));
        let mut longer = [0u8; 301];
        assert!(decompress(&input, &mut longer).is_err(), "truncated");
    }

    #[test]
    fn damage_is_an_error() {
        let mut out = [0u8; 100];
        assert!(decompress(&[0u8; 100], &mut out).is_err(), "no table");
        assert!(decompress(&[0u8; 300], &mut out).is_err(), "empty code");
        // Only symbol 256 (a match of 3 at distance 1), before any output.
        let mut input = spec_table(&[(128, 0x01)]);
        input.extend([0u8; 8]);
        assert!(decompress(&input, &mut out).is_err());
    }
}
