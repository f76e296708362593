//! The hard disk footer: 512 bytes at the end of every VHD (511 in files from before
//! Virtual PC 2004), with a copy at offset 0 of dynamic and differencing disks.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::fields::{code_text, Fields, VhdFields};
use super::VhdError;

pub const FOOTER_SIZE: usize = 512;
/// Footers written before Virtual PC 2004 lack the last reserved byte.
pub const OLD_FOOTER_SIZE: usize = 511;
pub const COOKIE: &[u8; 8] = b"conectix";
pub const CHECKSUM_AT: usize = 64;
/// The footer's data offset of a fixed disk (the specification says 0xFFFFFFFF; both
/// occur and neither is read for a fixed disk).
pub const NO_DATA_OFFSET: u64 = u64::MAX;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00:00 UTC.
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// The largest CHS geometry: qemu reads such a disk by its current size.
pub const MAX_GEOMETRY: (u16, u8, u8) = (65535, 16, 255);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    Fixed,
    Dynamic,
    Differencing,
}

impl DiskType {
    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
}

impl Geometry {
    /// Cylinders × heads × sectors × 512.
    pub fn size(&self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors_per_track) * 512
    }

    pub fn is_max(&self) -> bool {
        (self.cylinders, self.heads, self.sectors_per_track) == MAX_GEOMETRY
    }
}

/// Which of the footer's two sizes the disk has (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// The current size field (every creator but "vpc " and "qemu").
    CurrentSize,
    /// Virtual PC and old qemu: the guest saw the CHS geometry's size.
    Geometry,
    /// "vpc "/"qemu" with the maximum geometry (65535/16/255): the current size, as the
    /// geometry would cut the disk.
    CurrentSizeMaxGeometry,
}

impl SizeRule {
    pub fn name(self) -> &'static str {
        match self {
            SizeRule::CurrentSize => "current_size",
            SizeRule::Geometry => "geometry",
            SizeRule::CurrentSizeMaxGeometry => "current_size_max_geometry",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SizeRule::CurrentSize => "the footer's current size",
            SizeRule::Geometry => "the CHS geometry (Virtual PC and old qemu size disks by it)",
            SizeRule::CurrentSizeMaxGeometry => "the footer's current size (the geometry is the maximum, 65535/16/255)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    pub features: u32,
    pub version: u32,
    pub data_offset: u64,
    /// Seconds since 2000-01-01 00:00:00 UTC.
    pub time_stamp: u32,
    pub creator_app: [u8; 4],
    pub creator_version: u32,
    pub creator_host: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    pub geometry: Geometry,
    pub disk_type: DiskType,
    pub checksum: u32,
    pub unique_id: Uuid,
    pub saved_state: u8,
}

/// Parse a footer from its 512 (or 511) bytes read at `offset` and check its cookie,
/// checksum, version and disk type.
pub fn parse_footer(b: &[u8], offset: u64) -> Result<Footer, VhdError> {
    const S: &str = "footer";
    if b.len() < OLD_FOOTER_SIZE {
        return Err(VhdError::Truncated {
            structure: S,
            offset,
            len: FOOTER_SIZE as u64,
            file_len: offset.saturating_add(b.len() as u64),
        });
    }
    let b = &b[..b.len().min(FOOTER_SIZE)];
    let f = Fields::new(b, S, offset);
    f.check_cookie_and_checksum(COOKIE, CHECKSUM_AT)?;
    let version = f.be32(12)?;
    if version >> 16 != 1 {
        return Err(VhdError::Unsupported(format!(
            "footer at offset {offset:#x}: format version {version:#010x} (only 1.x is read)"
        )));
    }
    let disk_type = match f.be32(60)? {
        2 => DiskType::Fixed,
        3 => DiskType::Dynamic,
        4 => DiskType::Differencing,
        t => {
            return Err(VhdError::corrupt(
                S,
                offset,
                format!("disk type {t} is none of fixed (2), dynamic (3), differencing (4)"),
            ))
        }
    };
    Ok(Footer {
        features: f.be32(8)?,
        version,
        data_offset: f.be64(16)?,
        time_stamp: f.be32(24)?,
        creator_app: f.array(28)?,
        creator_version: f.be32(32)?,
        creator_host: f.array(36)?,
        original_size: f.be64(40)?,
        current_size: f.be64(48)?,
        geometry: Geometry {
            cylinders: f.be16(56)?,
            heads: f.u8(58)?,
            sectors_per_track: f.u8(59)?,
        },
        disk_type,
        checksum: f.be32(CHECKSUM_AT)?,
        unique_id: f.uuid(68)?,
        saved_state: f.u8(84)?,
    })
}

impl Footer {
    /// The virtual disk size and the rule that chose it, rounded down to whole sectors
    /// as qemu does. See the module documentation.
    pub fn disk_size(&self) -> (u64, SizeRule) {
        let by_geometry = matches!(&self.creator_app, b"vpc " | b"qemu");
        let (size, rule) = if !by_geometry {
            (self.current_size, SizeRule::CurrentSize)
        } else if self.geometry.is_max() {
            (self.current_size, SizeRule::CurrentSizeMaxGeometry)
        } else {
            (self.geometry.size(), SizeRule::Geometry)
        };
        (size & !511, rule)
    }

    pub fn creator_app_text(&self) -> String {
        code_text(self.creator_app)
    }

    pub fn creator_host_text(&self) -> String {
        code_text(self.creator_host)
    }

    /// "10.0" from 0x000A0000.
    pub fn creator_version_text(&self) -> String {
        format!("{}.{}", self.creator_version >> 16, self.creator_version & 0xFFFF)
    }
}

/// A VHD time stamp (seconds since 2000-01-01 UTC) as a system time.
pub fn vhd_time(seconds: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(VHD_EPOCH_UNIX + u64::from(seconds))
}

/// A system time as VHD seconds; `None` before 2000 or after 2136.
pub fn to_vhd_seconds(t: SystemTime) -> Option<u32> {
    let unix = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    u32::try_from(unix.checked_sub(VHD_EPOCH_UNIX)?).ok()
}

/// RFC 3339 text of a VHD time stamp.
pub fn vhd_time_text(seconds: u32) -> String {
    humantime::format_rfc3339_seconds(vhd_time(seconds)).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::vhd::fields::checksum;

    /// A valid footer: creator, type (2/3/4), current size, geometry, data offset.
    pub fn footer_bytes(creator: &[u8; 4], disk_type: u32, size: u64, chs: (u16, u8, u8), data_offset: u64) -> Vec<u8> {
        let mut b = vec![0u8; FOOTER_SIZE];
        b[..8].copy_from_slice(COOKIE);
        b[8..12].copy_from_slice(&2u32.to_be_bytes());
        b[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        b[16..24].copy_from_slice(&data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&0x1e56_f9c4u32.to_be_bytes());
        b[28..32].copy_from_slice(creator);
        b[32..36].copy_from_slice(&0x000A_0000u32.to_be_bytes());
        b[36..40].copy_from_slice(b"Wi2k");
        b[40..48].copy_from_slice(&size.to_be_bytes());
        b[48..56].copy_from_slice(&size.to_be_bytes());
        b[56..58].copy_from_slice(&chs.0.to_be_bytes());
        b[58] = chs.1;
        b[59] = chs.2;
        b[60..64].copy_from_slice(&disk_type.to_be_bytes());
        b[68..84].copy_from_slice(&[0x6a, 0x1b, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1]);
        fix(&mut b);
        b
    }

    pub fn fix(b: &mut [u8]) {
        let c = checksum(b, CHECKSUM_AT);
        b[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn parses_a_footer_and_its_fields() {
        let b = footer_bytes(b"win ", 3, 10 << 20, (301, 4, 17), 512);
        let f = parse_footer(&b, 0x1000).unwrap();
        assert_eq!(f.disk_type, DiskType::Dynamic);
        assert_eq!(f.data_offset, 512);
        assert_eq!(f.current_size, 10 << 20);
        assert_eq!(f.creator_app_text(), "win ");
        assert_eq!(f.creator_version_text(), "10.0");
        assert_eq!(f.unique_id.to_string(), "6a1b0000-0000-4000-8000-000000000001");
        assert_eq!(f.disk_size(), (10 << 20, SizeRule::CurrentSize));
        // The 511-byte footer of old files: the same sum without the last reserved byte.
        assert_eq!(parse_footer(&b[..511], 0).unwrap(), f);
    }

    #[test]
    fn checks_cookie_checksum_version_and_type() {
        let good = footer_bytes(b"win ", 2, 1 << 20, (0, 0, 0), u64::MAX);
        let mut b = good.clone();
        b[100] = 1;
        let e = parse_footer(&b, 0x200).unwrap_err();
        assert!(matches!(e, VhdError::Checksum { offset: 0x200, .. }), "{e}");
        let mut b = good.clone();
        b[0] = b'C';
        assert!(matches!(parse_footer(&b, 0), Err(VhdError::Cookie { .. })));
        let mut b = good.clone();
        b[12..16].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        fix(&mut b);
        assert!(matches!(parse_footer(&b, 0), Err(VhdError::Unsupported(_))));
        let mut b = good.clone();
        b[60..64].copy_from_slice(&5u32.to_be_bytes());
        fix(&mut b);
        assert!(parse_footer(&b, 0).unwrap_err().to_string().contains("disk type 5"));
        assert!(matches!(parse_footer(&good[..510], 0), Err(VhdError::Truncated { .. })));
    }

    #[test]
    fn size_rule_follows_the_creator_and_the_geometry() {
        let size = 0x1f_c000_0000;
        let vpc = parse_footer(&footer_bytes(b"vpc ", 3, size, (65278, 16, 255), 512), 0).unwrap();
        assert_eq!(vpc.disk_size(), (0x1f_bfe0_4000, SizeRule::Geometry));
        let qemu = parse_footer(&footer_bytes(b"qemu", 3, size, (65278, 16, 255), 512), 0).unwrap();
        assert_eq!(qemu.disk_size().1, SizeRule::Geometry);
        let win = parse_footer(&footer_bytes(b"win ", 3, size, (65278, 16, 255), 512), 0).unwrap();
        assert_eq!(win.disk_size(), (size, SizeRule::CurrentSize));
        let max = parse_footer(&footer_bytes(b"vpc ", 3, size + 7, (65535, 16, 255), 512), 0).unwrap();
        assert_eq!(max.disk_size(), (size, SizeRule::CurrentSizeMaxGeometry));
    }

    #[test]
    fn time_stamps_count_from_2000() {
        assert_eq!(vhd_time_text(0), "2000-01-01T00:00:00Z");
        assert_eq!(to_vhd_seconds(vhd_time(0x1e56_f9c4)), Some(0x1e56_f9c4));
        assert_eq!(to_vhd_seconds(SystemTime::UNIX_EPOCH), None);
    }
}
