//! Files made by Windows and Hyper-V (../shared/samples/vhdx, see its README). These
//! tests skip with a message when ../shared is absent.

mod util;

use util::{assert_same_bytes, ckptfs, gunzip_sample, have_tool, samples_dir};

const SECTOR: usize = 512;

fn sample(name: &str, dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let samples = samples_dir()?;
    Some(gunzip_sample(&samples.join("vhdx").join(name), dir))
}

/// What the samples README says is in both Windows-made disks.
fn assert_windows_layout(disk: &[u8], what: &str) {
    assert_eq!(disk.len(), 10 << 20, "{what}: virtual size");
    assert_eq!(&disk[510..512], &[0x55, 0xAA], "{what}: MBR signature");
    // One NTFS partition at LBA 128, 14336 sectors long.
    let entry = &disk[0x1BE..0x1CE];
    assert_eq!(entry[4], 0x07, "{what}: NTFS partition type");
    assert_eq!(u32::from_le_bytes(entry[8..12].try_into().unwrap()), 128);
    assert_eq!(u32::from_le_bytes(entry[12..16].try_into().unwrap()), 14336);
    assert_eq!(
        &disk[128 * SECTOR + 3..128 * SECTOR + 11],
        b"NTFS    ",
        "{what}: NTFS boot sector"
    );
    assert!(
        disk[0x200000..0x200000 + 512].iter().all(|&b| b == 0xFF),
        "{what}: 0xFF x 512 at 0x200000"
    );
}

fn check_windows_disk(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = sample(name, dir.path()) else {
        return;
    };
    let out = ckptfs(["cat", path.to_str().unwrap(), "01_current/disk.img"]).ok();
    assert_windows_layout(&out.stdout, name);
    if have_tool("qemu-img") {
        let raw = dir.path().join("qemu.raw");
        util::run(
            "qemu-img",
            &["convert", "-O", "raw", path.to_str().unwrap(), raw.to_str().unwrap()],
        );
        assert_same_bytes(&out.stdout, &std::fs::read(raw).unwrap(), name);
    }
}

#[test]
fn windows_fixed_vhdx_reads_byte_exact() {
    check_windows_disk("fixed.vhdx.gz");
}

#[test]
fn windows_dynamic_vhdx_with_32mib_blocks_reads_byte_exact() {
    check_windows_disk("dynamic.vhdx.gz");
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = sample("dynamic.vhdx.gz", dir.path()) else {
        return;
    };
    let out = ckptfs(["info", "--json", path.to_str().unwrap()]).ok();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["type"], "dynamic");
    assert_eq!(info["block_size"], 32 << 20);
}

const MISSING_PARENT: &str = r".\Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx";

#[test]
fn hyperv_avhdx_with_missing_parent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = sample("differencing.avhdx.gz", dir.path()) else {
        return;
    };
    for args in [vec!["list"], vec!["cat"]] {
        let mut args = args.clone();
        args.push(path.to_str().unwrap());
        if args[0] == "cat" {
            args.push("01_current/disk.img");
        }
        let out = ckptfs(&args).failed();
        assert!(out.stderr.contains(MISSING_PARENT), "{}", out.stderr);
        assert!(
            out.stderr.contains("{ff34003b-11ed-4cf8-a166-b2be05e20b80}"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("differencing.avhdx"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

#[test]
fn hyperv_avhdx_info_works_without_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = sample("differencing.avhdx.gz", dir.path()) else {
        return;
    };
    let out = ckptfs(["info", "--json", path.to_str().unwrap()]).ok();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["type"], "differencing");
    assert_eq!(info["virtual_size"], 8u64 << 30);
    assert_eq!(info["block_size"], 2 << 20);
    assert_eq!(info["log"]["state"], "clean");
    let states = &info["blocks"]["states"];
    assert_eq!(states["partially_present"], 32);
    assert_eq!(states["fully_present"], 0);
    assert_eq!(info["blocks"]["sector_bitmap_blocks_present"], 2);
    assert_eq!(info["parent_locator"]["relative_path"], MISSING_PARENT);
    assert_eq!(
        info["parent_locator"]["parent_linkage"],
        "{ff34003b-11ed-4cf8-a166-b2be05e20b80}"
    );
    // The text form says the same.
    let text = ckptfs(["info", path.to_str().unwrap()]).ok().stdout_str();
    assert!(
        text.contains("differencing") && text.contains("partially_present   32"),
        "{text}"
    );
}

/// The NTFS volume Windows made on both disks shows, with its label.
#[test]
fn windows_made_disks_show_their_ntfs_volume() {
    for name in ["fixed.vhdx.gz", "dynamic.vhdx.gz"] {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = sample(name, dir.path()) else { return };
        let out = ckptfs(["list", "--json", path.to_str().unwrap()]).ok();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let volumes = v["checkpoints"][0]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1, "{name}: {volumes:?}");
        assert_eq!(volumes[0]["dir"], "p1_New Volume");
        assert_eq!(volumes[0]["partition"], 1);
        assert_eq!(volumes[0]["filesystem"], "ntfs");
        assert_eq!(volumes[0]["label"], "New Volume");
        assert_eq!(volumes[0]["size"], 14336 * 512);
        // The volume is empty, and its NTFS metadata files stay hidden.
        let ls = ckptfs(["ls", "-l", path.to_str().unwrap(), "01_current/p1_New Volume"]).ok();
        assert!(!ls.stdout_str().contains('$'), "{}", ls.stdout_str());
    }
}
