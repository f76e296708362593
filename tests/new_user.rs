//! What a new user tripped over (issue 13), each checked as the user met it: `cp` into
//! a missing directory, mounting twice on one directory, skipped tests that said `ok`,
//! the demo's silent build, options without help, several wordings of one missing
//! file, and directory facts (FAT root time, NTFS directory size and links) that
//! differ from what the guest's own drivers show.
//!
//! Most run on the demo tree (images/demo.tar.gz: a FAT32 p1_SYSTEM at 1 MiB and an
//! NTFS p3_Windows at 57 MiB, three states).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::{can_fuse_mount, ckptfs, have_tool};

const MIB: u64 = 1 << 20;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ckptfs")
}

/// The demo tree extracted into a temporary directory; its base file.
fn demo() -> Option<(tempfile::TempDir, PathBuf)> {
    if !have_tool("tar") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/demo.tar.gz");
    util::run(
        "tar",
        &["-xzf", tarball.to_str().unwrap(), "-C", dir.path().to_str().unwrap()],
    );
    let image = dir.path().join("Win11.vhdx");
    assert!(image.is_file());
    Some((dir, image))
}

// --- cp into a directory that is not there ---------------------------------------------

#[test]
fn cp_into_a_missing_parent_fails_as_cp_does() {
    let Some((dir, image)) = demo() else { return };
    let image = image.to_str().unwrap();
    let missing = dir.path().join("nonexistent");
    let dest = missing.join("dir/x");

    // coreutils' cp, for the record of what users expect.
    let host_src = dir.path().join("host-src");
    std::fs::create_dir(&host_src).unwrap();
    let cp = Command::new("cp").arg("-r").arg(&host_src).arg(&dest).output().unwrap();
    assert!(
        !cp.status.success() && !missing.exists(),
        "coreutils cp made {}",
        dest.display()
    );

    let out = ckptfs(["cp", "-r", image, "03_current/p3_Windows/Users", dest.to_str().unwrap()]).failed();
    assert!(
        !missing.exists(),
        "ckptfs cp -r made the missing parents of {}",
        dest.display()
    );
    assert!(
        out.stderr.contains(dest.to_str().unwrap()) && out.stderr.contains("No such file or directory"),
        "{}",
        out.stderr
    );

    // A single file the same way.
    let doc = "03_current/p3_Windows/Users/alice/Documents/report.docx";
    ckptfs(["cp", image, doc, dest.to_str().unwrap()]).failed();
    assert!(!missing.exists());

    // Into an existing directory still works, and so does merging into one.
    let ok_dest = dir.path().join("restored");
    for _ in 0..2 {
        ckptfs([
            "cp",
            "-r",
            image,
            "03_current/p3_Windows/Users",
            ok_dest.to_str().unwrap(),
        ])
        .ok();
        assert!(ok_dest.join("alice/Documents/report.docx").is_file());
    }
}

// --- mounting on a ckptfs mount ----------------------------------------------------------

/// A mount made in a test, ended even if the test fails.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        for _ in 0..3 {
            let _ = Command::new(bin()).args(["umount", "-z"]).arg(&self.0).output();
        }
    }
}

fn ckptfs_mounts_at(path: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == path.to_str() && l.contains(" - fuse.ckptfs "))
        .count()
}

/// The processes whose command line is `ckptfs mount ... MOUNTPOINT` (as given).
fn mount_processes(mountpoint: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
        if args.first() == Some(&bin().as_bytes())
            && args.get(1) == Some(&b"mount".as_slice())
            && args.last() == Some(&mountpoint.to_str().unwrap().as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn mounting_on_a_ckptfs_mount_is_refused_naming_its_process() {
    if !can_fuse_mount() {
        return;
    }
    let Some((dir, image)) = demo() else { return };
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let _guard = MountGuard(mnt.clone());
    ckptfs(["mount".as_ref(), image.as_os_str(), mnt.as_os_str()]).ok();
    assert_eq!(ckptfs_mounts_at(&mnt), 1);
    let pids = mount_processes(&mnt);
    assert_eq!(pids.len(), 1, "one serving process: {pids:?}");

    // Again, by the same path and by another spelling of it.
    let relative = mnt.join("../mnt");
    for path in [&mnt, &relative] {
        let out = ckptfs(["mount".as_ref(), image.as_os_str(), path.as_os_str()]).failed();
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        let expected = format!("already mounted by ckptfs, pid {}", pids[0]);
        assert!(out.stderr.contains(&expected), "want {expected:?}: {}", out.stderr);
        assert_eq!(ckptfs_mounts_at(&mnt), 1, "a second mount was stacked");
    }
    // In the foreground too, before anything is opened.
    let out = ckptfs(["mount".as_ref(), "-f".as_ref(), image.as_os_str(), mnt.as_os_str()]).failed();
    assert!(out.stderr.contains("already mounted by ckptfs"), "{}", out.stderr);

    ckptfs(["umount".as_ref(), mnt.as_os_str()]).ok();
    assert_eq!(ckptfs_mounts_at(&mnt), 0);
}

// --- skipped tests say so -------------------------------------------------------------------

/// Run by `skips_are_visible_and_can_be_required` in a child process, with the samples
/// folder pointed somewhere empty: it must skip, visibly.
#[test]
#[ignore = "run by skips_are_visible_and_can_be_required"]
fn skip_probe() {
    let Some(_) = util::samples_dir() else { return };
    panic!("the samples folder was found where none is");
}

fn run_probe(envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "skip_probe"])
        .env("CKPTFS_SAMPLES_DIR", "/nonexistent/ckptfs-samples")
        .env_remove("CKPTFS_REQUIRE_SAMPLES")
        .env_remove("CKPTFS_SKIP_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn skips_are_visible_and_can_be_required() {
    // Without --nocapture: a skip still shows in the test output.
    let out = run_probe(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SKIPPED: skip_probe: /nonexistent/ckptfs-samples is absent"),
        "no visible skip in: {stderr}"
    );
    // And is collected where a summary is wanted.
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = run_probe(&[("CKPTFS_SKIP_LOG", log.path().to_str().unwrap())]);
    assert!(out.status.success());
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logged.contains("skip_probe: /nonexistent/ckptfs-samples is absent"),
        "{logged:?}"
    );
    // Required, it fails.
    let out = run_probe(&[("CKPTFS_REQUIRE_SAMPLES", "1")]);
    assert!(!out.status.success(), "a required samples folder that is absent passed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("CKPTFS_REQUIRE_SAMPLES"));
}

// --- the demo builds visibly and the README says where the binary is ------------------------

#[test]
fn the_demo_shows_its_build_and_the_readme_says_how_to_install() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = std::fs::read_to_string(root.join("scripts/demo.sh")).unwrap();
    let build: Vec<&str> = demo
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo build"))
        .collect();
    assert_eq!(build.len(), 1, "{build:?}");
    let words: Vec<&str> = build[0].split_whitespace().collect();
    assert!(
        !words
            .iter()
            .any(|w| *w == "--quiet" || *w == "-q" || w.starts_with('>')),
        "the demo's build hides its progress: {}",
        build[0]
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quick = &readme[readme.find("## Quick start").unwrap()..readme.find("## Commands").unwrap()];
    for needed in ["target/release/ckptfs", "cargo install --path .", "/usr/local/bin"] {
        assert!(quick.contains(needed), "Quick start does not say {needed:?}");
    }
}

// --- help -------------------------------------------------------------------------------------

/// The options of `ckptfs ARGS -h` without a description.
fn options_without_help(args: &[&str]) -> Vec<String> {
    let out = ckptfs(args.iter().copied().chain(["-h"])).ok().stdout_str();
    let section = &out[out.find("Options:").unwrap()..];
    section
        .lines()
        .skip(1)
        .filter(|l| l.trim_start().starts_with('-'))
        .filter(|l| {
            // `  -x, --long <V>   description`: the flag column, then two spaces or more.
            let t = l.trim_start();
            t.split_once("  ").is_none_or(|(_, d)| d.trim().is_empty())
        })
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn every_option_of_every_command_has_a_description() {
    for cmd in [
        &[][..],
        &["info"],
        &["list"],
        &["ls"],
        &["cat"],
        &["cp"],
        &["mount"],
        &["umount"],
    ] {
        let bare = options_without_help(cmd);
        assert!(
            bare.is_empty(),
            "ckptfs {} -h: no description for {bare:?}",
            cmd.join(" ")
        );
    }
}

#[test]
fn mount_help_names_every_mount_option_it_accepts() {
    // The parser's own list, from its refusal of an unknown option.
    let out = ckptfs(["mount", "-o", "surely_unknown", "/nonexistent.vhdx", "/nonexistent"]).failed();
    let known = out.stderr.split("ckptfs knows ").nth(1).expect(&out.stderr);
    let known: Vec<&str> = known.trim().trim_end_matches(')').split(", ").collect();
    assert!(known.len() >= 5, "{known:?}");
    let help = ckptfs(["mount", "--help"]).ok().stdout_str();
    let o_help = &help[help.find("-o <OPTIONS>").unwrap()..];
    let o_help = &o_help[..o_help.find("\n\n").unwrap_or(o_help.len())];
    for option in known {
        assert!(
            o_help.contains(option),
            "mount --help does not list -o {option}:\n{o_help}"
        );
    }
}

// --- one missing file, one message ---------------------------------------------------------------

#[test]
fn a_missing_file_is_the_same_one_line_from_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.vhdx");
    let m = missing.to_str().unwrap();
    let dest = dir.path().join("out");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let expected = format!("ckptfs: {m}: cannot open: No such file or directory\n");
    for args in [
        vec!["list", m],
        vec!["list", "--json", m],
        vec!["info", m],
        vec!["info", "--json", m],
        vec!["ls", m],
        vec!["cat", m, "01_current/disk.img"],
        vec!["cp", m, "01_current/disk.img", dest.to_str().unwrap()],
        vec!["mount", m, mnt.to_str().unwrap()],
    ] {
        let out = ckptfs(&args).failed();
        assert_eq!(out.stderr, expected, "ckptfs {}", args.join(" "));
    }
    // Other system errors read without Rust's "(os error N)".
    let out = ckptfs(["info", dir.path().to_str().unwrap()]).failed();
    assert!(!out.stderr.contains("os error"), "{}", out.stderr);
    assert!(out.stderr.contains("Is a directory"), "{}", out.stderr);
}

#[test]
fn a_failed_copy_is_one_line_whatever_failed() {
    let Some((dir, image)) = demo() else { return };
    let image = image.to_str().unwrap();
    let doc = "03_current/p3_Windows/Users/alice/Documents/report.docx";
    let nowhere = dir.path().join("no/such/dir/report.docx");
    // A missing source in the tree, and a destination that cannot be made.
    for (src, dest, r) in [
        ("03_current/p3_Windows/nosuch", dir.path().join("x"), "-R"),
        (doc, nowhere.clone(), "-R"),
        ("03_current/p3_Windows/Users", nowhere, "-r"),
    ] {
        let out = ckptfs(["cp", r, image, src, dest.to_str().unwrap()]).failed();
        assert_eq!(out.stderr.lines().count(), 1, "cp {src}: {}", out.stderr);
        assert!(!out.stderr.contains("os error"), "{}", out.stderr);
    }
}

// --- directory facts ------------------------------------------------------------------------------

/// `ckptfs ls -l IMAGE DIR` as (name → (links, size, mtime)).
fn ls_l(image: &Path, dir: &str) -> std::collections::BTreeMap<String, (u64, u64, String)> {
    let out = ckptfs(["ls", "-l", image.to_str().unwrap(), dir]).ok().stdout_str();
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f[6..].join(" ");
            (name, (f[1].parse().unwrap(), f[4].parse().unwrap(), f[5].to_string()))
        })
        .collect()
}

#[test]
fn a_fat_root_has_the_newest_time_its_entries_record() {
    let Some((_dir, image)) = demo() else { return };
    for ckpt in ["01_2026-11-20_101503", "03_current"] {
        let volumes = ls_l(&image, ckpt);
        let (_, _, root_time) = &volumes["p1_SYSTEM"];
        assert_ne!(root_time, "1970-01-01T00:00:00Z", "{ckpt}/p1_SYSTEM");
        // The root holds the label SYSTEM (mkfs.fat --invariant: 2015-03-14 09:26:52)
        // and EFI, made 2026-11-19 09:00:02.
        assert_eq!(root_time, "2026-11-19T09:00:02Z", "{ckpt}/p1_SYSTEM");
        let entries = ls_l(&image, &format!("{ckpt}/p1_SYSTEM"));
        assert!(entries.values().all(|(_, _, t)| t <= root_time), "{entries:?}");
    }
}

#[test]
fn ntfs_directories_have_the_size_and_links_ntfs_3g_shows() {
    if !can_fuse_mount() || !have_tool("ntfs-3g") {
        return;
    }
    let Some((dir, image)) = demo() else { return };
    let ckpt = "03_current";
    // The NTFS volume's bytes, for ntfs-3g.
    let disk = ckptfs(["cat", image.to_str().unwrap(), &format!("{ckpt}/disk.img")])
        .ok()
        .stdout;
    let raw = dir.path().join("p3.raw");
    std::fs::write(&raw, &disk[(57 * MIB) as usize..(127 * MIB) as usize]).unwrap();
    // posix_nlink: a directory's links are 2 + its subdirectories, as on ext4 (by
    // default ntfs-3g says 1 for every directory).
    let theirs = util::ntfs3g::Ntfs3g::new(&raw, &dir.path().join("ntfs-3g"), "ro,posix_nlink");

    let mut dirs = vec![String::new()];
    let mut checked = 0;
    while let Some(rel) = dirs.pop() {
        let tree_path = if rel.is_empty() {
            format!("{ckpt}/p3_Windows")
        } else {
            format!("{ckpt}/p3_Windows/{rel}")
        };
        let host = theirs.path(&rel);
        // The directory itself, as its parent's listing shows it.
        let (parent, name) = tree_path.rsplit_once('/').unwrap();
        let ours = &ls_l(&image, parent)[name];
        let md = std::fs::metadata(&host).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (ours.0, ours.1),
            (md.nlink(), md.size()),
            "{tree_path}: links and size (ntfs-3g right)"
        );
        checked += 1;
        for e in std::fs::read_dir(&host).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                let n = e.file_name().to_string_lossy().into_owned();
                dirs.push(if rel.is_empty() { n } else { format!("{rel}/{n}") });
            }
        }
    }
    assert!(checked >= 5, "{checked} directories");
}
