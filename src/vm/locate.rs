//! What the user pointed at: a VM configuration file, a VM's folder, or a disk file.
//! Configuration files are recognised by content (each hypervisor's reader says
//! whether a file is one of its own), never by extension.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{assemble, hyperv, vmware, Config, ConfigError, Vm};
use crate::chain::DiscoverOptions;
use crate::{Error, Result};

/// Which VM to take from a folder holding several.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// The VM's name or its configuration file's name (`--vm`).
    pub vm: Option<String>,
}

/// Bytes read to tell a configuration from a disk image.
const SNIFF_BYTES: usize = 64 << 10;

/// Open `path` as a VM: a configuration file, or a folder with one VM's configuration.
/// `Ok(None)`: it is neither (a disk file, shown as its own checkpoint tree).
pub fn open(path: &Path, choice: &Choice, opts: &DiscoverOptions) -> Result<Option<Vm>> {
    let config = if path.is_dir() {
        Some(config_in_folder(path, choice)?)
    } else {
        read_config(path)?
    };
    Ok(config.map(|c| assemble(c, opts)))
}

/// The configuration of the file at `path`, if it is one.
fn read_config(path: &Path) -> Result<Option<Config>> {
    let head = sniff(path)?;
    match vmware::read_config(path, &head)? {
        Some(c) => Ok(Some(c)),
        None => hyperv::read_config(path, &head),
    }
}

/// The one VM in `dir` (or the one `choice` names).
fn config_in_folder(dir: &Path, choice: &Choice) -> Result<Config> {
    let mut configs: Vec<Config> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for candidate in vmware::configs_in(dir).into_iter().chain(hyperv::configs_in(dir)) {
        match read_config(&candidate) {
            Ok(Some(c)) => configs.push(c),
            Ok(None) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if let Some(wanted) = &choice.vm {
        let matches = |c: &Config| {
            c.name == *wanted
                || c.path.file_name().is_some_and(|n| n.to_string_lossy() == *wanted)
                || c.path.file_stem().is_some_and(|n| n.to_string_lossy() == *wanted)
        };
        configs.retain(matches);
    }
    match configs.len() {
        1 => Ok(configs.pop().expect("one")),
        0 => {
            let mut msg = match &choice.vm {
                Some(v) => format!("{}: no VM named {v:?} here", dir.display()),
                None => format!(
                    "{}: no VM configuration here (.vmx, .vmcx, .xml, or a Virtual Machines folder); give a configuration file or a disk file",
                    dir.display()
                ),
            };
            for p in problems {
                msg.push_str(&format!("\n  {p}"));
            }
            Err(Error::Usage(msg))
        }
        _ => Err(Error::Usage(format!(
            "{}: several VMs here, pick one with --vm NAME: {}",
            dir.display(),
            configs
                .iter()
                .map(|c| format!(
                    "{:?} ({})",
                    c.name,
                    c.path.file_name().unwrap_or_default().to_string_lossy()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The first bytes of `path`.
pub(super) fn sniff(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::input(path, source);
    let mut head = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(head)
}

/// The whole of a configuration file, refusing one too large to be one.
pub(super) fn read_whole(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|source| Error::input(path, source))?
        .len();
    if len > limit {
        return Err(Error::VmConfig {
            path: path.to_path_buf(),
            source: ConfigError::NotAConfig(format!(
                "{len} bytes is too large for a configuration file (limit {limit})"
            )),
        });
    }
    std::fs::read(path).map_err(|source| Error::input(path, source))
}

/// Where a file a configuration names is: as written if it exists (relative to the
/// VM's folder), else a file of that name in the VM's folder (a VM copied from another
/// host keeps absolute paths of that host, often Windows ones).
pub fn resolve_named_file(vm_dir: &Path, named: &str) -> PathBuf {
    let is_windows_absolute = named.starts_with('\\') || named.as_bytes().get(1) == Some(&b':');
    let as_written = if is_windows_absolute {
        None
    } else {
        Some(vm_dir.join(named))
    };
    if let Some(p) = as_written.as_ref().filter(|p| p.is_file()) {
        return p.clone();
    }
    let name = named.rsplit(['\\', '/']).next().unwrap_or(named);
    let beside = vm_dir.join(name);
    if beside.is_file() || as_written.is_none() {
        return beside;
    }
    as_written.expect("set when not Windows-absolute")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_resolve_as_written_then_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/a.vmdk"), b"").unwrap();
        std::fs::write(d.join("b.vmdk"), b"").unwrap();
        assert_eq!(resolve_named_file(d, "sub/a.vmdk"), d.join("sub/a.vmdk"));
        assert_eq!(resolve_named_file(d, r"C:\VMs\x\b.vmdk"), d.join("b.vmdk"));
        assert_eq!(resolve_named_file(d, "/vmfs/volumes/ds1/x/b.vmdk"), d.join("b.vmdk"));
        // Not found anywhere: the path as written, for the message.
        assert_eq!(resolve_named_file(d, "gone/c.vmdk"), d.join("gone/c.vmdk"));
        assert_eq!(resolve_named_file(d, r"D:\c.vmdk"), d.join("c.vmdk"));
    }
}
