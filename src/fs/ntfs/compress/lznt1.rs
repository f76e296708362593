//! LZNT1 ([MS-XCA] 2.5) as NTFS stores it: a compression unit is a run of chunks, each
//! standing for 4 KiB of the unit. A chunk that decodes to less is followed by zeros up
//! to its 4 KiB (so are the chunks missing after an end marker or the end of the data),
//! and no back-reference reaches before its chunk.

use super::copy_match;

const CHUNK: usize = 4096;

/// Decode the compressed unit `input` (the clusters stored for it; holes read as zeros)
/// into `out`, the whole unit, a multiple of 4 KiB.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut pos = 0usize;
    let mut chunks = out.chunks_mut(CHUNK).enumerate();
    loop {
        let header = match input.get(pos..pos + 2) {
            Some(h) => u16::from_le_bytes([h[0], h[1]]),
            None => 0,
        };
        let Some((i, chunk)) = chunks.next() else {
            if header != 0 {
                return Err(format!(
                    "byte {pos}: more chunks than the {}-byte unit holds",
                    out.len()
                ));
            }
            return Ok(());
        };
        if header == 0 {
            chunk.fill(0);
            for (_, rest) in chunks {
                rest.fill(0);
            }
            return Ok(());
        }
        if header & 0x7000 != 0x3000 {
            return Err(format!("chunk {i} at byte {pos}: bad header {header:#06x}"));
        }
        let len = (header & 0x0FFF) as usize + 3;
        let body = input
            .get(pos + 2..pos + len)
            .ok_or_else(|| format!("chunk {i} at byte {pos}: {len} bytes long, past the end of the unit's data"))?;
        let written = if header & 0x8000 == 0 {
            chunk[..body.len()].copy_from_slice(body);
            body.len()
        } else {
            chunk_decompress(body, chunk).map_err(|e| format!("chunk {i} at byte {pos}: {e}"))?
        };
        chunk[written..].fill(0);
        pos += len;
    }
}

/// Decode one compressed chunk into `out` (4 KiB); the bytes written.
fn chunk_decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let (mut ip, mut op) = (0usize, 0usize);
    while ip < input.len() {
        let flags = input[ip];
        ip += 1;
        if flags == 0 && ip + 8 <= input.len() && op + 8 <= out.len() {
            out[op..op + 8].copy_from_slice(&input[ip..ip + 8]);
            ip += 8;
            op += 8;
            continue;
        }
        for bit in 0..8 {
            if ip >= input.len() {
                break;
            }
            if flags >> bit & 1 == 0 {
                if op >= out.len() {
                    return Err("decodes to more than 4096 bytes".into());
                }
                out[op] = input[ip];
                ip += 1;
                op += 1;
                continue;
            }
            let word = input
                .get(ip..ip + 2)
                .map(|w| u16::from_le_bytes([w[0], w[1]]) as usize)
                .ok_or("a back-reference is cut off by the end of the chunk")?;
            ip += 2;
            // The displacement takes as many bits as positions so far need (4 to 12).
            let dbits = if op <= 16 {
                4
            } else {
                (usize::BITS - (op - 1).leading_zeros()).min(12)
            };
            let dist = (word >> (16 - dbits)) + 1;
            let len = (word & (0xFFFF >> dbits)) + 3;
            if dist > op {
                return Err(format!("a back-reference at byte {op} reaches {dist} bytes back"));
            }
            if op + len > out.len() {
                return Err("decodes to more than 4096 bytes".into());
            }
            copy_match(out, op, dist, len);
            op += len;
        }
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-XCA] 3.3: a chunk whose first back-reference copies bytes it is writing.
    #[test]
    fn spec_example() {
        let compressed = [
            0x38, 0xb0, 0x88, 0x46, 0x23, 0x20, 0x00, 0x20, 0x47, 0x20, 0x41, 0x00, 0x10, 0xa2, 0x47, 0x01, 0xa0, 0x45,
            0x20, 0x44, 0x00, 0x08, 0x45, 0x01, 0x50, 0x79, 0x00, 0xc0, 0x45, 0x20, 0x05, 0x24, 0x13, 0x88, 0x05, 0xb4,
            0x02, 0x4a, 0x44, 0xef, 0x03, 0x58, 0x02, 0x8c, 0x09, 0x16, 0x01, 0x48, 0x45, 0x00, 0xbe, 0x00, 0x9e, 0x00,
            0x04, 0x01, 0x18, 0x90, 0x00,
        ];
        let text = b"F# F# G A A G F# E D D E F# F# E E F# F# G A A G F# E D D E F# E D D E E F# D E F# G F# D E F# G F# E D E A F# F# G A A G F# E D D E F# E D D\0";
        assert_eq!(text.len(), 142);
        let mut out = vec![0xAAu8; 8192];
        decompress(&compressed, &mut out).unwrap();
        assert_eq!(&out[..142], text);
        assert!(out[142..].iter().all(|&b| b == 0), "the rest of the unit is zeros");
    }

    #[test]
    fn uncompressed_and_short_chunks_keep_their_4k() {
        // An uncompressed chunk, a compressed one holding "ab" then an end marker.
        let mut input = vec![0xFF, 0x3F];
        input.extend((0..4096).map(|i| (i % 251) as u8));
        input.extend([0x02, 0xB0, 0x00, b'a', b'b']);
        input.extend([0, 0]);
        let mut out = vec![0xAAu8; 16384];
        decompress(&input, &mut out).unwrap();
        assert!(out[..4096].iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(&out[4096..4098], b"ab");
        assert!(out[4098..].iter().all(|&b| b == 0));
    }

    #[test]
    fn damage_is_an_error() {
        let mut out = vec![0u8; 8192];
        // Too long for the data.
        assert!(decompress(&[0x10, 0xB0, 0x00, b'a'], &mut out).is_err());
        // Bad signature.
        assert!(decompress(&[0x01, 0x80, 0x00, b'a'], &mut out).is_err());
        // A back-reference before anything was written.
        assert!(decompress(&[0x02, 0xB0, 0x01, 0x00, 0x00], &mut out).is_err());
        // A run longer than the chunk: 'a' then distance 1, length 4095 + 3.
        assert!(decompress(&[0x03, 0xB0, 0x02, b'a', 0xFF, 0x0F], &mut out).is_err());
        // More chunks than the unit holds.
        let mut three = Vec::new();
        for _ in 0..3 {
            three.extend([0x00, 0xB0, 0x00]);
        }
        assert!(decompress(&three, &mut out).is_err());
        // A back-reference cut off.
        assert!(decompress(&[0x02, 0xB0, 0x02, b'a', 0x00], &mut out).is_err());
    }
}
