#!/usr/bin/env bash
# Partition tables written by real tools (util-linux sfdisk/fdisk 2.38, GPT fdisk 1.0.9,
# dosfstools, ntfs-3g), kept as sparse dumps that checks/seeds.rs turns into seeds for
# the mbr, gpt and partition_table targets. The dumps are committed: GUIDs and label
# ids are random, so rerunning this changes them (the seeds then change too: rewrite
# them with `cargo test --test fuzz_corpus -- --ignored write_seeds`).
#
# Dump format (little-endian): the disk size in bytes (u64), then runs of non-zero
# 512-byte sectors: first sector (u32), sector count (u16), the sectors. Filesystem
# images keep only their first 16 and last 64 sectors (what a partition table reader
# looks at: sector 0, LBA 1 in both sector sizes, a backup GPT at the end).
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

dump() { # image name [fs]
    python3 - "$1" "$out/$2.bin" "${3:-}" <<'PY'
import struct, sys
img, dst, fs = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(img, 'rb').read()
n = len(data) // 512
keep = lambda s: not fs or s < 16 or s >= n - 64
runs, cur = [], None
for s in range(n):
    sec = data[s * 512:(s + 1) * 512]
    if keep(s) and any(sec):
        if cur and cur[0] + len(cur[1]) == s and len(cur[1]) < 0xFFFF:
            cur[1].append(sec)
        else:
            cur = [s, [sec]]
            runs.append(cur)
    else:
        cur = None
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(data)))
    for s, secs in runs:
        f.write(struct.pack('<IH', s, len(secs)))
        f.write(b''.join(secs))
PY
}

sgd() { sgdisk "$@" >/dev/null 2>&1; }

# MBR, three primaries, one bootable.
truncate -s 32M a.img
printf 'label: dos\nstart=2048, size=8192, type=83, bootable\nstart=10240, size=16384, type=7\nstart=26624, type=c\n' | sfdisk -q a.img
dump a.img sfdisk_mbr_primaries

# MBR with an extended partition (0x05) holding three logical partitions.
truncate -s 64M b.img
printf 'label: dos\nstart=2048, size=20480, type=83\nstart=22528, type=5\nsize=8192, type=83\nsize=16384, type=82\ntype=7\n' | sfdisk -q b.img
dump b.img sfdisk_mbr_extended

# Extended LBA (0x0f) in slot 4 with gaps between the logical partitions.
truncate -s 64M c.img
printf 'label: dos\nstart=2048, size=4096, type=c\nstart=8192, size=8192, type=83\nstart=20480, size=4096, type=8e\nstart=32768, type=f\nstart=34816, size=2048, type=83\nstart=40960, size=4096, type=7\nstart=61440, size=2048, type=b\n' | sfdisk -q c.img
dump c.img sfdisk_mbr_extended_lba_gaps

# MBR on a 4096-byte-sector disk, one logical partition.
truncate -s 64M d.img
printf 'o\nn\np\n1\n\n+8M\nn\ne\n2\n\n\nn\n\n+16M\nw\n' | fdisk -b 4096 d.img >/dev/null
dump d.img fdisk_mbr_4k_extended

# GPT: EFI system, Microsoft reserved, basic data, Linux, with names.
truncate -s 32M e.img
sgd -n 1:2048:+4M -t 1:ef00 -c "1:EFI system partition" -n 2:0:+1M -t 2:0c01 \
    -c "2:Microsoft reserved partition" -n 3:0:+8M -t 3:0700 -c "3:Basic data partition" \
    -n 4:0:0 -t 4:8300 -c "4:root ü" -A 4:set:2 e.img
dump e.img sgdisk_gpt

# The same with a hybrid MBR listing partitions 3 and 4 next to the 0xEE entry.
cp e.img f.img
sgd -h 3:4 f.img
dump f.img sgdisk_gpt_hybrid

# GPT with an 8-entry array, then the disk enlarged: the backup is no longer last.
truncate -s 16M g.img
sgd -S 8 -n 1:0:+1M -t 1:8300 -n 3:0:+2M -t 3:8200 g.img
truncate -s 24M g.img
dump g.img sgdisk_gpt_8_entries_enlarged

# GPT on a 4096-byte-sector disk.
truncate -s 64M h.img
printf 'g\nn\n\n\n+4M\nt\n1\nn\n\n\n\nw\n' | fdisk -b 4096 h.img >/dev/null
dump h.img fdisk_gpt_4k

# Whole-disk filesystems: no table.
truncate -s 64M i.img
mkfs.fat -F 32 i.img >/dev/null
dump i.img mkfs_fat32_whole_disk fs
truncate -s 16M j.img
mkfs.fat -F 16 j.img >/dev/null
dump j.img mkfs_fat16_whole_disk fs
truncate -s 16M k.img
mkntfs -F -Q -q k.img >/dev/null 2>&1
dump k.img mkntfs_whole_disk fs

# FAT32 over a former GPT disk: the backup GPT is left at the end, no primary.
cp e.img l.img
mkfs.fat -F 32 l.img >/dev/null
dump l.img mkfs_fat32_over_gpt fs
