//! Differential tests on the checkpoint chains in images/ (made by
//! scripts/make-test-images.sh with the real tools): for every checkpoint of every
//! image, what `ckptfs` shows of each volume must equal what the guest's own driver
//! shows of the same bytes — the kernel's ext4, ntfs-3g for NTFS, mtools (and the
//! kernel's vfat where this kernel has it) for FAT.
//!
//! For each checkpoint: `ckptfs list --json` against the layout the script made (and
//! against sfdisk's reading of the same disk); `ckptfs cat <ckpt>/disk.img` gives the
//! raw disk, whose partition is mounted read-only at its offset (`losetup -o`); then the
//! walk of `ckptfs cp -r <ckpt>/<volume> DEST` must equal the walk of the mount: names,
//! kinds, sizes, sha256, symlink targets, modification times. Also `ls -l`, `cat`, and
//! case-insensitive lookups on NTFS and FAT. Needs root; skipped with a message
//! without it (failing instead when CKPTFS_REQUIRE_TOOLS is set).

mod fswalk;
mod util;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fswalk::Walk;
use util::{ckptfs, have_tool};

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fs {
    Ext4,
    Ntfs,
    Fat,
}

/// A volume as the script made it.
struct Vol {
    dir: &'static str,
    partition: Option<u32>,
    filesystem: &'static str,
    label: Option<&'static str>,
    /// Byte range on the disk.
    start: u64,
    size: u64,
    fs: Fs,
    /// Whether each checkpoint changed this volume (else every state reads the same).
    changes: bool,
    /// Files whose `ckptfs cat` must equal the driver's bytes (where they exist).
    cat: &'static [&'static str],
    /// (path as typed in another letter case, the path as stored): NTFS and FAT only.
    case_insensitive: &'static [(&'static str, &'static str)],
    /// Directories whose `ckptfs ls -l` is compared with the driver's `stat`.
    ls: &'static [&'static str],
    /// (checkpoint index, path, whether it exists there): what each state changed.
    expect: &'static [(usize, &'static str, bool)],
}

/// A partition the script made that ckptfs must list as not shown.
struct Hidden {
    partition: u32,
    /// Part of the type `list --json` gives.
    type_has: &'static str,
    start: u64,
    size: u64,
}

struct Image {
    /// `images/<name>.tar.gz`
    name: &'static str,
    /// The base disk inside the tarball.
    base: &'static str,
    disk_size: u64,
    sector: u64,
    checkpoints: &'static [&'static str],
    volumes: &'static [Vol],
    hidden: &'static [Hidden],
    /// "dos", "gpt" (as sfdisk says) or None for a disk without a table.
    table: Option<&'static str>,
    /// The primary GPT header is zeroed in every state.
    damaged_primary_gpt: bool,
}

// --- the images (layouts as in scripts/make-test-images.sh) -----------------------------

const WINDOWS_GPT: Image = Image {
    name: "windows-gpt",
    base: "windows-gpt.vhdx",
    disk_size: 160 * MIB,
    sector: 512,
    checkpoints: &["01_2026-10-01_100000", "02_2026-10-08_100000", "03_current"],
    volumes: &[
        Vol {
            dir: "p1_SYSTEM",
            partition: Some(1),
            filesystem: "fat32",
            label: Some("SYSTEM"),
            start: MIB,
            size: 40 * MIB,
            fs: Fs::Fat,
            changes: true,
            cat: &[
                "EFI/Microsoft/Boot/BCD",
                "EFI/Boot/bootx64.efi",
                "EFI/Microsoft/Boot/en-US/bootmgfw.efi.mui",
                "EFI/Microsoft/Boot/EMPTY.DAT",
            ],
            case_insensitive: &[
                ("efi/microsoft/BOOT/bcd", "EFI/Microsoft/Boot/BCD"),
                (
                    "EFI/MICROSOFT/BOOT/FONTS AND RESOURCES/READ ME FIRST.TXT",
                    "EFI/Microsoft/Boot/Fonts and Resources/read me first.txt",
                ),
                ("efi/microsoft/boot/BOOT.STL", "EFI/Microsoft/Boot/boot.stl"),
            ],
            ls: &["EFI/Microsoft/Boot", "EFI"],
            expect: &[
                (0, "EFI/Microsoft/Boot/boot.stl", true),
                (1, "EFI/Microsoft/Boot/boot.stl", false),
                (1, "EFI/Microsoft/Boot/boot.stl.old", true),
                (0, "EFI/Microsoft/Boot/fonts/segoe_slboot.ttf", false),
                (1, "EFI/Microsoft/Boot/fonts/segoe_slboot.ttf", true),
                (1, "EFI/Microsoft/Recovery/BCD", true),
                (2, "EFI/Microsoft/Recovery/BCD", false),
            ],
        },
        Vol {
            dir: "p3_Windows",
            partition: Some(3),
            filesystem: "ntfs",
            label: Some("Windows"),
            start: 57 * MIB,
            size: 102 * MIB,
            fs: Fs::Ntfs,
            changes: true,
            cat: &[
                "Users/alice/Documents/Quarterly Report.docx",
                "Users/alice/Documents/big.log",
                "Users/alice/Documents/sparse.vhd",
                "Users/alice/Documents/Résumé (hard link).txt",
                "Users/alice/Documents/empty.txt",
                "Users/alice/Documents/Fragmented/a.bin",
                "Users/alice/Documents/Fragmented/b.bin",
            ],
            case_insensitive: &[
                ("users/ALICE/documents/RÉSUMÉ.TXT", "Users/alice/Documents/Résumé.txt"),
                ("USERS/alice/DOCUMENTS/日本語.TXT", "Users/alice/Documents/日本語.txt"),
                (
                    "users/alice/documents/quarterly report.DOCX",
                    "Users/alice/Documents/Quarterly Report.docx",
                ),
            ],
            ls: &["Users/alice/Documents", "Users/alice/Desktop", "Users"],
            expect: &[
                (0, "Users/alice/Desktop/todo.txt", true),
                (1, "Users/alice/Desktop/todo.txt", false),
                (1, "Users/alice/Desktop/todo (done).txt", true),
                (0, "Users/alice/Downloads/setup.exe", false),
                (1, "Users/alice/Downloads/setup.exe", true),
                (2, "Users/alice/Downloads/setup.exe", false),
                (
                    1,
                    "Users/alice/Documents/Many/item 003 with a fairly long file name.txt",
                    true,
                ),
                (
                    2,
                    "Users/alice/Documents/Many/item 003 with a fairly long file name.txt",
                    false,
                ),
                (
                    2,
                    "Users/alice/Documents/Many/item 004 with a fairly long file name.txt",
                    true,
                ),
                (1, "Users/alice/Documents/Projects/2026/Q1/plan.txt", false),
                (2, "Users/alice/Documents/Projects/2026/Q1/plan.txt", true),
            ],
        },
    ],
    hidden: &[Hidden {
        partition: 2,
        type_has: "Microsoft reserved",
        start: 41 * MIB,
        size: 16 * MIB,
    }],
    table: Some("gpt"),
    damaged_primary_gpt: false,
};

const LINUX_MBR: Image = Image {
    name: "linux-mbr",
    base: "linux-mbr.vhdx",
    disk_size: 128 * MIB,
    sector: 512,
    checkpoints: &["01_2026-09-01_140000", "02_2026-09-02_140000", "03_current"],
    volumes: &[
        Vol {
            dir: "p1_BOOT",
            partition: Some(1),
            filesystem: "fat16",
            label: Some("BOOT"),
            start: MIB,
            size: 32 * MIB,
            fs: Fs::Fat,
            changes: true,
            cat: &[
                "grub/grub.cfg",
                "grub/fonts/unicode.pf2",
                "initrd.img-6.1.0-18-amd64",
                "initrd.img-6.1.0-21-amd64",
            ],
            case_insensitive: &[
                ("GRUB/GRUB.CFG", "grub/grub.cfg"),
                ("Grub/Fonts/Unicode.PF2", "grub/fonts/unicode.pf2"),
            ],
            ls: &["", "grub"],
            expect: &[
                (0, "vmlinuz-6.1.0-18-amd64", true),
                (1, "vmlinuz-6.1.0-18-amd64", true),
                (2, "vmlinuz-6.1.0-18-amd64", false),
                (0, "vmlinuz-6.1.0-20-amd64", false),
                (1, "vmlinuz-6.1.0-20-amd64", true),
                (1, "grub/x86_64-efi/normal.mod", true),
                (2, "grub/x86_64-efi/normal.mod", false),
                (2, "grub/x86_64-efi/normal.mod.bak", true),
                (1, "initrd.img-6.1.0-21-amd64", false),
                (2, "initrd.img-6.1.0-21-amd64", true),
            ],
        },
        Vol {
            dir: "p5_rootfs",
            partition: Some(5),
            filesystem: "ext4",
            label: Some("rootfs"),
            start: 34 * MIB,
            size: 80 * MIB,
            fs: Fs::Ext4,
            changes: true,
            cat: &[
                "home/alice/sparse.img",
                "home/alice/prealloc.bin",
                "home/alice/big.log",
                "home/alice/日本語/メモ.txt",
                "etc/shadow",
                "home/alice/frag-a.bin",
            ],
            case_insensitive: &[],
            ls: &["home/alice", "etc", "home/alice/bin", "home/alice/日本語"],
            expect: &[
                (1, "home/alice/secret.txt", true),
                (2, "home/alice/secret.txt", false),
                (0, "home/alice/photos/2026/beach.jpg", false),
                (1, "home/alice/photos/2026/beach.jpg", true),
                (0, "var/log/syslog.1", true),
                (1, "var/log/syslog.1", false),
                (1, "home/alice/日本語/新しい.txt", false),
                (2, "home/alice/日本語/新しい.txt", true),
                (2, "var/lib/dpkg/info/package-004.list", false),
            ],
        },
    ],
    hidden: &[
        Hidden {
            partition: 2,
            type_has: "extended",
            start: 33 * MIB,
            size: 95 * MIB,
        },
        Hidden {
            partition: 6,
            type_has: "swap",
            start: 115 * MIB,
            size: 13 * MIB,
        },
    ],
    table: Some("dos"),
    damaged_primary_gpt: false,
};

const NO_TABLE: Image = Image {
    name: "no-table",
    base: "no-table.vhdx",
    disk_size: 64 * MIB,
    sector: 512,
    checkpoints: &["01_2026-08-10_081000", "02_current"],
    volumes: &[Vol {
        dir: "volume_scratch",
        partition: None,
        filesystem: "ext4",
        label: Some("scratch"),
        start: 0,
        size: 64 * MIB,
        fs: Fs::Ext4,
        changes: true,
        cat: &["data/blocks.bin", "data/a.txt", "data/random.bin"],
        case_insensitive: &[],
        ls: &["", "data"],
        expect: &[
            (0, "data/random.bin", true),
            (1, "data/random.bin", false),
            (0, "data/nested/deeper/file.txt", true),
            (1, "data/nested", false),
            (1, "data/moved/deeper/file.txt", true),
        ],
    }],
    hidden: &[],
    table: None,
    damaged_primary_gpt: false,
};

const GPT_4K: Image = Image {
    name: "gpt-4k",
    base: "gpt-4k.vhdx",
    disk_size: 320 * MIB,
    sector: 4096,
    checkpoints: &["01_2026-07-04_154000", "02_current"],
    volumes: &[
        Vol {
            dir: "p1_EFI4K",
            partition: Some(1),
            filesystem: "fat32",
            label: Some("EFI4K"),
            start: MIB,
            size: 264 * MIB,
            fs: Fs::Fat,
            changes: true,
            cat: &[
                "EFI/BOOT/BOOTX64.EFI",
                "EFI/debian/grub.cfg",
                "EFI/debian/Exactly One Cluster.bin",
            ],
            case_insensitive: &[("efi/boot/bootx64.efi", "EFI/BOOT/BOOTX64.EFI")],
            ls: &["EFI/debian"],
            expect: &[
                (0, "EFI/debian/Exactly One Cluster.bin", true),
                (1, "EFI/debian/Exactly One Cluster.bin", false),
            ],
        },
        Vol {
            dir: "p2_root4k",
            partition: Some(2),
            filesystem: "ext4",
            label: Some("root4k"),
            start: 265 * MIB,
            size: 40 * MIB,
            fs: Fs::Ext4,
            changes: true,
            cat: &["srv/data.bin", "etc/hostname"],
            case_insensitive: &[],
            ls: &["srv"],
            expect: &[(0, "srv/more.bin", false), (1, "srv/more.bin", true)],
        },
    ],
    hidden: &[],
    table: Some("gpt"),
    damaged_primary_gpt: false,
};

const DAMAGED_GPT: Image = Image {
    name: "damaged-gpt",
    base: "damaged-gpt.vhdx",
    disk_size: 128 * MIB,
    sector: 512,
    checkpoints: &["01_2026-06-01_061000", "02_current"],
    volumes: &[
        Vol {
            dir: "p1_Data",
            partition: Some(1),
            filesystem: "ntfs",
            label: Some("Data"),
            start: MIB,
            size: 56 * MIB,
            fs: Fs::Ntfs,
            changes: true,
            cat: &["Shared/archive.bin", "Shared/readme.txt"],
            case_insensitive: &[("shared/README.TXT", "Shared/readme.txt")],
            ls: &["Shared"],
            expect: &[
                (0, "Shared/small.bin", true),
                (1, "Shared/small.bin", false),
                (0, "Shared/new/added.bin", false),
                (1, "Shared/new/added.bin", true),
            ],
        },
        Vol {
            dir: "p2_linux",
            partition: Some(2),
            filesystem: "ext4",
            label: Some("linux"),
            start: 57 * MIB,
            size: 60 * MIB,
            fs: Fs::Ext4,
            changes: true,
            cat: &["etc/motd"],
            case_insensitive: &[],
            ls: &["", "etc"],
            expect: &[(0, "etc/issue", false), (1, "etc/issue", true)],
        },
    ],
    hidden: &[],
    table: Some("gpt"),
    damaged_primary_gpt: true,
};

const DEMO: Image = Image {
    name: "demo",
    base: "Win11.vhdx",
    disk_size: 128 * MIB,
    sector: 512,
    checkpoints: &["01_2026-11-20_101503", "02_2026-11-21_090012", "03_current"],
    volumes: &[
        Vol {
            dir: "p1_SYSTEM",
            partition: Some(1),
            filesystem: "fat32",
            label: Some("SYSTEM"),
            start: MIB,
            size: 40 * MIB,
            fs: Fs::Fat,
            changes: false,
            cat: &["EFI/Microsoft/Boot/BCD"],
            case_insensitive: &[("efi/boot/BOOTX64.EFI", "EFI/Boot/bootx64.efi")],
            ls: &["EFI/Microsoft/Boot"],
            expect: &[],
        },
        Vol {
            dir: "p3_Windows",
            partition: Some(3),
            filesystem: "ntfs",
            label: Some("Windows"),
            start: 57 * MIB,
            size: 70 * MIB,
            fs: Fs::Ntfs,
            changes: true,
            cat: &["Users/alice/Documents/report.docx", "Users/alice/Desktop/todo.txt"],
            case_insensitive: &[("users/alice/documents/REPORT.DOCX", "Users/alice/Documents/report.docx")],
            ls: &["Users/alice/Documents"],
            expect: &[
                (1, "Users/alice/Documents/budget.csv", true),
                (2, "Users/alice/Documents/budget.csv", false),
            ],
        },
    ],
    hidden: &[Hidden {
        partition: 2,
        type_has: "Microsoft reserved",
        start: 41 * MIB,
        size: 16 * MIB,
    }],
    table: Some("gpt"),
    damaged_primary_gpt: false,
};

// --- the tests -------------------------------------------------------------------------

#[test]
fn windows_gpt_list() {
    check_list(&WINDOWS_GPT);
}

#[test]
fn windows_gpt_p1_fat32() {
    check_volume(&WINDOWS_GPT, "p1_SYSTEM");
}

#[test]
fn windows_gpt_p3_ntfs() {
    check_volume(&WINDOWS_GPT, "p3_Windows");
}

#[test]
fn linux_mbr_list() {
    check_list(&LINUX_MBR);
}

#[test]
fn linux_mbr_p1_fat16() {
    check_volume(&LINUX_MBR, "p1_BOOT");
}

#[test]
fn linux_mbr_p5_ext4() {
    check_volume(&LINUX_MBR, "p5_rootfs");
}

#[test]
fn no_table_list() {
    check_list(&NO_TABLE);
}

#[test]
fn no_table_ext4() {
    check_volume(&NO_TABLE, "volume_scratch");
}

#[test]
fn gpt_4k_list() {
    check_list(&GPT_4K);
}

#[test]
fn gpt_4k_p1_fat32() {
    check_volume(&GPT_4K, "p1_EFI4K");
}

#[test]
fn gpt_4k_p2_ext4() {
    check_volume(&GPT_4K, "p2_root4k");
}

#[test]
fn damaged_gpt_list() {
    check_list(&DAMAGED_GPT);
}

#[test]
fn damaged_gpt_p1_ntfs() {
    check_volume(&DAMAGED_GPT, "p1_Data");
}

#[test]
fn damaged_gpt_p2_ext4() {
    check_volume(&DAMAGED_GPT, "p2_linux");
}

#[test]
fn demo_list() {
    check_list(&DEMO);
}

#[test]
fn demo_p1_fat32() {
    check_volume(&DEMO, "p1_SYSTEM");
}

#[test]
fn demo_p3_ntfs() {
    check_volume(&DEMO, "p3_Windows");
}

// --- setup -------------------------------------------------------------------------------

/// An image extracted into a temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    image: PathBuf,
}

impl Fixture {
    fn image(&self) -> &str {
        self.image.to_str().unwrap()
    }
}

/// Root and the tools, or a message (a failure under CKPTFS_REQUIRE_TOOLS).
fn can_run() -> bool {
    let tools = [
        "tar", "losetup", "mount", "umount", "sfdisk", "ntfs-3g", "mcopy", "mdir", "mtype",
    ];
    if !tools.iter().all(|t| have_tool(t)) {
        return false;
    }
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() {
            panic!("these tests loop-mount images and need root");
        }
        util::skip("loop mounts need root");
    }
    root
}

fn setup(img: &Image) -> Option<Fixture> {
    if !can_run() {
        return None;
    }
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("images")
        .join(format!("{}.tar.gz", img.name));
    assert!(
        tarball.is_file(),
        "{} is missing: run scripts/make-test-images.sh",
        tarball.display()
    );
    let dir = tempfile::tempdir().unwrap();
    // tar keeps the files' modification times, which name the checkpoints.
    util::run(
        "tar",
        &["-xzf", tarball.to_str().unwrap(), "-C", dir.path().to_str().unwrap()],
    );
    let image = dir.path().join(img.base);
    assert!(image.is_file(), "{} holds no {}", tarball.display(), img.base);
    Some(Fixture { dir, image })
}

/// `ckptfs cat IMAGE <ckpt>/disk.img` into a file, leaving zero runs as holes.
fn raw_disk(fx: &Fixture, ckpt: &str) -> PathBuf {
    let out = fx.dir.path().join(format!("{ckpt}.raw"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ckptfs"))
        .args(["cat", fx.image(), &format!("{ckpt}/disk.img")])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut file = File::create(&out).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut len = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match stdout.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(n as i64)).unwrap();
        } else {
            file.write_all(&buf[..n]).unwrap();
        }
        len += n as u64;
        if n < buf.len() {
            break;
        }
    }
    file.set_len(len).unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "ckptfs cat {ckpt}/disk.img: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

// --- loop devices and mounts, released even when a test fails -------------------------

struct Loop {
    dev: String,
}

impl Loop {
    /// A read-only loop device over `size` bytes of `file` at `offset`.
    fn attach(file: &Path, offset: u64, size: u64, sector: u64) -> Loop {
        let (off, len, ss) = (offset.to_string(), size.to_string(), sector.to_string());
        let mut args = vec!["--find", "--show", "--read-only", "-o", &off, "--sizelimit", &len];
        if sector != 512 {
            args.extend(["--sector-size", &ss]);
        }
        args.push(file.to_str().unwrap());
        // Tests run in parallel: another may take the device found free; try again.
        let mut last = String::new();
        for _ in 0..5 {
            let out = Command::new("losetup").args(&args).output().unwrap();
            if out.status.success() {
                return Loop {
                    dev: String::from_utf8(out.stdout).unwrap().trim().to_string(),
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("losetup {args:?}: {last}");
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        for _ in 0..10 {
            if Command::new("losetup")
                .args(["-d", &self.dev])
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        eprintln!("warning: could not detach {}", self.dev);
    }
}

/// A read-only mount of a loop device; unmounted (before the device is detached: the
/// fields drop in order) when dropped.
struct Mount {
    dir: tempfile::TempDir,
    _dev: Loop,
}

impl Mount {
    fn new(dev: Loop, fs: Fs) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().to_str().unwrap();
        match fs {
            Fs::Ext4 => util::run("mount", &["-t", "ext4", "-o", "ro", &dev.dev, mnt]),
            Fs::Ntfs => util::run("ntfs-3g", &["-o", "ro", &dev.dev, mnt]),
            Fs::Fat => util::run("mount", &["-t", "vfat", "-o", "ro,tz=UTC,utf8", &dev.dev, mnt]),
        }
        Mount { dir, _dev: dev }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// Whether this kernel mounts vfat (containers often lack the module; mtools is the
/// reference for FAT then).
fn kernel_has_vfat() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.split_whitespace().any(|w| w == "vfat"))
}

/// mtools' commands, reading FAT times as UTC as ckptfs does by default.
fn mtools(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("TZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .env("MTOOLS_SKIP_CHECK", "1");
    c
}

fn mtools_out(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = mtools(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What the guest's driver shows of a volume: a mount, or for FAT a tree extracted by
/// mtools (`mcopy -s -m`, which keeps names, bytes and modification times).
enum Reference {
    Mounted(Mount),
    Extracted(tempfile::TempDir),
}

impl Reference {
    fn path(&self) -> &Path {
        match self {
            Reference::Mounted(m) => m.path(),
            Reference::Extracted(d) => d.path(),
        }
    }
}

fn reference(raw: &Path, vol: &Vol) -> Reference {
    match vol.fs {
        Fs::Ext4 | Fs::Ntfs => Reference::Mounted(Mount::new(Loop::attach(raw, vol.start, vol.size, 512), vol.fs)),
        Fs::Fat => {
            let dir = tempfile::tempdir().unwrap();
            let image = format!("{}@@{}", raw.display(), vol.start);
            let dest = format!("{}/", dir.path().display());
            mtools_out("mcopy", &["-s", "-m", "-n", "-i", &image, "::/", &dest]);
            Reference::Extracted(dir)
        }
    }
}

// --- list --------------------------------------------------------------------------------

fn list_json(fx: &Fixture) -> serde_json::Value {
    let out = ckptfs(["list", "--json", fx.image()]).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_list(img: &Image) {
    let Some(fx) = setup(img) else { return };
    let v = list_json(&fx);
    let cps = v["checkpoints"].as_array().unwrap();
    let names: Vec<&str> = cps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, img.checkpoints, "{}: checkpoints", img.name);
    let expected_volumes: Vec<serde_json::Value> = img
        .volumes
        .iter()
        .map(|v| {
            serde_json::json!({
                "dir": v.dir, "partition": v.partition, "filesystem": v.filesystem,
                "label": v.label, "size": v.size,
            })
        })
        .collect();
    for c in cps {
        let name = c["name"].as_str().unwrap();
        assert!(c.get("error").is_none(), "{}/{name}: {}", img.name, c["error"]);
        let hidden = c["hidden_partitions"].as_array().unwrap();
        assert_eq!(
            hidden.len(),
            img.hidden.len(),
            "{}/{name}: hidden partitions {hidden:?}",
            img.name
        );
        for h in img.hidden {
            let found = hidden
                .iter()
                .find(|j| j["partition"] == h.partition)
                .unwrap_or_else(|| panic!("{}/{name}: p{} not listed as hidden: {hidden:?}", img.name, h.partition));
            let t = found["type"].as_str().unwrap_or_default();
            assert!(
                t.contains(h.type_has),
                "{}/{name}: p{} type {t:?}",
                img.name,
                h.partition
            );
            assert_eq!(found["size"], h.size, "{}/{name}: p{} size", img.name, h.partition);
            assert!(!found["reason"].as_str().unwrap_or_default().is_empty());
        }

        // The same disk as sfdisk reads it: the layout is the script's, and ckptfs's.
        let raw = raw_disk(&fx, name);
        assert_eq!(
            std::fs::metadata(&raw).unwrap().len(),
            img.disk_size,
            "{}/{name}: disk size",
            img.name
        );
        let table = sfdisk(&raw, img.sector);
        match img.table {
            None => assert!(table.is_none(), "{}/{name}: sfdisk found a table", img.name),
            Some(kind) => {
                let (label, parts) = table.unwrap_or_else(|| panic!("{}/{name}: sfdisk found no table", img.name));
                assert_eq!(label, kind);
                let mut expected: Vec<(u32, u64, u64)> = img
                    .volumes
                    .iter()
                    .map(|v| (v.partition.unwrap(), v.start, v.size))
                    .chain(img.hidden.iter().map(|h| (h.partition, h.start, h.size)))
                    .collect();
                expected.sort();
                assert_eq!(parts, expected, "{}/{name}: sfdisk's partitions", img.name);
            }
        }
        if img.damaged_primary_gpt {
            let mut f = File::open(&raw).unwrap();
            let mut sector = vec![0u8; img.sector as usize];
            f.seek(SeekFrom::Start(img.sector)).unwrap();
            f.read_exact(&mut sector).unwrap();
            assert!(
                sector.iter().all(|&b| b == 0),
                "{}/{name}: the primary GPT header is not zeroed",
                img.name
            );
            f.seek(SeekFrom::Start(img.disk_size - img.sector)).unwrap();
            f.read_exact(&mut sector).unwrap();
            assert_eq!(&sector[..8], b"EFI PART", "{}/{name}: no backup GPT header", img.name);
        }
        std::fs::remove_file(&raw).unwrap();
        // Last, so that a filesystem not read yet still lets the rest be checked.
        let volumes: Vec<serde_json::Value> = c["volumes"].as_array().unwrap().to_vec();
        assert_eq!(volumes, expected_volumes, "{}/{name}: volumes", img.name);
        eprintln!(
            "ok: {} {name}: {} volumes, {} hidden",
            img.name,
            volumes.len(),
            hidden.len()
        );
    }
}

/// A partition as sfdisk reports it: number, start and size in bytes.
type Partition = (u32, u64, u64);

/// sfdisk's reading of a disk: (label, [(number, start, size)] in bytes), None without a
/// table. For 4096-byte sectors, through a loop device of that sector size.
fn sfdisk(raw: &Path, sector: u64) -> Option<(String, Vec<Partition>)> {
    let size = std::fs::metadata(raw).unwrap().len();
    let dev = (sector != 512).then(|| Loop::attach(raw, 0, size, sector));
    let target = dev
        .as_ref()
        .map(|d| d.dev.clone())
        .unwrap_or_else(|| raw.to_str().unwrap().to_string());
    let out = Command::new("sfdisk").args(["--json", &target]).output().unwrap();
    if !out.status.success() || out.stdout.is_empty() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["partitiontable"];
    let ss = t["sectorsize"].as_u64().unwrap_or(512);
    assert_eq!(ss, sector, "sfdisk's sector size");
    let mut parts: Vec<(u32, u64, u64)> = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let digits: String = node.chars().rev().take_while(|c| c.is_ascii_digit()).collect();
            let number: u32 = digits.chars().rev().collect::<String>().parse().unwrap();
            (
                number,
                p["start"].as_u64().unwrap() * ss,
                p["size"].as_u64().unwrap() * ss,
            )
        })
        .collect();
    parts.sort();
    Some((t["label"].as_str().unwrap().to_string(), parts))
}

// --- one volume in every checkpoint ----------------------------------------------------

fn check_volume(img: &Image, dir: &str) {
    let vol = img.volumes.iter().find(|v| v.dir == dir).unwrap();
    let Some(fx) = setup(img) else { return };
    let mut walks: Vec<Walk> = Vec::new();
    for (ci, ckpt) in img.checkpoints.iter().enumerate() {
        let what = format!("{}: {ckpt}/{}", img.name, vol.dir);
        let raw = raw_disk(&fx, ckpt);

        // ckptfs's copy of the whole volume.
        let dest = fx.dir.path().join(format!("{ckpt}-{}", vol.dir));
        ckptfs([
            "cp",
            "-r",
            fx.image(),
            &format!("{ckpt}/{}", vol.dir),
            dest.to_str().unwrap(),
        ])
        .ok();
        let ours = fswalk::walk_host(&dest, &[]);

        // The driver's view of the same bytes.
        let reference = reference(&raw, vol);
        let theirs = fswalk::walk_host(reference.path(), &[]);
        fswalk::assert_same_walk(&ours, &theirs, &what);
        // Neither walk skips anything: ntfs-3g, like ckptfs, hides the NTFS metadata files
        // ($MFT, $Extend, ...) and DOS 8.3 aliases, and mkntfs makes no "System Volume
        // Information"; equal walks show that ckptfs hides exactly those. Say so plainly
        // for the metadata files all the same.
        if vol.fs == Fs::Ntfs {
            let meta: Vec<&String> = ours.keys().filter(|p| p.starts_with('$')).collect();
            assert!(meta.is_empty(), "{what}: NTFS metadata files listed: {meta:?}");
        }
        if vol.fs == Fs::Fat {
            check_mdir(&raw, vol, &ours, &what);
            check_kernel_vfat(&raw, vol, &ours, &what);
        }

        // What the script did in this state is there.
        for &(i, path, exists) in vol.expect.iter().filter(|e| e.0 == ci) {
            assert_eq!(
                theirs.contains_key(path),
                exists,
                "{what}: {path} (checkpoint {i}) exists?"
            );
        }
        for file in vol.cat {
            if theirs.contains_key(*file) {
                check_cat(&fx, ckpt, vol, file, file, reference.path(), &raw, &what);
            }
        }
        for (typed, stored) in vol.case_insensitive {
            if theirs.contains_key(*stored) {
                check_cat(&fx, ckpt, vol, typed, stored, reference.path(), &raw, &what);
                let parent = typed.rsplit_once('/').map(|p| p.0).unwrap_or("");
                ckptfs(["ls", fx.image(), &format!("{ckpt}/{}/{parent}", vol.dir)]).ok();
            }
        }
        if vol.fs == Fs::Ext4 {
            // ext4 names are case-sensitive.
            let (first, rest) = vol.cat[0].split_once('/').unwrap();
            let upper = format!("{ckpt}/{}/{}/{rest}", vol.dir, first.to_uppercase());
            ckptfs(["cat", fx.image(), &upper]).failed();
        }
        for d in vol.ls {
            check_ls(&fx, ckpt, vol, d, reference.path(), &what);
        }
        drop(reference);
        std::fs::remove_file(&raw).unwrap();
        std::fs::remove_dir_all(&dest).unwrap();
        eprintln!("ok: {what}: {} entries", ours.len());
        walks.push(ours);
    }
    for (i, pair) in walks.windows(2).enumerate() {
        if vol.changes {
            assert_ne!(
                pair[0],
                pair[1],
                "{}/{}: checkpoints {i} and {} read the same",
                img.name,
                vol.dir,
                i + 1
            );
        } else {
            fswalk::assert_same_walk(
                &pair[1],
                &pair[0],
                &format!("{}/{}: unchanged volume", img.name, vol.dir),
            );
        }
    }
}

/// `ckptfs cat` of `typed` equals the driver's bytes of `stored`.
#[allow(clippy::too_many_arguments)]
fn check_cat(fx: &Fixture, ckpt: &str, vol: &Vol, typed: &str, stored: &str, host: &Path, raw: &Path, what: &str) {
    let out = ckptfs(["cat", fx.image(), &format!("{ckpt}/{}/{typed}", vol.dir)]).ok();
    let expected = std::fs::read(host.join(stored)).unwrap();
    util::assert_same_bytes(&out.stdout, &expected, &format!("{what}: cat {typed}"));
    if vol.fs == Fs::Fat {
        let image = format!("{}@@{}", raw.display(), vol.start);
        let typed_bytes = mtools_out("mtype", &["-i", &image, &format!("::/{stored}")]);
        util::assert_same_bytes(&out.stdout, &typed_bytes, &format!("{what}: cat {typed} vs mtype"));
    }
}

/// mdir's names and sizes equal ckptfs's.
fn check_mdir(raw: &Path, vol: &Vol, ours: &Walk, what: &str) {
    let image = format!("{}@@{}", raw.display(), vol.start);
    let listing = String::from_utf8(mtools_out("mdir", &["-/", "-a", "-i", &image, "::"])).unwrap();
    let theirs = parse_mdir(&listing);
    let ours: BTreeMap<String, Option<u64>> = ours
        .iter()
        .map(|(p, n)| (p.clone(), if n.kind == 'd' { None } else { Some(n.size) }))
        .collect();
    assert_eq!(ours, theirs, "{what}: names and sizes (left ckptfs, right mdir)");
}

/// `mdir -/ -a` output → path → size (None for a directory).
fn parse_mdir(listing: &str) -> BTreeMap<String, Option<u64>> {
    let mut out = BTreeMap::new();
    let mut dir: Option<String> = None;
    for line in listing.lines() {
        if let Some(d) = line.strip_prefix("Directory for ::/") {
            dir = Some(d.trim_end_matches('/').to_string());
            continue;
        }
        let Some(dir) = &dir else { continue };
        let chars: Vec<char> = line.chars().collect();
        if chars.len() < 13 || chars[8] != ' ' || chars[12] != ' ' {
            continue;
        }
        let short: String = chars[..8].iter().collect::<String>().trim_end().to_string();
        let ext: String = chars[9..12].iter().collect::<String>().trim_end().to_string();
        let rest: String = chars[12..].iter().collect();
        let mut tokens = rest.split_whitespace();
        let (Some(size), Some(date), Some(time)) = (tokens.next(), tokens.next(), tokens.next()) else {
            continue;
        };
        if date.len() != 10 || !time.contains(':') {
            continue;
        }
        if short == "." || short == ".." {
            continue;
        }
        let after_date = rest.find(date).unwrap() + date.len();
        let after_time = after_date + rest[after_date..].find(time).unwrap() + time.len();
        // A long name follows the time after two spaces.
        let long = rest[after_time..].strip_prefix("  ").unwrap_or("").to_string();
        let name = if !long.is_empty() {
            long
        } else if ext.is_empty() {
            short
        } else {
            format!("{short}.{ext}")
        };
        let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let size = if size == "<DIR>" {
            None
        } else {
            Some(size.parse().unwrap())
        };
        out.insert(path, size);
    }
    out
}

/// Where this kernel has vfat, its mount (times as UTC) must read the same.
fn check_kernel_vfat(raw: &Path, vol: &Vol, ours: &Walk, what: &str) {
    if !kernel_has_vfat() {
        eprintln!("note: {what}: this kernel has no vfat; FAT compared with mtools only");
        return;
    }
    let m = Mount::new(Loop::attach(raw, vol.start, vol.size, 512), Fs::Fat);
    fswalk::assert_same_walk(
        ours,
        &fswalk::walk_host(m.path(), &[]),
        &format!("{what} (kernel vfat)"),
    );
}

// --- ls -l ---------------------------------------------------------------------------------

/// One line of `ckptfs ls -l`.
#[derive(Debug, PartialEq, Eq)]
struct LsLine {
    mode: String,
    nlink: String,
    uid: String,
    gid: String,
    size: String,
    mtime: String,
    name: String,
    target: Option<String>,
}

fn parse_ls(line: &str) -> LsLine {
    let mut rest = line;
    let mut fields = Vec::new();
    for _ in 0..6 {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        fields.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (name, target) = if fields[0].starts_with('l') {
        let (n, t) = rest.split_once(" -> ").unwrap();
        (n.to_string(), Some(t.to_string()))
    } else {
        (rest.to_string(), None)
    };
    let mut f = fields.into_iter();
    LsLine {
        mode: f.next().unwrap(),
        nlink: f.next().unwrap(),
        uid: f.next().unwrap(),
        gid: f.next().unwrap(),
        size: f.next().unwrap(),
        mtime: f.next().unwrap(),
        name,
        target,
    }
}

/// `ckptfs ls -l` of `dir` against `stat` of the driver's view. ext4 keeps its own
/// modes, owners and link counts, so all fields count there; NTFS and FAT modes are
/// ckptfs's own choice, so only kind, name, size (of files) and time are compared.
fn check_ls(fx: &Fixture, ckpt: &str, vol: &Vol, dir: &str, host: &Path, what: &str) {
    let path = format!("{ckpt}/{}/{dir}", vol.dir);
    let out = ckptfs(["ls", "-l", fx.image(), &path]).ok().stdout_str();
    let mut ours: Vec<LsLine> = out.lines().map(parse_ls).collect();
    let host_dir = host.join(dir);
    let mut theirs: Vec<LsLine> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                '-'
            } else if ft.is_fifo() {
                'p'
            } else {
                '?'
            };
            LsLine {
                mode: format!("{kind}{}", perm_string(md.mode())),
                nlink: md.nlink().to_string(),
                uid: md.uid().to_string(),
                gid: md.gid().to_string(),
                size: md.len().to_string(),
                mtime: rfc3339_seconds(md.mtime()),
                name: e.file_name().to_string_lossy().into_owned(),
                target: ft
                    .is_symlink()
                    .then(|| std::fs::read_link(e.path()).unwrap().to_string_lossy().into_owned()),
            }
        })
        .collect();
    if vol.fs != Fs::Ext4 {
        for l in ours.iter_mut().chain(theirs.iter_mut()) {
            l.mode.truncate(1);
            l.nlink.clear();
            l.uid.clear();
            l.gid.clear();
            if l.mode == "d" {
                l.size.clear();
            }
        }
    }
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    theirs.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        ours, theirs,
        "{what}: ls -l {dir:?} (left ckptfs, right the driver)\n{out}"
    );
}

/// `rwxr-xr-x` with setuid/setgid/sticky, as ls shows them.
fn perm_string(mode: u32) -> String {
    let mut s: Vec<char> = "rwxrwxrwx"
        .chars()
        .enumerate()
        .map(|(i, c)| if mode & (0o400 >> i) != 0 { c } else { '-' })
        .collect();
    for (bit, pos, set, unset) in [(0o4000, 2, 's', 'S'), (0o2000, 5, 's', 'S'), (0o1000, 8, 't', 'T')] {
        if mode & bit != 0 {
            s[pos] = if s[pos] == 'x' { set } else { unset };
        }
    }
    s.into_iter().collect()
}

/// Seconds since the epoch as `2026-10-01T09:00:22Z`.
fn rfc3339_seconds(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[test]
fn rfc3339_formatting_matches_known_dates() {
    assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_seconds(1_795_169_703), "2026-11-20T10:15:03Z");
    assert_eq!(rfc3339_seconds(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339_seconds(-1), "1969-12-31T23:59:59Z");
}

#[test]
fn mdir_listings_parse() {
    let listing = " Volume in drive : is SYSTEM     \n Volume Serial Number is 1234-ABCD\nDirectory for ::/\n\n\
EFI          <DIR>     2026-10-01   9:01 \n        1 file                    0 bytes\n\n\
Directory for ::/EFI/Microsoft/Boot\n\n.            <DIR>     2026-10-01   9:01 \n\
..           <DIR>     2026-10-01   9:01 \nEN-US        <DIR>     2026-10-01   9:01  en-US\n\
EMPTY    DAT         0 2026-10-01   9:00 \nFONTSA~1     <DIR>     2026-10-01   9:01  Fonts and Resources\n\
boot     stl      1200 2026-10-01   9:00 \nBCD              16384 2026-10-01   9:00 \n\
RÉSUMÉ   TXT         2 2024-03-01  10:00  Résumé.txt\n        8 files              50 352 bytes\n";
    let m = parse_mdir(listing);
    let expected: BTreeMap<String, Option<u64>> = [
        ("EFI", None),
        ("EFI/Microsoft/Boot/en-US", None),
        ("EFI/Microsoft/Boot/EMPTY.DAT", Some(0)),
        ("EFI/Microsoft/Boot/Fonts and Resources", None),
        ("EFI/Microsoft/Boot/boot.stl", Some(1200)),
        ("EFI/Microsoft/Boot/BCD", Some(16384)),
        ("EFI/Microsoft/Boot/Résumé.txt", Some(2)),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_string(), s))
    .collect();
    assert_eq!(m, expected);
}
