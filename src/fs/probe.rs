//! What a volume holds, from its first sectors: a filesystem ckptfs reads, something it
//! recognises but does not read (so `list` can say why a partition is not shown), or
//! nothing it knows.

use super::ext4;
use crate::bytes::{le_u16, le_u32};
use crate::io::ReadAt;
use crate::Result;

/// Filesystems ckptfs reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ntfs,
    Fat,
    Ext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Supported(FsType),
    /// Recognised, not read: what it is.
    Unsupported(&'static str),
    Unknown,
}

/// Bytes read to probe: enough for the ext superblock (1024..2048) and a swap header
/// at the end of the first 4 KiB page.
const PROBE_LEN: u64 = 8192;

pub fn probe(volume: &dyn ReadAt) -> Result<Probe> {
    let len = PROBE_LEN.min(volume.size()) as usize;
    let mut b = vec![0u8; PROBE_LEN as usize];
    volume.read_at(0, &mut b[..len])?;
    Ok(probe_bytes(&b))
}

/// Probe the first 8 KiB of a volume (zero-padded when the volume is smaller).
pub fn probe_bytes(b: &[u8]) -> Probe {
    let at = |off: usize, sig: &[u8]| b.get(off..off + sig.len()) == Some(sig);
    if at(3, b"NTFS    ") {
        return Probe::Supported(FsType::Ntfs);
    }
    if at(3, b"EXFAT   ") {
        return Probe::Unsupported("exFAT (not supported)");
    }
    if at(3, b"-FVE-FS-") {
        return Probe::Unsupported("BitLocker-encrypted volume");
    }
    if at(3, b"ReFS") {
        return Probe::Unsupported("ReFS (not supported)");
    }
    if at(0, b"LUKS\xba\xbe") {
        return Probe::Unsupported("LUKS-encrypted volume");
    }
    if at(0, b"XFSB") {
        return Probe::Unsupported("XFS (not supported)");
    }
    if at(512, b"LABELONE") && at(536, b"LVM2") {
        return Probe::Unsupported("LVM physical volume (not supported)");
    }
    if at(4086, b"SWAPSPACE2") || at(4086, b"SWAP-SPACE") {
        return Probe::Unsupported("Linux swap");
    }
    if b.len() >= 2048 && ext4::is_ext(&b[1024..2048]) {
        return Probe::Supported(FsType::Ext);
    }
    if is_fat_boot_sector(b) {
        return Probe::Supported(FsType::Fat);
    }
    Probe::Unknown
}

/// A FAT BIOS parameter block: a jump instruction and plausible geometry. The "FAT"
/// type strings are informational only (mkfs tools write them, the spec does not
/// require them), so the geometry decides.
fn is_fat_boot_sector(b: &[u8]) -> bool {
    if b.len() < 512 || !(b[0] == 0xEB || b[0] == 0xE9) || b[510..512] != [0x55, 0xAA] {
        return false;
    }
    let bytes_per_sector = le_u16(b, 11);
    let sectors_per_cluster = b[13];
    let reserved = le_u16(b, 14);
    let fats = b[16];
    let total = if le_u16(b, 19) != 0 {
        u32::from(le_u16(b, 19))
    } else {
        le_u32(b, 32)
    };
    matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && sectors_per_cluster.is_power_of_two()
        && reserved >= 1
        && (1..=4).contains(&fats)
        && total > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Vec<u8> {
        vec![0u8; PROBE_LEN as usize]
    }

    fn fat_bpb() -> Vec<u8> {
        let mut b = zeroed();
        b[0] = 0xEB;
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 4;
        b[14..16].copy_from_slice(&4u16.to_le_bytes());
        b[16] = 2;
        b[19..21].copy_from_slice(&20000u16.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn recognises_each_signature() {
        let mut ntfs = zeroed();
        ntfs[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(probe_bytes(&ntfs), Probe::Supported(FsType::Ntfs));
        let mut ext = zeroed();
        ext[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        assert_eq!(probe_bytes(&ext), Probe::Supported(FsType::Ext));
        assert_eq!(probe_bytes(&fat_bpb()), Probe::Supported(FsType::Fat));
        let mut swap = zeroed();
        swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(probe_bytes(&swap), Probe::Unsupported("Linux swap"));
        let mut bitlocker = zeroed();
        bitlocker[3..11].copy_from_slice(b"-FVE-FS-");
        assert!(matches!(probe_bytes(&bitlocker), Probe::Unsupported(s) if s.contains("BitLocker")));
        let mut exfat = fat_bpb();
        exfat[3..11].copy_from_slice(b"EXFAT   ");
        assert!(matches!(probe_bytes(&exfat), Probe::Unsupported(s) if s.contains("exFAT")));
        assert_eq!(probe_bytes(&zeroed()), Probe::Unknown);
    }

    #[test]
    fn a_jump_without_a_sane_bpb_is_not_fat() {
        let mut b = fat_bpb();
        b[13] = 3; // sectors per cluster must be a power of two
        assert_eq!(probe_bytes(&b), Probe::Unknown);
        let mut b = fat_bpb();
        b[16] = 0; // no FAT
        assert_eq!(probe_bytes(&b), Probe::Unknown);
    }
}
