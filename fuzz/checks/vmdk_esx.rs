//! ESXi delta extents behind a descriptor, written to a temp dir: vmfsSparse (`COWD`)
//! and SESparse, through `VmdkFile::open`, `map` and `read_data`.
//!
//! Input: mode (bit 0 SESparse, else COWD; bit 1 damage one header field; bit 2 the
//! SESparse journal needs replay; bit 3 the descriptor's line is larger than the
//! capacity), the grain count (1 to 40), per grain table a state (allocated, none, past
//! the end; SESparse: also an entry without the 0x10000000 tag), then per grain a raw
//! entry selector (COWD: none, data, past the end; SESparse: unallocated, unmapped,
//! zero, allocated at a grain number (swizzled), past the end, an unknown type, a
//! nonzero entry of type 0).
//!
//! Exact outcomes, against a reference written here: open fails with the kind the
//! damage calls for (or refuses a journal to replay, or a capacity smaller than the
//! descriptor's line); every grain maps to the parent, zeros or the file's bytes at the
//! place the reference computes (for SESparse, grains offset + the unswizzled number ×
//! 8 sectors), or fails as corrupt.

use ckptfs::format::vmdk::{VmdkError, VmdkFile};
use ckptfs::format::{Layer, Source};
use ckptfs::Error;

use super::{pattern, put32, put64, Input};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    Corrupt,
    Truncated,
    Unsupported,
    Journal,
    Other,
}

fn kind(e: &Error) -> K {
    match e {
        Error::Vmdk { source, .. } => match source {
            VmdkError::Corrupt { .. } => K::Corrupt,
            VmdkError::Truncated { .. } => K::Truncated,
            VmdkError::Unsupported(_) => K::Unsupported,
            VmdkError::JournalNeedsReplay { .. } => K::Journal,
            _ => K::Other,
        },
        _ => K::Other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Parent,
    Zero,
    Plain(u64),
    Fails,
}

pub fn check(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let se = mode & 1 != 0;
    let damage = (mode & 2 != 0).then(|| inp.u8() % 4);
    let replay = mode & 4 != 0;
    let too_long = mode & 8 != 0;
    let grains = 1 + u64::from(inp.u8() % 40);
    let dir = tempfile::tempdir().unwrap();
    let (file, model, capacity, open_fails) = if se {
        build_sesparse(&mut inp, grains, damage, replay)
    } else {
        build_cowd(&mut inp, grains, damage)
    };
    let line = capacity + u64::from(too_long);
    let (kind_text, ext_name) = if se {
        ("SESPARSE", "x-sesparse.vmdk")
    } else {
        ("VMFSSPARSE", "x-delta.vmdk")
    };
    let desc = format!(
        "# Disk DescriptorFile\nversion=1\nCID=00000002\nparentCID=00000001\nparentFileNameHint=\"x-base.vmdk\"\ncreateType=\"{}\"\nRW {line} {kind_text} \"{ext_name}\"\n",
        if se { "seSparse" } else { "vmfsSparse" }
    );
    std::fs::write(dir.path().join(ext_name), &file).unwrap();
    let path = dir.path().join("x.vmdk");
    std::fs::write(&path, desc).unwrap();
    // The capacity is checked before the SESparse grain directory's place.
    let open_fails = match open_fails {
        None | Some(K::Truncated) if too_long => Some(K::Corrupt),
        other => other,
    };
    let got = VmdkFile::open(&path);
    if let Some(k) = open_fails {
        super::note(&format!("open fails {k:?}"));
        let e = got.err().unwrap_or_else(|| panic!("opened despite {k:?}"));
        assert_eq!(kind(&e), k, "{e}");
        return;
    }
    let f = got.unwrap_or_else(|e| panic!("a good extent is refused: {e}"));
    // Both kinds use grains of 8 sectors here.
    let gb = 8 * 512;
    assert_eq!(f.virtual_size(), capacity * 512);
    for (g, m) in model.iter().enumerate() {
        let g = g as u64;
        super::note(
            &format!("{} grain {m:?}", if se { "sesparse" } else { "cowd" }).replace(|c: char| c.is_ascii_digit(), ""),
        );
        let mut runs = Vec::new();
        let r = f.map(g * gb, gb, &mut runs);
        if *m == Model::Fails {
            let e = r.expect_err("a bad entry");
            assert_eq!(kind(&e), K::Corrupt, "grain {g}: {e}");
            continue;
        }
        r.unwrap_or_else(|e| panic!("grain {g}: {e}"));
        assert_eq!(runs.len(), 1);
        match (m, runs[0].source) {
            (Model::Parent, Source::Parent) | (Model::Zero, Source::Zero) => {}
            (Model::Plain(at), Source::Data { file_offset }) => {
                let mut b = vec![0u8; gb as usize];
                f.read_data(file_offset, &mut b).unwrap();
                assert!(b[..] == file[*at as usize..(*at + gb) as usize], "grain {g}: bytes");
            }
            (m, s) => panic!("grain {g}: expected {m:?}, mapped {s:?}"),
        }
    }
}

/// COWD: header, GD at sector 1 (1 sector), GTs of 4096 entries (32 sectors) from
/// sector 2, grains of 8 sectors after them, in input order. 4 grains a table here
/// would need more than 4096 grains, so tables are made small by a capacity of at most
/// 40 grains: one table; its state comes first.
fn build_cowd(inp: &mut Input, grains: u64, damage: Option<u8>) -> (Vec<u8>, Vec<Model>, u64, Option<K>) {
    let capacity = grains * 8;
    let table = inp.u8() % 3;
    let mut f = vec![0u8; 512];
    f[0..4].copy_from_slice(b"COWD");
    put32(&mut f, 4, 1);
    put32(&mut f, 12, capacity as u32);
    put32(&mut f, 16, 8);
    put32(&mut f, 20, 1);
    put32(&mut f, 24, 1);
    f.resize(2 * 512, 0);
    put32(&mut f, 512, [2, 0, 0x00ff_ffff][usize::from(table)]);
    f.resize(34 * 512, 0);
    let mut model = Vec::new();
    for g in 0..grains {
        let sel = inp.u8() % 3;
        let m = match (table, sel) {
            (1, _) => Model::Parent,
            (2, _) => Model::Fails,
            (_, 0) => Model::Parent,
            (_, 2) => {
                put32(&mut f, (2 * 512 + g * 4) as usize, 0x00ff_ffff);
                Model::Fails
            }
            _ => {
                let at = f.len() as u64;
                put32(&mut f, (2 * 512 + g * 4) as usize, (at / 512) as u32);
                f.extend((0..4096).map(|i| pattern(g + 7, i)));
                Model::Plain(at)
            }
        };
        model.push(m);
    }
    let fails = match damage {
        Some(0) => {
            put32(&mut f, 4, 2);
            Some(K::Unsupported)
        }
        Some(1) => {
            put32(&mut f, 16, 0);
            Some(K::Corrupt)
        }
        Some(2) => {
            put32(&mut f, 20, 0x0fff_ffff);
            Some(K::Corrupt)
        }
        Some(_) => {
            f[0] = b'X';
            Some(K::Corrupt)
        }
        None => None,
    };
    (f, model, capacity, fails)
}

/// SESparse: const header, volatile header (sector 1), GD (sector 2, one sector, 64
/// entries), GTs (64 sectors each, 2 of them) from sector 3, grains from sector 131.
/// 40 grains fit one table; the GD entry of table 0 names GT index `1` (the second).
fn build_sesparse(
    inp: &mut Input,
    grains: u64,
    damage: Option<u8>,
    replay: bool,
) -> (Vec<u8>, Vec<Model>, u64, Option<K>) {
    let capacity = grains * 8;
    let table = inp.u8() % 4;
    let mut f = vec![0u8; 131 * 512];
    for (at, v) in [
        (0, 0xcafe_babe_u64),
        (8, 0x0000_0002_0000_0001),
        (16, capacity),
        (24, 8),
        (32, 64),
        (80, 1),
        (88, 1),
        (112, 200),
        (128, 2),
        (136, 1),
        (144, 3),
        (152, 128),
        (192, 131),
    ] {
        put64(&mut f, at, v);
    }
    put64(&mut f, 512, 0xcafe_cafe);
    put64(&mut f, 512 + 24, u64::from(replay));
    put64(
        &mut f,
        1024,
        [0x1000_0000_0000_0001, 0, 0x1000_0000_0000_0fff, 0x2000_0000_0000_0001][usize::from(table)],
    );
    let gt = 3 * 512 + 64 * 512; // table index 1
    let mut model = Vec::new();
    let mut stored = 0u64; // grains stored so far
    let mut grain_data: Vec<(u64, u64)> = Vec::new();
    for g in 0..grains {
        let sel = inp.u8();
        let (raw, m) = match sel % 7 {
            0 => (0, Model::Parent),
            1 => (0x1000_0000_0000_0000 | u64::from(sel), Model::Zero),
            2 => (0x2000_0000_0000_0000, Model::Zero),
            3 => {
                // Grain number `stored`, written at slot `stored`, swizzled.
                let n = stored;
                stored += 1;
                grain_data.push((n, g));
                let raw = 0x3000_0000_0000_0000 | ((n & 0xfff) << 48) | (n >> 12);
                (raw, Model::Plain((131 + n * 8) * 512))
            }
            4 => (0x3000_0000_0000_0000 | 0x7ff, Model::Fails),
            5 => (0x4000_0000_0000_0000 | u64::from(sel), Model::Fails),
            _ => (1 + u64::from(sel), Model::Fails),
        };
        put64(&mut f, gt + g as usize * 8, raw);
        let m = match table {
            0 => m,
            1 => Model::Parent,
            _ => Model::Fails,
        };
        model.push(m);
    }
    f.resize(131 * 512 + stored as usize * 4096, 0);
    for (n, g) in grain_data {
        let at = (131 + n * 8) as usize * 512;
        for i in 0..4096 {
            f[at + i] = pattern(g + 3, i as u64);
        }
    }
    let fails = match damage {
        Some(0) => {
            put64(&mut f, 8, 0x0000_0001_0000_0001);
            Some(K::Unsupported)
        }
        Some(1) => {
            put64(&mut f, 24, 16);
            Some(K::Unsupported)
        }
        Some(2) => {
            put64(&mut f, 512, 0xcafe_d00d);
            Some(K::Corrupt)
        }
        Some(_) => {
            put64(&mut f, 128, 0x00ff_ffff);
            Some(K::Truncated)
        }
        None if replay => Some(K::Journal),
        None => None,
    };
    let fails = if replay && damage.is_some_and(|d| d >= 2) && damage != Some(2) {
        Some(K::Journal)
    } else {
        fails
    };
    (f, model, capacity, fails)
}

/// Seeds: each kind with every entry kind, a damaged header, a dirty journal.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut cowd = vec![0, 9, 0];
    cowd.extend([0, 1, 2, 1, 1, 0, 1, 2, 1, 0]);
    let mut se = vec![1, 13, 0];
    se.extend([0, 1, 2, 3, 4, 5, 6, 3, 3, 0, 2, 3, 13, 3]);
    let se_untagged = vec![1, 3, 3, 3, 3, 3, 3];
    let cowd_bad = vec![2, 1, 3, 0, 1, 1, 1];
    let dirty = vec![5, 0, 2, 0, 3, 3];
    vec![
        ("vmdk_esx", "cowd_every_entry", cowd),
        ("vmdk_esx", "sesparse_every_entry", se),
        ("vmdk_esx", "sesparse_untagged_directory", se_untagged),
        ("vmdk_esx", "cowd_grain_directory_outside", cowd_bad),
        ("vmdk_esx", "sesparse_dirty_journal", dirty),
    ]
}
