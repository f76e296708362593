//! Decoders for the compressed data Windows keeps on NTFS: LZNT1 (the "compress contents"
//! attribute) and, for WOF ("CompactOS") files, XPRESS with Huffman coding and LZX.
//!
//! Written here rather than taken from crates.io because none of the crates fits (checked
//! against wimlib's compressors):
//! - `lznt1` concatenates chunks, while NTFS fills a chunk that decodes short with zeros up
//!   to its 4 KiB, so every later byte of the unit would shift; it neither bounds a chunk's
//!   output nor confines back-references to the chunk. `rust-lzxpress` indexes past the
//!   end of truncated input and underflows on a reference at the start of a chunk
//!   (panics), and prints to stdout.
//! - `xpress-huffman` stops when its input is used up even though bits for the last
//!   symbols are still in its bit buffer: 60 of 2,900 wimlib chunks came back short. It
//!   also decodes one bit at a time (75–125 MiB/s).
//! - `lzxd` reads the CAB framing (an E8 flag and translation size at the start of the
//!   stream, E8 state carried across frames); WOF chunks have neither, and shifting the
//!   bits to fake a header would break the 16-bit alignment of uncompressed blocks.
//!
//! Every decoder writes exactly `out.len()` bytes or fails; it never panics on garbage.

mod huffman;
pub(super) mod lznt1;
pub(super) mod lzx;
pub(super) mod xpress;

/// Copy `len` bytes from `dist` bytes back to `pos` in `out`, where the regions may
/// overlap (a run): the caller has checked `dist <= pos` and `pos + len <= out.len()`.
#[inline]
fn copy_match(out: &mut [u8], pos: usize, dist: usize, len: usize) {
    if dist >= len {
        out.copy_within(pos - dist..pos - dist + len, pos);
    } else if dist == 1 {
        let b = out[pos - 1];
        out[pos..pos + len].fill(b);
    } else {
        // Each pass doubles what can be copied at once.
        let mut done = 0;
        while done < len {
            let n = (len - done).min(dist + done);
            out.copy_within(pos - dist..pos - dist + n, pos + done);
            done += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_match, lznt1, lzx, xpress};

    /// Random input, shaped enough to get past the first checks, never panics: the
    /// decoders fail or fill the output. (Mutated wimlib and ntfs-3g output was fuzzed
    /// the same way, 100,000 inputs per decoder, while they were written.)
    #[test]
    fn garbage_never_panics() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let len = (rnd() % 3000) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let out_len = 1 + (rnd() % 32768) as usize;
            let mut out = vec![0u8; out_len];
            match round % 3 {
                0 => {
                    // A table of short codeword lengths: a plausible Huffman code.
                    for b in input.iter_mut().take(256) {
                        *b &= 0x77;
                    }
                    let _ = xpress::decompress(&input, &mut out[..out_len.min(16384)]);
                }
                1 => {
                    let _ = lzx::decompress(&input, &mut out);
                }
                _ => {
                    if input.len() >= 2 {
                        input[1] = input[1] & 0x8F | 0x30;
                    }
                    let mut unit = vec![0u8; 65536];
                    let _ = lznt1::decompress(&input, &mut unit);
                }
            }
        }
    }

    #[test]
    fn overlapping_matches_repeat_the_pattern() {
        for dist in 1..6 {
            for len in 0..20 {
                let mut out = vec![0u8; 5 + len];
                out[..5].copy_from_slice(b"abcde");
                let mut want = out.clone();
                for i in 5..5 + len {
                    want[i] = want[i - dist];
                }
                copy_match(&mut out, 5, dist, len);
                assert_eq!(out, want, "dist {dist} len {len}");
            }
        }
    }
}
