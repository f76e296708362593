//! Legacy VHD files (Microsoft Virtual Hard Disk Image Format Specification): fixed,
//! dynamic and differencing disks as Virtual PC, Virtual Server, Hyper-V 2008–2012,
//! Disk2vhd and Azure write them.
//!
//! SKELETON: only the signature check is here yet; the reader is being written.

mod error;

use std::sync::Arc;

pub use error::VhdError;

use super::probe::Detected;
use super::DiskFile;
use crate::io::ImageFile;
use crate::{Error, Result};

/// The footer's cookie, at the end of every VHD and at offset 0 of dynamic and
/// differencing ones.
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
pub const FOOTER_SIZE: u64 = 512;

/// A VHD has its footer in the last 512 bytes (511 in files from before Virtual PC
/// 2004), and dynamic and differencing disks a copy at offset 0.
pub fn detect(file: &ImageFile) -> std::io::Result<Detected> {
    let len = file.len();
    let mut at_end = [0u8; 8];
    let mut places = vec![0u64];
    places.extend(
        [FOOTER_SIZE, FOOTER_SIZE - 1]
            .iter()
            .filter_map(|n| len.checked_sub(*n)),
    );
    for at in places {
        if file.read_up_to(at, &mut at_end)? == 8 && &at_end == FOOTER_COOKIE {
            return Ok(Detected::Yes);
        }
    }
    Ok(Detected::No(
        "not a VHD file: no \"conectix\" footer at its end or copy at offset 0".into(),
    ))
}

pub fn open_disk_file(file: ImageFile) -> Result<Arc<dyn DiskFile>> {
    Err(Error::vhd(
        file.path(),
        VhdError::Unsupported("the VHD reader is not written yet".into()),
    ))
}
