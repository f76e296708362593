//! Partition tables written by the real tools (sfdisk, fdisk, sgdisk) into sparse
//! files, read back by ckptfs and compared with what the same tools report: they are the
//! independent oracle for every number, start, size and type checked here.

mod util;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ckptfs::io::{check_range, ReadAt};
use ckptfs::volume::partition::{read_partition_table, Partition, PartitionKind, PartitionTable, TableKind};
use util::have_tool;
use uuid::Uuid;

const MIB: u64 = 1 << 20;

/// A raw image file as a disk.
struct RawDisk {
    file: File,
    size: u64,
}

impl RawDisk {
    fn open(path: &Path) -> RawDisk {
        let file = File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        RawDisk { file, size }
    }
}

impl ReadAt for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> ckptfs::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| ckptfs::Error::Io {
                path: PathBuf::from("test image"),
                what: "read".into(),
                source,
            })
    }
}

/// Run a command with `stdin`, panic unless it succeeds, return its stdout.
fn sh(cmd: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sparse_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    File::create(&path).unwrap().set_len(size).unwrap();
    path
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One partition as a tool reports it, in that tool's sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    number: u32,
    start: u64,
    sectors: u64,
    /// The MBR type byte, or the GPT type GUID, in the tool's spelling.
    type_code: String,
    name: Option<String>,
}

fn read_ours(path: &Path, sector_size: u32) -> PartitionTable {
    let t = read_partition_table(&RawDisk::open(path), sector_size).unwrap();
    eprintln!("{}: {:?}, warnings {:?}", path.display(), t.kind, t.warnings);
    t
}

/// Our partitions in the oracle's terms, at the oracle's sector size.
fn ours_as_expected(t: &PartitionTable, sector_size: u64) -> Vec<Expected> {
    t.partitions
        .iter()
        .map(|part| {
            assert_eq!(part.start % sector_size, 0, "{part:?}");
            assert_eq!(part.size % sector_size, 0, "{part:?}");
            Expected {
                number: part.number,
                start: part.start / sector_size,
                sectors: part.size / sector_size,
                type_code: match part.kind {
                    PartitionKind::Mbr { type_byte } => format!("{type_byte:x}"),
                    PartitionKind::Gpt { type_guid, .. } => type_guid.hyphenated().to_string().to_uppercase(),
                },
                name: part.name.clone(),
            }
        })
        .collect()
}

/// `sfdisk --json`: (label, sector size, partitions). Logical numbers come from the
/// node name's suffix, as sfdisk derives them.
fn sfdisk_json(device: &str) -> (String, u64, Vec<Expected>) {
    let json: serde_json::Value =
        serde_json::from_str(&sh("sfdisk", &["--json", device], "")).expect("sfdisk --json output");
    let pt = &json["partitiontable"];
    let number_of = |node: &str| -> u32 {
        let digits: String = node.chars().rev().take_while(char::is_ascii_digit).collect();
        digits.chars().rev().collect::<String>().parse().unwrap()
    };
    let parts = pt["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Expected {
            number: number_of(e["node"].as_str().unwrap()),
            start: e["start"].as_u64().unwrap(),
            sectors: e["size"].as_u64().unwrap(),
            type_code: e["type"].as_str().unwrap().to_string(),
            name: e["name"].as_str().map(str::to_string),
        })
        .collect();
    (
        pt["label"].as_str().unwrap().to_string(),
        pt["sectorsize"].as_u64().unwrap(),
        parts,
    )
}

/// `sgdisk -p` for the layout and logical sector size, `sgdisk -i N` for each
/// partition's type GUID, unique GUID and attributes.
struct Sgdisk {
    sector_size: u64,
    parts: Vec<Expected>,
    unique: Vec<Uuid>,
    attributes: Vec<u64>,
}

fn sgdisk_report(device: &str) -> Sgdisk {
    let listing = sh("sgdisk", &["-p", device], "");
    let sector_size = listing
        .lines()
        .find_map(|l| l.strip_prefix("Sector size (logical"))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split(['/', ' ']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sector size in: {listing}"));
    let rows = listing
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .filter(|l| !l.trim().is_empty());
    let mut out = Sgdisk {
        sector_size,
        parts: Vec::new(),
        unique: Vec::new(),
        attributes: Vec::new(),
    };
    for row in rows {
        let f: Vec<&str> = row.split_whitespace().collect();
        let (number, start, end) = (f[0], f[1], f[2]);
        let info = sh("sgdisk", &["-i", number, device], "");
        let field = |key: &str| -> &str {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {info}"))
                .trim()
        };
        let type_guid = field("Partition GUID code:").split(' ').next().unwrap();
        let name = field("Partition name:").trim_matches('\'');
        let start: u64 = start.parse().unwrap();
        out.parts.push(Expected {
            number: number.parse().unwrap(),
            start,
            sectors: end.parse::<u64>().unwrap() - start + 1,
            type_code: type_guid.to_string(),
            name: (!name.is_empty()).then(|| name.to_string()),
        });
        out.unique.push(field("Partition unique GUID:").parse().unwrap());
        out.attributes
            .push(u64::from_str_radix(field("Attribute flags:"), 16).unwrap());
    }
    out
}

fn check_gpt_details(t: &PartitionTable, oracle: &Sgdisk) {
    let scale = oracle.sector_size;
    assert_eq!(ours_as_expected(t, scale), oracle.parts);
    for (i, part) in t.partitions.iter().enumerate() {
        let PartitionKind::Gpt {
            unique_guid,
            attributes,
            ..
        } = part.kind
        else {
            panic!("{part:?}")
        };
        assert_eq!(unique_guid, oracle.unique[i], "partition {}", part.number);
        assert_eq!(attributes, oracle.attributes[i], "partition {}", part.number);
    }
}

/// sgdisk's five Windows-and-Linux partitions, sized in MiB so the same command works
/// at any sector size.
const SGDISK_LAYOUT: &[&str] = &[
    "-o",
    "-n",
    "1:0:+4M",
    "-t",
    "1:ef00",
    "-c",
    "1:EFI system partition",
    "-A",
    "1:set:0",
    "-n",
    "2:0:+1M",
    "-t",
    "2:0c01",
    "-c",
    "2:Microsoft reserved partition",
    "-n",
    "3:0:+20M",
    "-t",
    "3:0700",
    "-c",
    "3:Basic data partition",
    "-n",
    "4:0:+10M",
    "-t",
    "4:8300",
    "-n",
    "5:0:0",
    "-t",
    "5:8200",
    "-c",
    "5:swap",
];

fn sgdisk_image(dir: &Path, name: &str) -> PathBuf {
    let img = sparse_file(dir, name, 64 * MIB);
    let mut args = SGDISK_LAYOUT.to_vec();
    args.push(p(&img));
    sh("sgdisk", &args, "");
    img
}

fn check_sgdisk_types(t: &PartitionTable) {
    let fs: Vec<bool> = t
        .partitions
        .iter()
        .map(|p| p.kind.not_a_filesystem().is_none())
        .collect();
    // ESP, MSR, basic data, Linux filesystem, swap.
    assert_eq!(fs, [true, false, true, true, false]);
    let names: Vec<String> = t.partitions.iter().map(|p| p.kind.describe()).collect();
    assert_eq!(
        names,
        [
            "EFI system",
            "Microsoft reserved",
            "Microsoft basic data",
            "Linux filesystem",
            "Linux swap"
        ]
    );
}

#[test]
fn mbr_with_extended_and_logicals_from_sfdisk() {
    if !have_tool("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_file(dir.path(), "mbr.img", 64 * MIB);
    sh(
        "sfdisk",
        &["-q", p(&img)],
        "label: dos\nunit: sectors\n\
         start=2048, size=20480, type=7, bootable\n\
         start=22528, size=10240, type=c\n\
         start=32768, type=5\n\
         start=34816, size=8192, type=83\n\
         start=45056, size=4096, type=82\n\
         start=51200, size=4096, type=8e\n",
    );
    let (label, ss, expected) = sfdisk_json(p(&img));
    assert_eq!((label.as_str(), ss), ("dos", 512));
    let t = read_ours(&img, 512);
    assert_eq!(t.kind, TableKind::Mbr);
    assert_eq!(ours_as_expected(&t, ss), expected);
    assert_eq!(
        t.partitions.iter().map(|p| p.number).collect::<Vec<_>>(),
        [1, 2, 3, 5, 6, 7]
    );
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let skipped: Vec<u32> = t
        .partitions
        .iter()
        .filter(|p| p.kind.not_a_filesystem().is_some())
        .map(|p| p.number)
        .collect();
    assert_eq!(skipped, [3, 6, 7], "extended, swap and LVM");
}

#[test]
fn gpt_from_sfdisk() {
    if !have_tool("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_file(dir.path(), "gpt.img", 64 * MIB);
    sh(
        "sfdisk",
        &["-q", p(&img)],
        "label: gpt\nunit: sectors\n\
         start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system partition\"\n\
         size=32768, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"Basic data partition\"\n\
         type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    let (label, ss, expected) = sfdisk_json(p(&img));
    assert_eq!((label.as_str(), ss), ("gpt", 512));
    assert_eq!(expected.len(), 3);
    let t = read_ours(&img, 512);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_eq!(ours_as_expected(&t, ss), expected);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn gpt_typecodes_from_sgdisk() {
    if !have_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path(), "gpt.img");
    let oracle = sgdisk_report(p(&img));
    assert_eq!(oracle.sector_size, 512);
    let t = read_ours(&img, 512);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_eq!(t.sector_size, 512);
    check_gpt_details(&t, &oracle);
    check_sgdisk_types(&t);
    assert_eq!(t.partitions[0].name.as_deref(), Some("EFI system partition"));
    assert_eq!(t.partitions[3].name, None);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn damaged_primary_gpt_falls_back_to_the_backup() {
    if !have_tool("sgdisk") || !have_tool("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path(), "gpt.img");
    let oracle = sgdisk_report(p(&img));
    let file = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    file.write_all_at(&[0u8; 512], 512).unwrap();
    drop(file);
    let t = read_ours(&img, 512);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: true });
    check_gpt_details(&t, &oracle);
    assert!(
        t.warnings.iter().any(|w| w.contains("using the backup GPT")),
        "{:?}",
        t.warnings
    );
    // libfdisk, independently, reads the same partitions from the backup.
    let (label, ss, from_backup) = sfdisk_json(p(&img));
    assert_eq!(label, "gpt");
    assert_eq!(ours_as_expected(&t, ss), from_backup);
}

#[test]
fn damaged_primary_entry_array_falls_back_to_the_backup() {
    if !have_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path(), "gpt.img");
    let oracle = sgdisk_report(p(&img));
    let file = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    file.write_all_at(&[0u8; 512], 2 * 512).unwrap();
    drop(file);
    let t = read_ours(&img, 512);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: true });
    check_gpt_details(&t, &oracle);
}

#[test]
fn hybrid_mbr_from_sgdisk_reads_the_gpt() {
    if !have_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path(), "gpt.img");
    sh("sgdisk", &["-h", "1:3", p(&img)], "");
    let oracle = sgdisk_report(p(&img));
    let t = read_ours(&img, 512);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    check_gpt_details(&t, &oracle);
    assert!(t.warnings.iter().any(|w| w.contains("hybrid MBR")), "{:?}", t.warnings);
}

/// A loop device with 4096-byte logical sectors over `file`, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Option<Loop> {
        if !have_tool("losetup") {
            return None;
        }
        let out = Command::new("losetup")
            .args(["--show", "-f", "--sector-size", "4096", p(file)])
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            if std::env::var_os("CKPTFS_REQUIRE_TOOLS").is_some() {
                panic!("losetup --sector-size 4096 failed (CKPTFS_REQUIRE_TOOLS is set): {why}");
            }
            util::skip(format!("losetup failed (needs root and loop devices): {why}"));
            return None;
        }
        Some(Loop(String::from_utf8(out.stdout).unwrap().trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("blockdev").args(["--flushbufs", &self.0]).status();
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn gpt_with_4096_byte_sectors_from_sgdisk_on_a_loop_device() {
    if !have_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_file(dir.path(), "gpt4k.img", 64 * MIB);
    let oracle = {
        let Some(dev) = Loop::attach(&img) else {
            return;
        };
        let mut args = SGDISK_LAYOUT.to_vec();
        args.push(&dev.0);
        sh("sgdisk", &args, "");
        sgdisk_report(&dev.0)
    };
    assert_eq!(oracle.sector_size, 4096);
    let t = read_ours(&img, 4096);
    assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
    assert_eq!(t.sector_size, 4096);
    check_gpt_details(&t, &oracle);
    check_sgdisk_types(&t);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);

    // The same image in a container that claims 512-byte sectors.
    let probed = read_ours(&img, 512);
    assert_eq!(probed.sector_size, 4096);
    assert_eq!(probed.partitions, t.partitions);
    assert!(
        probed.warnings.iter().any(|w| w.contains("4096-byte sectors")),
        "{:?}",
        probed.warnings
    );
}

/// `fdisk -b 4096 -l`: the partition rows, without needing a loop device.
fn fdisk_4096_listing(img: &str) -> Vec<Expected> {
    let out = sh(
        "fdisk",
        &["-b", "4096", "-l", "-o", "Device,Start,Sectors,Type-UUID", img],
        "",
    );
    assert!(out.contains("Disklabel type: gpt"), "{out}");
    out.lines()
        .skip_while(|l| !l.starts_with("Device"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            let digits: String = f[0]
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Expected {
                number: digits.parse().unwrap(),
                start: f[1].parse().unwrap(),
                sectors: f[2].parse().unwrap(),
                type_code: f[3].to_string(),
                name: None,
            }
        })
        .collect()
}

#[test]
fn gpt_with_4096_byte_sectors_from_fdisk() {
    if !have_tool("fdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sparse_file(dir.path(), "fdisk4k.img", 64 * MIB);
    // New GPT; ESP of 4 MiB, basic data of 20 MiB, Linux filesystem on the rest.
    sh(
        "fdisk",
        &["-b", "4096", p(&img)],
        "g\nn\n1\n\n+4M\nt\n1\nn\n2\n\n+20M\nt\n2\n11\nn\n3\n\n\nt\n3\n20\nw\n",
    );
    let expected = fdisk_4096_listing(p(&img));
    assert_eq!(expected.len(), 3);
    for declared in [4096, 512] {
        let t = read_ours(&img, declared);
        assert_eq!(t.kind, TableKind::Gpt { from_backup: false });
        assert_eq!(t.sector_size, 4096);
        assert_eq!(ours_as_expected(&t, 4096), expected);
    }
}

#[test]
fn partition_numbers_survive_gaps() {
    if !have_tool("sgdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path(), "gpt.img");
    sh("sgdisk", &["-d", "2", "-d", "4", p(&img)], "");
    let oracle = sgdisk_report(p(&img));
    let t = read_ours(&img, 512);
    check_gpt_details(&t, &oracle);
    let numbers: Vec<u32> = t.partitions.iter().map(|p: &Partition| p.number).collect();
    assert_eq!(numbers, [1, 3, 5]);
}
