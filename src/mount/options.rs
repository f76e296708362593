//! `-o` mount options, as users of other FUSE tools write them, turned into fuser's
//! session configuration.

use std::path::Path;

use fuser::{Config, MountOption, SessionACL};

use crate::{Error, Result};

/// The filesystem type shown by `mount` and `/proc/self/mountinfo` is `fuse.<SUBTYPE>`.
pub const SUBTYPE: &str = "ckptfs";

const KNOWN: &str =
    "ro, allow_other, allow_root, default_permissions, direct_io, nosplice, fsname=NAME, noexec, nosuid, nodev, noatime";

/// `mount --help` for `-o`: every option in KNOWN (a test keeps the two in step).
pub const HELP: &str = "Mount options, comma-separated: allow_other (other users may read the mount), \
allow_root (root may too), default_permissions (the kernel checks the guest's owners and modes), \
direct_io (reads of guest files bypass the page cache), nosplice (read replies are copied, never \
spliced), fsname=NAME (the source `mount` and `df` show; the image path by default), noexec; \
ro, nosuid, nodev and noatime are always in force and accepted";

/// What the user asked for with `-o`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountOptions {
    pub acl: SessionACL,
    /// Let the kernel check the guest's owners and permission bits.
    pub default_permissions: bool,
    pub noexec: bool,
    /// Source shown by `mount` and `df`; the image path by default.
    pub fsname: Option<String>,
    /// Reads bypass the kernel's page cache for guest files (FOPEN_DIRECT_IO).
    pub direct_io: bool,
    /// Every read reply is copied through a buffer, never spliced.
    pub nosplice: bool,
}

impl MountOptions {
    /// Parse `-o` arguments, each a comma-separated list.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = MountOptions::default();
        let usage = |msg: String| Err(Error::Usage(msg));
        for opt in args.iter().flat_map(|a| a.split(',')).filter(|s| !s.is_empty()) {
            match opt {
                // Always read-only; "ro" is accepted for scripts that say so.
                "ro" => {}
                "rw" => return usage("-o rw: ckptfs mounts are always read-only".into()),
                "allow_other" | "allow_root" => {
                    let acl = if opt == "allow_other" {
                        SessionACL::All
                    } else {
                        SessionACL::RootAndOwner
                    };
                    if o.acl != SessionACL::Owner && o.acl != acl {
                        return usage("-o allow_other and allow_root exclude each other".into());
                    }
                    o.acl = acl;
                }
                "default_permissions" => o.default_permissions = true,
                "noexec" => o.noexec = true,
                "direct_io" => o.direct_io = true,
                "nosplice" => o.nosplice = true,
                // Always in force (a guest's setuid binaries and device nodes must not
                // act on this machine), accepted for scripts that say so.
                "nosuid" | "nodev" => {}
                // A read-only mount never updates access times.
                "noatime" => {}
                _ => match opt.strip_prefix("fsname=") {
                    Some(name) if !name.is_empty() => o.fsname = Some(name.to_string()),
                    _ => return usage(format!("-o {opt}: unknown mount option (ckptfs knows {KNOWN})")),
                },
            }
        }
        Ok(o)
    }

    /// The fuser configuration for these options.
    pub fn config(&self, image: &Path, threads: usize) -> Config {
        let fsname = self.fsname.clone().unwrap_or_else(|| image.display().to_string());
        let mut mount_options = vec![
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::FSName(option_safe(&fsname)),
            // As a kernel option rather than MountOption::Subtype, which fuser passes
            // only to fusermount3: this way a mount made as root is `fuse.ckptfs` too.
            MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
        ];
        if self.default_permissions {
            mount_options.push(MountOption::DefaultPermissions);
        }
        if self.noexec {
            mount_options.push(MountOption::NoExec);
        }
        let mut config = Config::default();
        config.mount_options = mount_options;
        config.acl = self.acl;
        config.n_threads = Some(threads.max(1));
        // One /dev/fuse descriptor per thread, so the threads do not contend for one
        // queue. Cloning opens /dev/fuse, which mount() has checked this user may.
        config.clone_fd = true;
        config
    }
}

/// A value that survives fusermount3's comma-separated option list.
fn option_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ',' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// A size such as `64M`, `512K`, `1G` or a plain number of bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("{s:?}: expected a size such as 64M, 512K or 1G")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?}: expected a size such as 64M, 512K or 1G"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<MountOptions> {
        MountOptions::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn option_lists_as_fuse_tools_take_them() {
        let o = parse(&["ro,allow_other", "default_permissions"]).unwrap();
        assert_eq!(o.acl, SessionACL::All);
        assert!(o.default_permissions);
        assert_eq!(parse(&["allow_root"]).unwrap().acl, SessionACL::RootAndOwner);
        assert_eq!(parse(&["fsname=vm,noexec"]).unwrap().fsname.as_deref(), Some("vm"));
        assert!(parse(&["ro,direct_io"]).unwrap().direct_io);
        assert!(!parse(&["ro"]).unwrap().direct_io);
        assert!(parse(&["nosplice"]).unwrap().nosplice);
        assert_eq!(parse(&[]).unwrap(), MountOptions::default());
    }

    #[test]
    fn the_help_names_every_option_the_parser_knows() {
        for opt in KNOWN.split(", ") {
            assert!(HELP.contains(opt), "-o {opt} is not in the help");
            let example = opt.replace("NAME", "x");
            assert!(
                parse(&[example.as_str()]).is_ok(),
                "-o {opt} is in the help but refused"
            );
        }
    }

    #[test]
    fn writable_conflicting_and_unknown_options_are_refused() {
        assert!(parse(&["rw"]).unwrap_err().to_string().contains("read-only"));
        assert!(parse(&["allow_other,allow_root"]).is_err());
        let e = parse(&["bogus"]).unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("allow_other"), "{e}");
    }

    #[test]
    fn the_mount_is_always_read_only_nosuid_nodev_and_typed() {
        let c = MountOptions::default().config(Path::new("/vms/a,b.vhdx"), 4);
        for o in [MountOption::RO, MountOption::NoSuid, MountOption::NoDev] {
            assert!(c.mount_options.contains(&o), "{o:?}");
        }
        assert!(c.mount_options.contains(&MountOption::FSName("/vms/a_b.vhdx".into())));
        assert!(c.mount_options.contains(&MountOption::CUSTOM("subtype=ckptfs".into())));
        assert_eq!(c.n_threads, Some(4));
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("6M"), Ok(6 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
    }
}
