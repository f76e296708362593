//! The guest filesystems read through VHD exactly as through VHDX. Every checkpoint of
//! the test chains in images/ (VHDX/AVHDX made from disks the real tools partitioned,
//! formatted and filled; tests/volumes.rs checks them against the guests' own drivers)
//! is flattened with `ckptfs cat <ckpt>/disk.img` and written as a dynamic VHD, and the
//! newest also as a fixed VHD, by qemu-img (a writer nobody on this team wrote). Through
//! the VHD, ckptfs must give the same disk bytes, the same volumes in `list --json`, and
//! the same trees under `cp -r` (names, kinds, sizes, sha256, symlink targets, times)
//! as through the VHDX chain.

mod fswalk;
mod util;

use std::path::{Path, PathBuf};

use util::{ckptfs, have_tool};

/// (tarball in images/, its base disk). gpt-4k is left out: a VHD's logical sector is
/// always 512 bytes, so a disk formatted with 4096-byte sectors does not occur in one.
const IMAGES: &[(&str, &str)] = &[
    ("demo", "Win11.vhdx"),
    ("windows-gpt", "windows-gpt.vhdx"),
    ("linux-mbr", "linux-mbr.vhdx"),
    ("no-table", "no-table.vhdx"),
    ("damaged-gpt", "damaged-gpt.vhdx"),
];

fn can_run() -> bool {
    if ["tar", "qemu-img"].iter().all(|t| have_tool(t)) {
        return true;
    }
    util::skip("needs tar and qemu-img");
    false
}

/// The tarball's files in a temporary directory; the base disk's path.
fn extract(name: &str, base: &str) -> (tempfile::TempDir, PathBuf) {
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("images")
        .join(format!("{name}.tar.gz"));
    let dir = tempfile::tempdir().unwrap();
    util::run(
        "tar",
        &["-xzf", tarball.to_str().unwrap(), "-C", dir.path().to_str().unwrap()],
    );
    let image = dir.path().join(base);
    assert!(image.is_file(), "{} holds no {base}", tarball.display());
    (dir, image)
}

fn list(image: &Path) -> serde_json::Value {
    let out = ckptfs(["list", "--json", image.to_str().unwrap()]).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `list --json` says of a checkpoint's volumes, without anything file-specific.
fn volumes(checkpoint: &serde_json::Value) -> Vec<serde_json::Value> {
    let keys = ["dir", "partition", "filesystem", "label", "size", "error"];
    checkpoint["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| keys.iter().map(|k| (k.to_string(), v[*k].clone())).collect())
        .collect()
}

/// Convert `raw` to a VHD of `subformat` with qemu-img, at exactly the raw size
/// (`force_size`: the footer's current size, creator "qem2").
fn to_vhd(raw: &Path, subformat: &str) -> PathBuf {
    let dir = raw
        .parent()
        .unwrap()
        .join(format!("{}-{subformat}", raw.file_stem().unwrap().to_string_lossy()));
    std::fs::create_dir(&dir).unwrap();
    let vhd = dir.join("disk.vhd");
    util::run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            "-o",
            &format!("subformat={subformat},force_size=on"),
            raw.to_str().unwrap(),
            vhd.to_str().unwrap(),
        ],
    );
    vhd
}

fn check_image(name: &str, base: &str) {
    if !can_run() {
        return;
    }
    let (dir, image) = extract(name, base);
    let chain = list(&image);
    let checkpoints = chain["checkpoints"].as_array().unwrap();
    for (ci, cp) in checkpoints.iter().enumerate() {
        let ckpt = cp["name"].as_str().unwrap();
        let raw = dir.path().join(format!("{ckpt}.raw"));
        let bytes = ckptfs(["cat", image.to_str().unwrap(), &format!("{ckpt}/disk.img")])
            .ok()
            .stdout;
        std::fs::write(&raw, &bytes).unwrap();
        let mut subformats = vec!["dynamic"];
        if ci + 1 == checkpoints.len() {
            subformats.push("fixed");
        }
        for subformat in subformats {
            let what = format!("{name}: {ckpt} as a {subformat} VHD");
            let vhd = to_vhd(&raw, subformat);
            let through_vhd = ckptfs(["cat", vhd.to_str().unwrap(), "01_current/disk.img"])
                .ok()
                .stdout;
            util::assert_same_bytes(&through_vhd, &bytes, &what);

            let listed = list(&vhd);
            let only = &listed["checkpoints"][0];
            assert_eq!(listed["checkpoints"].as_array().unwrap().len(), 1, "{what}");
            assert_eq!(volumes(only), volumes(cp), "{what}: volumes");
            for v in cp["volumes"].as_array().unwrap() {
                if !v["error"].is_null() {
                    continue;
                }
                let vol = v["dir"].as_str().unwrap();
                let copy = |img: &Path, from: String, to: &str| {
                    let dest = vhd.parent().unwrap().join(to);
                    ckptfs(["cp", "-r", img.to_str().unwrap(), &from, dest.to_str().unwrap()]).ok();
                    fswalk::walk_host(&dest, &[])
                };
                let ours = copy(&vhd, format!("01_current/{vol}"), &format!("vhd-{vol}"));
                let reference = copy(&image, format!("{ckpt}/{vol}"), &format!("vhdx-{vol}"));
                assert!(!reference.is_empty() || vol.contains("swap"), "{what}: {vol} is empty");
                fswalk::assert_same_walk(&ours, &reference, &format!("{what}: {vol}"));
            }
        }
    }
}

#[test]
fn demo_through_vhd() {
    check_image(IMAGES[0].0, IMAGES[0].1);
}

#[test]
fn windows_gpt_through_vhd() {
    check_image(IMAGES[1].0, IMAGES[1].1);
}

#[test]
fn linux_mbr_through_vhd() {
    check_image(IMAGES[2].0, IMAGES[2].1);
}

#[test]
fn no_table_through_vhd() {
    check_image(IMAGES[3].0, IMAGES[3].1);
}

#[test]
fn damaged_gpt_through_vhd() {
    check_image(IMAGES[4].0, IMAGES[4].1);
}
