//! Opening a disk file by its content: each format looks for its own signature (magic
//! bytes at the start, a VHD footer at the end), in a fixed order, and the first that
//! recognises the file opens it. Extensions are never consulted.

use std::path::Path;
use std::sync::Arc;

use super::{vhd, vhdx, vmdk, DiskFile};
use crate::io::ImageFile;
use crate::{Error, Result};

/// What a format's signature check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// The file carries this format's signature.
    Yes,
    /// It does not; the reason names what was looked for and where.
    No(String),
}

/// One format ckptfs reads: its signature check and its opener.
struct Format {
    detect: fn(&ImageFile) -> std::io::Result<Detected>,
    open: fn(ImageFile) -> Result<Arc<dyn DiskFile>>,
}

/// Most specific signature first: a VHDX starts with "vhdxfile"; a VMDK with "KDMV",
/// "COWD", the SESparse magic or a "# Disk DescriptorFile" text line (a small file); a
/// VHD's footer can sit at the end of any raw disk, so it is tried last.
const FORMATS: &[Format] = &[
    Format {
        detect: vhdx::detect,
        open: vhdx::open_disk_file,
    },
    Format {
        detect: vmdk::detect,
        open: vmdk::open_disk_file,
    },
    Format {
        detect: vhd::detect,
        open: vhd::open_disk_file,
    },
];

/// Open `path` read-only as whichever format its content shows.
pub fn open(path: &Path) -> Result<Arc<dyn DiskFile>> {
    let file = ImageFile::open(path)?;
    let mut reasons = Vec::new();
    for format in FORMATS {
        match (format.detect)(&file) {
            Ok(Detected::Yes) => return (format.open)(file),
            Ok(Detected::No(why)) => reasons.push(why),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    what: "cannot read its signature".into(),
                    source,
                })
            }
        }
    }
    Err(Error::UnknownFormat {
        path: path.to_path_buf(),
        reasons,
    })
}
