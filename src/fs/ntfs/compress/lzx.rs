//! LZX as WOF (and WIM) use it: each chunk of up to 32 KiB is compressed on its own with
//! a 32 KiB window, starts with empty codeword lengths and recent offsets of 1, carries
//! no header (CAB's E8 flag and translation size are absent), and always has its x86
//! CALL targets translated with a translation size of 12,000,000.
//!
//! The block format is the one [MS-PATCH] LZXD and wimlib document: verbatim, aligned-offset
//! and uncompressed blocks; a block size of 32 KiB given by one bit, any other by 16.

use super::copy_match;
use super::huffman::Huffman;

const WINDOW: usize = 32768;
const NUM_CHARS: usize = 256;
const OFFSET_SLOTS: usize = 30;
const MAIN_SYMBOLS: usize = NUM_CHARS + OFFSET_SLOTS * 8;
const LENGTH_SYMBOLS: usize = 249;
const PRE_SYMBOLS: usize = 20;
const ALIGNED_SYMBOLS: usize = 8;
const MIN_MATCH: usize = 2;
const PRIMARY_LENGTHS: u32 = 7;
const E8_FILE_SIZE: i32 = 12_000_000;

const VERBATIM: u32 = 1;
const ALIGNED: u32 = 2;
const UNCOMPRESSED: u32 = 3;

const SLOT_BASE: [u32; OFFSET_SLOTS] = [
    0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144,
    8192, 12288, 16384, 24576,
];
const SLOT_EXTRA: [u32; OFFSET_SLOTS] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];

/// Bits read MSB first from 16-bit little-endian words; past the end, zeros.
///
/// Where an uncompressed block starts depends on how far a reader had loaded: the
/// stream skips to the end of the last 16-bit word that a reader loading one word only
/// when it holds fewer bits than it is about to look at (16 for a main or length symbol,
/// 15 for a pretree symbol, 7 for an aligned one, the count for plain bits) would have
/// loaded. That is what wimlib and libmspack do and what Windows' data is read with;
/// `reach` records it while this reader loads ahead for speed.
struct Bits<'a> {
    data: &'a [u8],
    /// Next byte to load (may pass the end: zeros are loaded there).
    pos: usize,
    buf: u64,
    n: u32,
    /// The furthest bit position any look so far has covered.
    reach: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            pos: 0,
            buf: 0,
            n: 0,
            reach: 0,
        }
    }

    #[inline]
    fn consumed(&self) -> usize {
        self.pos * 8 - self.n as usize
    }

    #[inline]
    fn refill(&mut self) {
        while self.n <= 48 {
            let w = match self.data.get(self.pos..self.pos + 2) {
                Some(w) => u64::from(u16::from_le_bytes([w[0], w[1]])),
                None => 0,
            };
            self.buf = self.buf << 16 | w;
            self.n += 16;
            self.pos += 2;
        }
    }

    /// The next `k` (≤ 16) bits, for a reader that looks at `look` bits here.
    #[inline]
    fn peek(&mut self, k: u32, look: u32) -> u32 {
        if self.n < 16 {
            self.refill();
        }
        self.reach = self.reach.max(self.consumed() + look as usize);
        if k == 0 {
            return 0;
        }
        ((self.buf >> (self.n - k)) & ((1u64 << k) - 1)) as u32
    }

    #[inline]
    fn skip(&mut self, k: u32) {
        self.n -= k;
    }

    #[inline]
    fn read(&mut self, k: u32) -> u32 {
        let v = self.peek(k, k);
        self.skip(k);
        v
    }

    #[inline]
    fn symbol(&mut self, code: &Huffman, look: u32) -> Result<u32, String> {
        let bits = self.peek(code.max_len(), look);
        let (sym, len) = code
            .decode(bits)
            .ok_or_else(|| format!("bit {}: a code its Huffman table does not use", self.consumed()))?;
        self.skip(len);
        Ok(sym)
    }

    /// Move to the raw bytes of an uncompressed block (see the type's comment).
    fn align(&mut self) {
        let reach = self.reach.max(self.consumed() + 1);
        self.pos = reach.div_ceil(16) * 2;
        self.n = 0;
        self.buf = 0;
        self.reach = self.pos * 8;
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], String> {
        let b = self
            .data
            .get(self.pos..self.pos + len)
            .ok_or("an uncompressed block runs past the end of the data")?;
        self.pos += len;
        self.reach = self.pos * 8;
        Ok(b)
    }

    fn overran(&self) -> bool {
        self.consumed() > self.data.len() * 8
    }
}

struct Codes {
    main: Huffman,
    length: Huffman,
    aligned: Huffman,
    pre: Huffman,
    main_lens: [u8; MAIN_SYMBOLS],
    length_lens: [u8; LENGTH_SYMBOLS],
}

/// Read codeword lengths for `lens` as deltas from their previous values, through a
/// pretree read first.
fn read_lengths(bits: &mut Bits, pre: &mut Huffman, lens: &mut [u8]) -> Result<(), String> {
    let mut pre_lens = [0u8; PRE_SYMBOLS];
    for l in &mut pre_lens {
        *l = bits.read(4) as u8;
    }
    pre.build(&pre_lens).map_err(|e| format!("pretree: {e}"))?;
    let delta = |old: u8, sym: u32| ((u32::from(old) + 17 - sym) % 17) as u8;
    let mut i = 0;
    while i < lens.len() {
        let sym = bits.symbol(pre, 15)?;
        let (run, value) = match sym {
            0..=16 => (1, delta(lens[i], sym)),
            17 => (4 + bits.read(4) as usize, 0),
            18 => (20 + bits.read(5) as usize, 0),
            _ => {
                let run = 4 + bits.read(1) as usize;
                let sym = bits.symbol(pre, 15)?;
                if sym > 16 {
                    return Err(format!("pretree: a repeat of symbol {sym}"));
                }
                (run, delta(lens[i], sym))
            }
        };
        // A run past the end is cut: only damaged data does that.
        let end = (i + run).min(lens.len());
        lens[i..end].fill(value);
        i = end;
    }
    Ok(())
}

/// Decode one chunk, `input`, into exactly `out.len()` (≤ 32 KiB) bytes.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    if out.len() > WINDOW {
        return Err(format!("{} bytes is more than the 32 KiB window", out.len()));
    }
    let mut codes = Codes {
        main: Huffman::new(16, 11, MAIN_SYMBOLS),
        length: Huffman::new(16, 10, LENGTH_SYMBOLS),
        aligned: Huffman::new(7, 7, ALIGNED_SYMBOLS),
        pre: Huffman::new(15, 6, PRE_SYMBOLS),
        main_lens: [0; MAIN_SYMBOLS],
        length_lens: [0; LENGTH_SYMBOLS],
    };
    let mut bits = Bits::new(input);
    let mut recent = [1u32; 3];
    let mut op = 0usize;
    while op < out.len() {
        let kind = bits.read(3);
        let size = if bits.read(1) == 1 {
            32768
        } else {
            let hi = bits.read(8);
            hi << 8 | bits.read(8)
        } as usize;
        if size == 0 || size > out.len() - op {
            return Err(format!(
                "block at byte {op}: size {size} does not fit the {}-byte chunk",
                out.len()
            ));
        }
        match kind {
            VERBATIM | ALIGNED => {
                if kind == ALIGNED {
                    let mut lens = [0u8; ALIGNED_SYMBOLS];
                    for l in &mut lens {
                        *l = bits.read(3) as u8;
                    }
                    codes.aligned.build(&lens).map_err(|e| format!("aligned code: {e}"))?;
                }
                read_lengths(&mut bits, &mut codes.pre, &mut codes.main_lens[..NUM_CHARS])?;
                read_lengths(&mut bits, &mut codes.pre, &mut codes.main_lens[NUM_CHARS..])?;
                codes
                    .main
                    .build(&codes.main_lens)
                    .map_err(|e| format!("main code: {e}"))?;
                read_lengths(&mut bits, &mut codes.pre, &mut codes.length_lens)?;
                codes
                    .length
                    .build(&codes.length_lens)
                    .map_err(|e| format!("length code: {e}"))?;
                decode_block(&mut bits, &codes, kind == ALIGNED, out, op, op + size, &mut recent)?;
            }
            UNCOMPRESSED => {
                bits.align();
                let r = bits.bytes(12)?;
                for (i, v) in r.chunks_exact(4).enumerate() {
                    recent[i] = u32::from_le_bytes(v.try_into().unwrap());
                }
                if recent.contains(&0) {
                    return Err(format!("uncompressed block at byte {op}: a recent offset of 0"));
                }
                out[op..op + size].copy_from_slice(bits.bytes(size)?);
                if size % 2 == 1 {
                    // Padding to keep the bit stream on 16-bit words; it may be missing at the end.
                    let _ = bits.bytes(1);
                }
            }
            _ => return Err(format!("block at byte {op}: unknown block type {kind}")),
        }
        op += size;
    }
    if bits.overran() {
        return Err("the data ends before the output is complete".into());
    }
    undo_e8(out);
    Ok(())
}

fn decode_block(
    bits: &mut Bits,
    codes: &Codes,
    aligned: bool,
    out: &mut [u8],
    mut op: usize,
    end: usize,
    recent: &mut [u32; 3],
) -> Result<(), String> {
    while op < end {
        let sym = bits.symbol(&codes.main, 16)?;
        if sym < NUM_CHARS as u32 {
            out[op] = sym as u8;
            op += 1;
            continue;
        }
        let sym = sym - NUM_CHARS as u32;
        let mut length = sym & 7;
        let slot = (sym >> 3) as usize;
        if length == PRIMARY_LENGTHS {
            length += bits.symbol(&codes.length, 16)?;
        }
        let length = length as usize + MIN_MATCH;
        let dist = if slot < 3 {
            // A repeat: swap it to the front (R1 and R2 only trade places with R0).
            recent.swap(0, slot);
            recent[0]
        } else {
            let extra = SLOT_EXTRA[slot];
            let mut d = SLOT_BASE[slot];
            if aligned && extra >= 3 {
                d += bits.read(extra - 3) << 3;
                d += bits.symbol(&codes.aligned, 7)?;
            } else {
                d += bits.read(extra);
            }
            let d = d - 2;
            recent[2] = recent[1];
            recent[1] = recent[0];
            recent[0] = d;
            d
        } as usize;
        if length > end - op {
            return Err(format!("byte {op}: a match of {length} bytes runs past its block"));
        }
        if dist == 0 || dist > op {
            return Err(format!("byte {op}: a match reaches {dist} bytes back"));
        }
        copy_match(out, op, dist, length);
        op += length;
    }
    Ok(())
}

/// Turn the absolute CALL targets the compressor wrote back into relative ones: at each
/// E8 byte before the last 10, the next 4 bytes, if they are a position inside the
/// translation size, become relative to the E8's position (4 bytes are skipped after an
/// E8 whether or not they change).
fn undo_e8(data: &mut [u8]) {
    if data.len() <= 10 {
        return;
    }
    let stop = data.len() - 10;
    let mut i = 0usize;
    while i < stop {
        let Some(at) = data[i..stop].iter().position(|&b| b == 0xE8) else {
            break;
        };
        i += at;
        let pos = i as i32;
        let abs = i32::from_le_bytes(data[i + 1..i + 5].try_into().unwrap());
        let rel = if abs >= 0 {
            (abs < E8_FILE_SIZE).then(|| abs - pos)
        } else {
            (abs >= -pos).then(|| abs + E8_FILE_SIZE)
        };
        if let Some(rel) = rel {
            data[i + 1..i + 5].copy_from_slice(&rel.to_le_bytes());
        }
        i += 5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e8_translation_is_undone() {
        let mut d = vec![0u8; 40];
        d[3] = 0xE8;
        d[4..8].copy_from_slice(&(3i32 + 100).to_le_bytes()); // absolute 103 → +100
        d[10] = 0xE8;
        d[11..15].copy_from_slice(&(-5i32).to_le_bytes()); // before the start → +12e6 - 5
        d[20] = 0xE8;
        d[21..25].copy_from_slice(&(-30i32).to_le_bytes()); // out of range: kept
        d[32] = 0xE8; // within the last 10 bytes: kept
        d[33..37].copy_from_slice(&7i32.to_le_bytes());
        let mut want = d.clone();
        want[4..8].copy_from_slice(&100i32.to_le_bytes());
        want[11..15].copy_from_slice(&(E8_FILE_SIZE - 5).to_le_bytes());
        undo_e8(&mut d);
        assert_eq!(d, want);
    }

    #[test]
    fn uncompressed_block() {
        // Block type 3, default size bit 0, size 5 (16 bits): 3+1+16 = 20 bits, then
        // padding to the word boundary, R0..R2, the bytes, one pad byte.
        let mut w = BitWriter::default();
        w.put(3, 3);
        w.put(0, 1);
        w.put(5, 16);
        let mut input = w.finish();
        for r in [1u32, 2, 3] {
            input.extend(r.to_le_bytes());
        }
        input.extend(b"hello\0");
        let mut out = [0u8; 5];
        decompress(&input, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        assert!(decompress(&input[..input.len() - 3], &mut out).is_err());
    }

    #[test]
    fn damage_is_an_error() {
        let mut out = [0u8; 1000];
        assert!(decompress(&[], &mut out).is_err());
        assert!(decompress(&[0xFF; 64], &mut out).is_err());
        assert!(decompress(&[0u8; 64], &mut out).is_err());
        let mut big = vec![0u8; WINDOW + 1];
        assert!(decompress(&[0u8; 64], &mut big).is_err());
    }

    /// MSB-first bits in 16-bit little-endian words, as the compressor writes them.
    #[derive(Default)]
    struct BitWriter {
        acc: u64,
        n: u32,
        out: Vec<u8>,
    }

    impl BitWriter {
        fn put(&mut self, v: u32, k: u32) {
            self.acc = self.acc << k | u64::from(v);
            self.n += k;
            while self.n >= 16 {
                self.n -= 16;
                let w = (self.acc >> self.n) as u16;
                self.out.extend(w.to_le_bytes());
            }
        }
        fn finish(mut self) -> Vec<u8> {
            if self.n > 0 {
                let pad = 16 - self.n;
                self.put(0, pad);
            }
            self.out
        }
    }
}
