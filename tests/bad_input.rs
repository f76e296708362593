//! Damaged files: one clear line naming the file and what is wrong, exit status 1,
//! never a panic. The files start as qemu-img output and are damaged at known places.

mod util;

use std::path::{Path, PathBuf};

use util::{ckptfs, have_tool, pseudo_random, run};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
    bat_offset: u64,
    metadata_offset: u64,
}

/// A 16 MiB dynamic VHDX with 1 MiB blocks, every block allocated.
fn qemu_image() -> Option<Image> {
    if !have_tool("qemu-img") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, pseudo_random(7, (16 * MIB) as usize)).unwrap();
    let path = dir.path().join("disk.vhdx");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "vhdx",
            "-o",
            "subformat=dynamic,block_size=1M",
            raw.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    let b = std::fs::read(&path).unwrap();
    // Region table at 192 KiB: find the BAT and metadata regions by GUID.
    let entry_offset = |guid_prefix: [u8; 4]| -> u64 {
        let count = u32::from_le_bytes(b[192 * 1024 + 8..][..4].try_into().unwrap()) as usize;
        (0..count)
            .map(|i| 192 * 1024 + 16 + i * 32)
            .find(|&at| b[at..at + 4] == guid_prefix)
            .map(|at| u64::from_le_bytes(b[at + 16..at + 24].try_into().unwrap()))
            .unwrap()
    };
    let bat_offset = entry_offset(0x2DC27766u32.to_le_bytes());
    let metadata_offset = entry_offset(0x8B7CA206u32.to_le_bytes());
    Some(Image {
        _dir: dir,
        path,
        bat_offset,
        metadata_offset,
    })
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

fn cat(path: &Path) -> util::Output {
    ckptfs(["cat", path.to_str().unwrap(), "01_current/disk.img"])
}

fn assert_one_line_naming(out: &util::Output, path: &Path, words: &[&str]) {
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(path.to_str().unwrap()),
        "no file name: {}",
        out.stderr
    );
    for w in words {
        assert!(out.stderr.contains(w), "missing {w:?}: {}", out.stderr);
    }
}

#[test]
fn both_headers_damaged() {
    let Some(img) = qemu_image() else { return };
    patch(&img.path, 64 * KIB + 100, &[0xFF]);
    patch(&img.path, 128 * KIB + 100, &[0xFF]);
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["no valid header", "checksum mismatch"]);
    let out = ckptfs(["info", img.path.to_str().unwrap()]).failed();
    assert_one_line_naming(&out, &img.path, &["no valid header"]);
}

#[test]
fn one_damaged_header_is_survived() {
    let Some(img) = qemu_image() else { return };
    let before = cat(&img.path).ok().stdout;
    // Damage whichever copy; the other one is used.
    patch(&img.path, 64 * KIB + 100, &[0xFF]);
    assert_eq!(cat(&img.path).ok().stdout, before);
}

#[test]
fn both_region_tables_damaged() {
    let Some(img) = qemu_image() else { return };
    patch(&img.path, 192 * KIB + 40, &[0xAB]);
    patch(&img.path, 256 * KIB + 40, &[0xAB]);
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["no valid region table"]);
}

#[test]
fn bat_entry_past_the_end_of_the_file() {
    let Some(img) = qemu_image() else { return };
    // Block 3 FULLY_PRESENT at 4 GiB.
    let entry = (4096u64 << 20) | 6;
    patch(&img.path, img.bat_offset + 3 * 8, &entry.to_le_bytes());
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["block 3", "0x100000000", "past the end of the file"]);
}

#[test]
fn bat_entry_with_a_reserved_state() {
    let Some(img) = qemu_image() else { return };
    patch(&img.path, img.bat_offset + 5 * 8, &4u64.to_le_bytes());
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["block 5", "reserved state 4"]);
}

#[test]
fn block_size_that_is_not_allowed() {
    let Some(img) = qemu_image() else { return };
    // File parameters is the metadata item with GUID CAA16737-...; patch its block size.
    let b = std::fs::read(&img.path).unwrap();
    let table = img.metadata_offset as usize;
    let count = u16::from_le_bytes(b[table + 10..table + 12].try_into().unwrap()) as usize;
    let item = (0..count)
        .map(|i| table + 32 + i * 32)
        .find(|&at| b[at..at + 4] == 0xCAA16737u32.to_le_bytes())
        .unwrap();
    let offset = u32::from_le_bytes(b[item + 16..item + 20].try_into().unwrap()) as u64;
    patch(&img.path, img.metadata_offset + offset, &(3 * MIB as u32).to_le_bytes());
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["block size 0x300000", "power of two"]);
}

#[test]
fn truncated_file() {
    let Some(img) = qemu_image() else { return };
    let f = std::fs::OpenOptions::new().write(true).open(&img.path).unwrap();
    // Cut inside the payload: the BAT points past the end.
    f.set_len(img.bat_offset.max(img.metadata_offset) + 2 * MIB).unwrap();
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["past the end of the file"]);
    // Cut inside the header section: the file is not usable at all.
    f.set_len(100 * KIB).unwrap();
    let out = cat(&img.path).failed();
    assert_one_line_naming(&out, &img.path, &["file is truncated", "region table"]);
}

#[test]
fn not_a_vhdx_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [("random.vhdx", pseudo_random(1, 3 << 20)), ("empty.vhdx", Vec::new())] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for cmd in ["info", "list"] {
            let out = ckptfs([cmd, path.to_str().unwrap()]).failed();
            assert_one_line_naming(&out, &path, &["not a VHDX file"]);
        }
    }
}

#[test]
fn missing_file_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.vhdx");
    let out = ckptfs(["list", missing.to_str().unwrap()]).failed();
    assert!(
        out.stderr.contains("nope.vhdx") && out.stderr.contains("No such file"),
        "{}",
        out.stderr
    );
    let out = ckptfs(["info", dir.path().to_str().unwrap()]).failed();
    assert!(out.stderr.contains("directory"), "{}", out.stderr);
}

#[test]
fn unknown_paths_in_the_tree() {
    let Some(img) = qemu_image() else { return };
    let out = ckptfs(["cat", img.path.to_str().unwrap(), "nosuch/disk.img"]).failed();
    assert!(
        out.stderr.contains("01_current"),
        "lists the checkpoints: {}",
        out.stderr
    );
    let out = ckptfs(["cat", img.path.to_str().unwrap(), "01_current/other"]).failed();
    assert!(out.stderr.contains("no such file"), "{}", out.stderr);
    let out = ckptfs(["cat", img.path.to_str().unwrap(), "01_current"]).failed();
    assert!(out.stderr.contains("is a directory"), "{}", out.stderr);
}

/// A reader that goes away (`| head`) ends ckptfs quietly: no panic, no message.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    let Some(img) = qemu_image() else { return };
    // The reader closes its end at once, so ckptfs's first write meets EPIPE.
    let script = format!(
        "'{}' cat '{}' 01_current/disk.img | (exec 0<&-; sleep 0.3)",
        env!("CARGO_BIN_EXE_ckptfs"),
        img.path.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    let script = format!(
        "'{}' list '{}' | (exec 0<&-; sleep 0.3)",
        env!("CARGO_BIN_EXE_ckptfs"),
        img.path.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

// ---- VMDK ----------------------------------------------------------------------------
// qemu-img's VMDK files damaged at known places: each is a one-line error naming the
// file and the structure, exit status 1, and no file in the directory changes.

/// The bytes of every file in `dir`, to check that nothing was written.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

fn le32(b: &[u8], at: u64) -> u32 {
    u32::from_le_bytes(b[at as usize..at as usize + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

/// A 4 MiB VMDK of random data in the given subformat, in a fresh directory.
fn qemu_vmdk(subformat: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if !have_tool("qemu-img") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, pseudo_random(5, (4 * MIB) as usize)).unwrap();
    let path = dir.path().join("disk.vmdk");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "vmdk",
            "-o",
            &format!("subformat={subformat}"),
            raw.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(raw).unwrap();
    Some((dir, path))
}

/// Run `cat` (and `list`) on `path`, expect one line naming `named` and `words`, and
/// no change to any file of `dir`.
fn vmdk_fails(dir: &Path, path: &Path, named: &Path, words: &[&str]) {
    let before = snapshot(dir);
    let out = cat(path).failed();
    assert_one_line_naming(&out, named, words);
    assert!(snapshot(dir) == before, "a file changed");
}

fn edit_text(path: &Path, from: &str, to: &str) {
    let t = std::fs::read_to_string(path).unwrap();
    assert!(t.contains(from), "{from:?} not in {t}");
    std::fs::write(path, t.replacen(from, to, 1)).unwrap();
}

#[test]
fn vmdk_damaged_sparse_header() {
    let Some((dir, path)) = qemu_vmdk("monolithicSparse") else {
        return;
    };
    patch(&path, 20, &3u64.to_le_bytes()); // grain size 3 sectors
    vmdk_fails(
        dir.path(),
        &path,
        &path,
        &["sparse extent header at offset 0x0", "grain size 3"],
    );
    patch(&path, 0, b"KDMX");
    let out = ckptfs(["info", path.to_str().unwrap()]).failed();
    assert_one_line_naming(&out, &path, &["not a disk image"]);
}

#[test]
fn vmdk_grain_table_past_the_end_of_the_file() {
    let Some((dir, path)) = qemu_vmdk("monolithicSparse") else {
        return;
    };
    let b = std::fs::read(&path).unwrap();
    let gt = |gd_sector: u64| u64::from(le32(&b, gd_sector * 512)) * 512;
    let (primary, redundant) = (gt(le64(&b, 56)), gt(le64(&b, 48)));
    assert_ne!(le32(&b, primary), 0, "grain 0 is allocated");
    // Only the primary table damaged: the redundant one is used and the bytes are right.
    patch(&path, primary, &0x00ff_ffffu32.to_le_bytes());
    let out = cat(&path).ok();
    assert_eq!(out.stdout, pseudo_random(5, (4 * MIB) as usize));
    assert!(out.stderr.contains("redundant"), "a warning: {}", out.stderr);
    // Both damaged: an error naming the table entry.
    patch(&path, redundant, &0x00ff_ffffu32.to_le_bytes());
    let at = format!("grain table at offset {primary:#x}");
    vmdk_fails(dir.path(), &path, &path, &[&at, "past the end of the file"]);
}

#[test]
fn vmdk_bad_compressed_grain() {
    let Some((dir, path)) = qemu_vmdk("streamOptimized") else {
        return;
    };
    let b = std::fs::read(&path).unwrap();
    // The first grain follows the metadata (overHead sectors): marker, then zlib data.
    let grain = le64(&b, 64) * 512;
    assert_eq!(le64(&b, grain), 0, "the first grain holds guest sector 0");
    let size = u64::from(le32(&b, grain + 8));
    let mut bad = b[(grain + 12) as usize..(grain + 12 + size) as usize].to_vec();
    for x in &mut bad[size as usize / 2..] {
        *x ^= 0x5a;
    }
    patch(&path, grain + 12, &bad);
    let at = format!("compressed grain at offset {grain:#x}");
    vmdk_fails(dir.path(), &path, &path, &[&at]);
}

#[test]
fn vmdk_bad_descriptors() {
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "createType=\"monolithicFlat\"",
            "createType=\"monolithicFluffy\"",
            &["descriptor line", "unknown createType \"monolithicFluffy\""],
        ),
        (
            "RW 8192 FLAT \"disk-flat.vmdk\" 0",
            "RW 8192 FLUT \"disk-flat.vmdk\" 0",
            &["descriptor line 8", "unknown extent type \"FLUT\""],
        ),
        (
            "RW 8192 FLAT \"disk-flat.vmdk\" 0",
            "RW 8192 FLAT disk-flat.vmdk 0",
            &["descriptor line 8", "double quotes"],
        ),
        ("parentCID=ffffffff", "parentCID=12345678", &["parentFileNameHint"]),
    ];
    for (from, to, words) in cases {
        let Some((dir, path)) = qemu_vmdk("monolithicFlat") else {
            return;
        };
        edit_text(&path, from, to);
        vmdk_fails(dir.path(), &path, &path, words);
    }
}

#[test]
fn vmdk_missing_extent() {
    let Some((dir, path)) = qemu_vmdk("twoGbMaxExtentSparse") else {
        return;
    };
    std::fs::remove_file(dir.path().join("disk-s001.vmdk")).unwrap();
    vmdk_fails(dir.path(), &path, &path, &["extent file \"disk-s001.vmdk\" is missing"]);
}

#[test]
fn vmdk_cyclic_parents() {
    if !have_tool("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.vmdk"), dir.path().join("b.vmdk"));
    for p in [&a, &b] {
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "vmdk",
                "-o",
                "subformat=monolithicFlat",
                p.to_str().unwrap(),
                "1M",
            ],
        );
    }
    let cid = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix("CID="))
            .unwrap()
            .trim()
            .to_string()
    };
    let (ca, cb) = (cid(&a), cid(&b));
    edit_text(
        &a,
        "parentCID=ffffffff",
        &format!("parentCID={cb}\nparentFileNameHint=\"b.vmdk\""),
    );
    edit_text(
        &b,
        "parentCID=ffffffff",
        &format!("parentCID={ca}\nparentFileNameHint=\"a.vmdk\""),
    );
    let before = snapshot(dir.path());
    let out = ckptfs(["list", a.to_str().unwrap()]).failed();
    assert_one_line_naming(&out, &b, &["loops back"]);
    assert!(snapshot(dir.path()) == before);
}
