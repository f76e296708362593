//! Partition type codes: the MBR type byte and the GPT type GUID, what they are called,
//! and which of them cannot hold a filesystem, so that filesystem detection does not
//! probe (and misreport) swap space, LVM or RAID members.

use uuid::{uuid, Uuid};

/// What the table says a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Mbr {
        type_byte: u8,
    },
    Gpt {
        type_guid: Uuid,
        unique_guid: Uuid,
        attributes: u64,
    },
}

/// What keeps a type from holding a filesystem ckptfs reads.
#[derive(Clone, Copy)]
enum Content {
    /// A filesystem, or possibly one: detection decides.
    Filesystem,
    /// Not a filesystem; the reason is shown to the user.
    Not(&'static str),
}
use Content::{Filesystem, Not};

const EXTENDED: Content = Not("extended partition (a container of logical partitions)");
const SWAP: Content = Not("Linux swap");
const LVM: Content = Not("LVM physical volume (not supported)");
const RAID: Content = Not("Linux RAID member (not supported)");
const LDM: Content = Not("Windows dynamic disk (LDM, not supported)");

/// MBR type bytes. The names follow fdisk's, shortened where fdisk lists history.
const MBR_TYPES: &[(u8, &str, Content)] = &[
    (0x01, "FAT12", Filesystem),
    (0x04, "FAT16 <32M", Filesystem),
    (0x05, "extended", EXTENDED),
    (0x06, "FAT16", Filesystem),
    (0x07, "NTFS/exFAT/HPFS", Filesystem),
    (0x0b, "FAT32", Filesystem),
    (0x0c, "FAT32 LBA", Filesystem),
    (0x0e, "FAT16 LBA", Filesystem),
    (0x0f, "extended LBA", EXTENDED),
    (0x11, "hidden FAT12", Filesystem),
    (0x12, "OEM diagnostics (FAT)", Filesystem),
    (0x14, "hidden FAT16 <32M", Filesystem),
    (0x16, "hidden FAT16", Filesystem),
    (0x17, "hidden NTFS/HPFS", Filesystem),
    (0x1b, "hidden FAT32", Filesystem),
    (0x1c, "hidden FAT32 LBA", Filesystem),
    (0x1e, "hidden FAT16 LBA", Filesystem),
    (0x27, "Windows recovery (hidden NTFS)", Filesystem),
    (0x42, "Windows dynamic disk (LDM)", LDM),
    (0x82, "Linux swap", SWAP),
    (0x83, "Linux", Filesystem),
    (0x85, "Linux extended", EXTENDED),
    (0x8e, "Linux LVM", LVM),
    (0xa5, "FreeBSD", Not("BSD slice (holds a disklabel, not supported)")),
    (0xa6, "OpenBSD", Not("BSD slice (holds a disklabel, not supported)")),
    (0xa9, "NetBSD", Not("BSD slice (holds a disklabel, not supported)")),
    (0xaf, "HFS/HFS+", Filesystem),
    (0xbf, "Solaris", Filesystem),
    (0xda, "non-FS data", Not("non-filesystem data")),
    (0xde, "Dell utility (FAT)", Filesystem),
    (0xee, "GPT protective", Not("GPT protective entry (the disk has a GPT)")),
    (0xef, "EFI system (FAT)", Filesystem),
    (0xfb, "VMware VMFS", Filesystem),
    (0xfc, "VMware VMKCORE", Not("VMware core dump area")),
    (0xfd, "Linux RAID autodetect", RAID),
];

const GPT_TYPES: &[(Uuid, &str, Content)] = &[
    (uuid!("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), "EFI system", Filesystem),
    (
        uuid!("e3c9e316-0b5c-4db8-817d-f92df00215ae"),
        "Microsoft reserved",
        Not("Microsoft reserved partition (holds no filesystem)"),
    ),
    (
        uuid!("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"),
        "Microsoft basic data",
        Filesystem,
    ),
    (
        uuid!("de94bba4-06d1-4d40-a16a-bfd50179d6ac"),
        "Windows recovery",
        Filesystem,
    ),
    (
        uuid!("5808c8aa-7e8f-42e0-85d2-e1e90434cfb3"),
        "Windows LDM metadata",
        LDM,
    ),
    (uuid!("af9b60a0-1431-4f62-bc68-3311714a69ad"), "Windows LDM data", LDM),
    (
        uuid!("e75caf8f-f680-4cee-afa3-b001e56efc2d"),
        "Windows Storage Spaces",
        Not("Storage Spaces member (not supported)"),
    ),
    (
        uuid!("0fc63daf-8483-4772-8e79-3d69d8477de4"),
        "Linux filesystem",
        Filesystem,
    ),
    (uuid!("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"), "Linux swap", SWAP),
    (uuid!("e6d6d379-f507-44c2-a23c-238f2a3df928"), "Linux LVM", LVM),
    (uuid!("a19d880f-05fc-4d3b-a006-743f0f84911e"), "Linux RAID", RAID),
    (uuid!("933ac7e1-2eb4-4f13-b844-0e14e2aef915"), "Linux /home", Filesystem),
    (uuid!("3b8f8425-20e0-4f3b-907f-1a25a76f98e8"), "Linux /srv", Filesystem),
    (
        uuid!("44479540-f297-41b2-9af7-d131d5f0458a"),
        "Linux root (x86)",
        Filesystem,
    ),
    (
        uuid!("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
        "Linux root (x86-64)",
        Filesystem,
    ),
    (
        uuid!("69dad710-2ce4-4e3c-b16c-21a1d49abed3"),
        "Linux root (ARM)",
        Filesystem,
    ),
    (
        uuid!("b921b045-1df0-41c3-af44-4c6f280d3fae"),
        "Linux root (ARM64)",
        Filesystem,
    ),
    (
        uuid!("bc13c2ff-59e6-4262-a352-b275fd6f7172"),
        "Linux extended boot",
        Filesystem,
    ),
    (
        uuid!("773f91ef-66d4-49b5-bd83-d683bf40ad16"),
        "Linux user's home",
        Filesystem,
    ),
    (
        uuid!("8da63339-0007-60c0-c436-083ac8230908"),
        "Linux reserved",
        Not("Linux reserved partition (holds no filesystem)"),
    ),
    (
        uuid!("ca7d7ccb-63ed-4c53-861c-1742536059cc"),
        "Linux LUKS",
        Not("LUKS encrypted volume (not supported)"),
    ),
    (
        uuid!("7ffec5c9-2d00-49b7-8941-3ea10a5586b7"),
        "Linux dm-crypt",
        Not("dm-crypt encrypted volume (not supported)"),
    ),
    (
        uuid!("21686148-6449-6e6f-744e-656564454649"),
        "BIOS boot",
        Not("BIOS boot partition (holds boot code, no filesystem)"),
    ),
    (
        uuid!("83bd6b9d-7f41-11dc-be0b-001560b84f0f"),
        "FreeBSD boot",
        Not("FreeBSD boot partition (holds boot code, no filesystem)"),
    ),
    (
        uuid!("516e7cb4-6ecf-11d6-8ff8-00022d09712b"),
        "FreeBSD disklabel",
        Not("BSD slice (holds a disklabel, not supported)"),
    ),
    (
        uuid!("516e7cb5-6ecf-11d6-8ff8-00022d09712b"),
        "FreeBSD swap",
        Not("FreeBSD swap"),
    ),
    (uuid!("516e7cb6-6ecf-11d6-8ff8-00022d09712b"), "FreeBSD UFS", Filesystem),
    (uuid!("516e7cba-6ecf-11d6-8ff8-00022d09712b"), "FreeBSD ZFS", Filesystem),
    (
        uuid!("6a898cc3-1dd2-11b2-99a6-080020736631"),
        "Solaris /usr or Apple ZFS",
        Filesystem,
    ),
    (
        uuid!("48465300-0000-11aa-aa11-00306543ecac"),
        "Apple HFS/HFS+",
        Filesystem,
    ),
    (uuid!("7c3457ef-0000-11aa-aa11-00306543ecac"), "Apple APFS", Filesystem),
    (uuid!("aa31e02a-400f-11db-9590-000c2911d1b8"), "VMware VMFS", Filesystem),
];

/// The MBR type bytes that open a chain of logical partitions.
pub(crate) fn is_extended(type_byte: u8) -> bool {
    matches!(type_byte, 0x05 | 0x0f | 0x85)
}

pub(crate) const GPT_PROTECTIVE: u8 = 0xee;

impl PartitionKind {
    /// Human name of the type, e.g. "Microsoft basic data" or "FAT32 LBA (0x0c)"; an
    /// unknown type shows its code.
    pub fn describe(&self) -> String {
        match *self {
            PartitionKind::Mbr { type_byte } => match mbr_entry(type_byte) {
                Some((name, _)) => format!("{name} ({type_byte:#04x})"),
                None => format!("unknown type {type_byte:#04x}"),
            },
            PartitionKind::Gpt { type_guid, .. } => match gpt_entry(&type_guid) {
                Some((name, _)) => name.to_string(),
                None => format!("unknown type {}", crate::bytes::braced(&type_guid)),
            },
        }
    }

    /// `Some(reason)` when the type cannot hold a filesystem ckptfs might read (swap,
    /// LVM, RAID, reserved space, containers); `None` for filesystems and unknown types,
    /// which filesystem detection then examines.
    pub fn not_a_filesystem(&self) -> Option<&'static str> {
        let content = match *self {
            PartitionKind::Mbr { type_byte } => mbr_entry(type_byte).map(|(_, c)| c),
            PartitionKind::Gpt { type_guid, .. } => gpt_entry(&type_guid).map(|(_, c)| c),
        };
        match content {
            Some(Not(reason)) => Some(reason),
            Some(Filesystem) | None => None,
        }
    }
}

fn mbr_entry(type_byte: u8) -> Option<(&'static str, Content)> {
    MBR_TYPES
        .iter()
        .find(|(b, _, _)| *b == type_byte)
        .map(|&(_, name, content)| (name, content))
}

fn gpt_entry(guid: &Uuid) -> Option<(&'static str, Content)> {
    GPT_TYPES
        .iter()
        .find(|(g, _, _)| g == guid)
        .map(|&(_, name, content)| (name, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt(type_guid: Uuid) -> PartitionKind {
        PartitionKind::Gpt {
            type_guid,
            unique_guid: Uuid::nil(),
            attributes: 0,
        }
    }

    #[test]
    fn mbr_names_show_the_code() {
        let d = |b| PartitionKind::Mbr { type_byte: b }.describe();
        assert_eq!(d(0x07), "NTFS/exFAT/HPFS (0x07)");
        assert_eq!(d(0x0c), "FAT32 LBA (0x0c)");
        assert_eq!(d(0x83), "Linux (0x83)");
        assert_eq!(d(0x82), "Linux swap (0x82)");
        assert_eq!(d(0x8e), "Linux LVM (0x8e)");
        assert_eq!(d(0x05), "extended (0x05)");
        assert_eq!(d(0x99), "unknown type 0x99");
    }

    #[test]
    fn gpt_names() {
        let basic = uuid!("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7");
        assert_eq!(gpt(basic).describe(), "Microsoft basic data");
        let odd = uuid!("01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(
            gpt(odd).describe(),
            "unknown type {01234567-89ab-cdef-0123-456789abcdef}"
        );
    }

    #[test]
    fn which_types_hold_no_filesystem() {
        let m = |b| PartitionKind::Mbr { type_byte: b }.not_a_filesystem();
        assert_eq!(m(0x07), None);
        assert_eq!(m(0x83), None);
        assert_eq!(m(0x99), None, "unknown types are left to detection");
        assert_eq!(m(0x82), Some("Linux swap"));
        assert!(m(0x0f).unwrap().contains("extended"));
        assert!(m(0x8e).unwrap().contains("LVM"));
        let msr = uuid!("e3c9e316-0b5c-4db8-817d-f92df00215ae");
        assert_eq!(
            gpt(msr).not_a_filesystem(),
            Some("Microsoft reserved partition (holds no filesystem)")
        );
        let esp = uuid!("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(gpt(esp).not_a_filesystem(), None);
        let bios_boot = uuid!("21686148-6449-6e6f-744e-656564454649");
        assert!(gpt(bios_boot).not_a_filesystem().is_some());
    }

    #[test]
    fn tables_have_no_duplicates() {
        for (i, a) in MBR_TYPES.iter().enumerate() {
            assert!(MBR_TYPES[i + 1..].iter().all(|b| b.0 != a.0), "{:#x}", a.0);
        }
        for (i, a) in GPT_TYPES.iter().enumerate() {
            assert!(GPT_TYPES[i + 1..].iter().all(|b| b.0 != a.0), "{}", a.0);
        }
    }
}
