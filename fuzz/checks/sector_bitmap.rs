//! `sector_bitmap::runs`.
//!
//! Input: first bit (u16), count (u16), then the bitmap bytes.
//!
//! Exact outcomes: the runs sum to the count, none is empty, neighbours differ, and
//! expanding them gives exactly the bits read one by one (bit `i % 8` of byte `i / 8`,
//! bits past the end absent).

use ckptfs::format::vhdx::sector_bitmap::runs;

use super::Input;

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let first = u64::from(inp.u16());
    let count = u64::from(inp.u16());
    let bits = inp.rest();
    compare(bits, first, count);
    // The way the reader calls it: a first bit below 8 into a slice of whole bytes.
    compare(
        bits,
        first % 8,
        count.min((bits.len() as u64 * 8).saturating_sub(first % 8)),
    );
}

fn compare(bits: &[u8], first: u64, count: u64) {
    let got = runs(bits, first, count);
    assert_eq!(
        got.iter().map(|r| r.1).sum::<u64>(),
        count,
        "runs do not sum to the count"
    );
    assert!(got.iter().all(|r| r.1 > 0), "an empty run: {got:?}");
    assert!(
        got.windows(2).all(|w| w[0].0 != w[1].0),
        "neighbours not merged: {got:?}"
    );
    let mut i = first;
    for &(present, n) in &got {
        for _ in 0..n {
            let byte = (i / 8) as usize;
            let bit = byte < bits.len() && bits[byte] >> (i % 8) & 1 == 1;
            assert_eq!(bit, present, "bit {i} (first {first}, count {count})");
            i += 1;
        }
    }
}
