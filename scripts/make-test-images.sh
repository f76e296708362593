#!/usr/bin/env bash
# Make the test images in images/: small Hyper-V style checkpoint chains (a .vhdx base
# and .avhdx children) whose disks were partitioned, formatted and filled by the real
# tools, so that tests/volumes.rs can compare what ckptfs reads with what the guest's
# own drivers read from the same bytes.
#
#   sudo scripts/make-test-images.sh [IMAGE...]     (default: every image)
#
# For each image, a series of raw disk states is made (state N+1 = state N plus files
# added, changed, renamed and deleted), then `examples/chain_from_raws.rs` turns the
# series into a chain with fixed modification times, packed as images/<image>.tar.gz.
# images/README.md describes each image; update its sha256 lines after a rebuild
# (the script prints them).
#
# Runs as root (loop devices, kernel ext4 mounts, ntfs-3g). Installs nothing; on Debian
# it needs: fdisk gdisk e2fsprogs ntfs-3g dosfstools mtools util-linux qemu-utils
# python3 tar gzip (and cargo for the example).
#
# Partition device nodes do not appear inside containers, so every filesystem is reached
# through a loop device at its byte offset (`losetup -o OFFSET --sizelimit SIZE`), or
# by mtools at `IMAGE@@OFFSET`.
#
# Content is deterministic: file bytes come from seeded generators, every file and
# directory gets a fixed modification time (`touch -d`, or the source file's time for
# mtools' `mcopy -m`), GUIDs, serial numbers and mkfs times are fixed where the tools
# allow. What the tools do not let us fix (ext4 mount counters and times, NTFS log
# sequence numbers, the GUIDs inside the VHDX files) makes each rebuild's bytes differ,
# not what a reader shows.

set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$REPO/images
MIB=$((1 << 20))

export TZ=UTC LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1
# mkfs.ext4's own timestamps, and tools that honour SOURCE_DATE_EPOCH (mkfs.fat).
export E2FSPROGS_FAKE_TIME=1780000000 SOURCE_DATE_EPOCH=1780000000

if [ "$(id -u)" != 0 ]; then
    echo "make-test-images.sh: run as root (loop devices and mounts)" >&2
    exit 1
fi
missing=()
for tool in sfdisk sgdisk mkfs.ext4 mkntfs ntfs-3g mkfs.vfat mcopy mdir mren mdel \
    losetup mkswap fallocate qemu-img python3 tar gzip cargo; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "make-test-images.sh: missing ${missing[*]}; on Debian:" >&2
    echo "  apt-get install fdisk gdisk e2fsprogs ntfs-3g dosfstools mtools util-linux qemu-utils python3" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/ckptfs-images.XXXXXX)
LOOPS=()
MOUNTS=()

cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || true
    done
    for ((i = ${#LOOPS[@]} - 1; i >= 0; i--)); do
        losetup -d "${LOOPS[i]}" 2>/dev/null || true
    done
    if [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else echo "work files kept in $WORK"; fi
}
trap cleanup EXIT

say() { printf '== %s\n' "$*"; }

# --- loop devices and mounts -----------------------------------------------------------

# attach FILE OFFSET SIZE [SECTOR_SIZE]: a loop device over that byte range, in $LOOP.
attach() {
    LOOP=$(losetup --find --show ${4:+--sector-size "$4"} -o "$2" --sizelimit "$3" "$1")
    LOOPS+=("$LOOP")
}

detach() {
    losetup -d "$1"
    local keep=() l
    for l in "${LOOPS[@]}"; do [ "$l" = "$1" ] || keep+=("$l"); done
    LOOPS=("${keep[@]}")
}

# mount_fs ext4|ntfs FILE OFFSET SIZE [SECTOR_SIZE]: mount read-write at $WORK/mnt, in
# $MNT.
mount_fs() {
    attach "$2" "$3" "$4" "${5:-}"
    MNT=$WORK/mnt
    mkdir -p "$MNT"
    case $1 in
        ext4) mount -t ext4 "$LOOP" "$MNT" ;;
        ntfs) ntfs-3g "$LOOP" "$MNT" ;;
    esac
    MOUNTS+=("$MNT")
    MOUNTED_LOOP=$LOOP
}

# Unmount what mount_fs mounted (ntfs-3g on a block device: umount waits for it).
unmount_fs() {
    sync
    umount "$MNT"
    MOUNTS=()
    detach "$MOUNTED_LOOP"
}

# --- deterministic content -------------------------------------------------------------

# gen random|blocks SEED SIZE: bytes on stdout. `random` does not compress (keep it to
# a few KiB); `blocks` is 4 KiB blocks that each name their seed and index (so a block
# read from the wrong place shows) followed by a repeated phrase (so it compresses).
gen() {
    python3 - "$@" <<'EOF'
import random, sys
mode, seed, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
if mode == "random":
    out.write(random.Random(seed).randbytes(size))
else:
    filler = b"The quick brown fox jumps over the lazy dog. " * 100
    buf = bytearray()
    n = 0
    while len(buf) < size:
        head = b"%d:block %08d at offset %010d|" % (seed, n, n * 4096)
        buf += (head + filler)[:4096]
        n += 1
    out.write(bytes(buf[:size]))
EOF
}

# stamp TIME PATH...: set modification (and access) time; TIME in seconds since the
# epoch, a fraction allowed (`1790000000.123456789`).
stamp() {
    local t=$1
    shift
    touch -h -d "@$t" "$@"
}

# put PATH TIME: write stdin to PATH (parents created), then stamp it.
put() {
    mkdir -p "$(dirname "$1")"
    cat >"$1"
    stamp "$2" "$1"
}

# putgen PATH random|blocks SEED SIZE TIME
putgen() {
    mkdir -p "$(dirname "$1")"
    gen "$2" "$3" "$4" >"$1"
    stamp "$5" "$1"
}

# settle ROOT TIME: give every directory under ROOT (ROOT too) a fixed time, TIME + 2 s
# per directory in name order (even seconds, so FAT keeps them exactly).
settle() {
    local i=0 d
    while IFS= read -r -d '' d; do
        stamp "$((${2} + 2 * i))" "$d"
        i=$((i + 1))
    done < <(find "$1" -type d -print0 | sort -z)
}

# Extended attributes through Python (no need for the attr package).
setxattr() {
    python3 -c 'import os, sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())' "$@"
}

# --- FAT through mtools ----------------------------------------------------------------

# fat_copy RAW OFFSET FATDIR HOSTPATH...: copy host files and directory trees into
# FATDIR ("" for the root), keeping the host times (-m), overwriting files of the same
# name.
fat_copy() {
    local img=$1@@$2 dir=$3
    shift 3
    mcopy -s -p -m -o -i "$img" "$@" "::$dir/"
}

# stage: a host directory to prepare FAT content in, with fixed times.
new_stage() {
    STAGE=$WORK/stage
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
}

# --- partition tables ------------------------------------------------------------------

new_disk() { # PATH SIZE_MIB
    rm -f "$1"
    truncate -s "$(($2 * MIB))" "$1"
}

next_state() { # FROM TO
    cp --sparse=always "$1" "$2"
}

# chain NAME SECTOR TIMES STATE...: the chain of NAME, packed as images/NAME.tar.gz.
CHAIN_BIN=
chain() {
    local name=$1 sector=$2 times=$3
    shift 3
    local dir=$WORK/chain-$name
    rm -rf "$dir"
    "$CHAIN_BIN" --sector "$sector" --times "$times" "$dir" "$name" "$@" >/dev/null
    # qemu-img reads a VHDX base (not differencing ones, nor 4096-byte sectors): it must
    # hold the first state.
    if [ "$sector" = 512 ]; then
        qemu-img compare -q -f vhdx -F raw "$dir/$name.vhdx" "$1"
    fi
    local files
    files=$(cd "$dir" && ls)
    # shellcheck disable=SC2086
    tar --format=gnu --owner=0 --group=0 --numeric-owner -C "$dir" -cf - $files |
        gzip -9n >"$OUT/$name.tar.gz"
    say "$name: $(du -b "$OUT/$name.tar.gz" | cut -f1) bytes:" $files
}

# =======================================================================================
# windows-gpt: GPT, ESP (FAT32 "SYSTEM"), MSR, NTFS "Windows"; 3 states.
# =======================================================================================

# Layout in 512-byte sectors (also in tests/volumes.rs and images/README.md).
WG_ESP=(2048 81920)     # p1, 1 MiB + 40 MiB
WG_MSR=(83968 32768)    # p2, 41 MiB + 16 MiB
WG_NTFS=(116736 208896) # p3, 57 MiB + 102 MiB

# gpt_check DISK N: sgdisk finds no problem and N partitions (sgdisk can exit 0 having
# saved nothing).
gpt_check() {
    sgdisk -v "$1" | grep -q "No problems found"
    [ "$(sgdisk -p "$1" | grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ ')" = "$2" ]
}

gpt_windows_exact() { # DISK GUID (layout from WG_* or DEMO_*)
    local d=$1 guid=$2
    local -n esp=$3 msr=$4 ntfs=$5
    sgdisk -U "$guid" \
        -n "1:${esp[0]}:$((esp[0] + esp[1] - 1))" -t 1:EF00 -c "1:EFI system partition" \
        -u "1:${guid:0:33}001" \
        -n "2:${msr[0]}:$((msr[0] + msr[1] - 1))" -t 2:0C01 -c "2:Microsoft reserved partition" \
        -u "2:${guid:0:33}002" \
        -n "3:${ntfs[0]}:$((ntfs[0] + ntfs[1] - 1))" -t 3:0700 -c "3:Basic data partition" \
        -u "3:${guid:0:33}003" \
        "$d" >/dev/null
    gpt_check "$d" 3
}

# mkfs_fat32 RAW START SIZE LABEL VOLID [SECTOR]: FAT32 on the partition (in sectors).
mkfs_fat32() {
    local ss=${6:-512}
    attach "$1" $(($2 * ss)) $(($3 * ss)) "$ss"
    mkfs.vfat -F 32 -s 1 -S "$ss" -n "$4" -i "$5" --invariant -h "$2" "$LOOP" >/dev/null
    detach "$LOOP"
}

mkfs_ntfs() { # RAW START SIZE LABEL
    attach "$1" $(($2 * 512)) $(($3 * 512))
    mkntfs -q -Q -F -T -L "$4" -s 512 -c 4096 -p "$2" -H 255 -S 63 "$LOOP" >/dev/null
    detach "$LOOP"
}

make_windows_gpt() {
    local name=windows-gpt
    say "$name"
    local s0=$WORK/$name-0.raw s1=$WORK/$name-1.raw s2=$WORK/$name-2.raw
    local esp_off=$((WG_ESP[0] * 512)) ntfs_off=$((WG_NTFS[0] * 512)) ntfs_len=$((WG_NTFS[1] * 512))
    # State times: 2026-10-01, 2026-10-08, 2026-10-15 09:00 UTC.
    local T0=1790845200 T1=1791450000 T2=1792054800

    new_disk "$s0" 160
    gpt_windows_exact "$s0" 57494e44-4f57-5347-5054-000000000000 WG_ESP WG_MSR WG_NTFS
    mkfs_fat32 "$s0" "${WG_ESP[0]}" "${WG_ESP[1]}" SYSTEM 5359535f
    mkfs_ntfs "$s0" "${WG_NTFS[0]}" "${WG_NTFS[1]}" Windows

    # --- state 0: ESP
    new_stage
    putgen "$STAGE/EFI/Boot/bootx64.efi" random 101 24576 $((T0 + 2))
    putgen "$STAGE/EFI/Microsoft/Boot/bootmgfw.efi" random 102 32768 $((T0 + 4))
    putgen "$STAGE/EFI/Microsoft/Boot/BCD" random 103 16384 $((T0 + 6))
    putgen "$STAGE/EFI/Microsoft/Boot/en-US/bootmgfw.efi.mui" random 104 4321 $((T0 + 8))
    putgen "$STAGE/EFI/Microsoft/Boot/boot.stl" random 105 1200 $((T0 + 10))
    putgen "$STAGE/EFI/Microsoft/Recovery/BCD" random 106 8192 $((T0 + 12))
    put "$STAGE/EFI/Microsoft/Boot/Fonts and Resources/read me first.txt" $((T0 + 14)) <<<"Long names with spaces, on FAT32."
    : | put "$STAGE/EFI/Microsoft/Boot/EMPTY.DAT" $((T0 + 16))
    settle "$STAGE" $((T0 + 100))
    fat_copy "$s0" $esp_off "" "$STAGE/EFI"

    # --- state 0: NTFS
    mount_fs ntfs "$s0" $ntfs_off $ntfs_len
    local u=$MNT/Users/alice
    local docs=$u/Documents
    put "$MNT/Windows/System32/drivers/etc/hosts" $((T0 + 20)).1234567 <<'EOF'
# Copyright (c) 1993-2009 Microsoft Corp.
#
# This is a sample HOSTS file used by Microsoft TCP/IP for Windows.
127.0.0.1       localhost
::1             localhost
EOF
    putgen "$MNT/Windows/System32/config/SYSTEM" random 201 16384 $((T0 + 21)).5
    putgen "$docs/Quarterly Report.docx" random 202 23456 $((T0 + 22)).2500001
    printf 'Résumé of Alice\r\nExperience: many checkpoints.\r\n' | put "$docs/Résumé.txt" $((T0 + 23)).0000001
    printf '日本語のテキストです。\r\n' | put "$docs/日本語.txt" $((T0 + 24)).9999999
    : | put "$docs/empty.txt" $((T0 + 25))
    putgen "$docs/big.log" blocks 203 $((3 * MIB + 1234)) $((T0 + 26)).75
    put "$docs/Projects/2026/Q4/notes.md" $((T0 + 27)).3 <<<"# Q4 notes"
    put "$docs/Projects/2026/Q4/deep/er/and/deeper/leaf.txt" $((T0 + 28)).3 <<<"a leaf"
    # Sparse: 16 MiB, data at 5 MiB and at 12 MiB, holes elsewhere.
    truncate -s $((16 * MIB)) "$docs/sparse.vhd"
    gen random 204 8192 | dd of="$docs/sparse.vhd" bs=4096 seek=1280 conv=notrunc status=none
    gen random 205 4096 | dd of="$docs/sparse.vhd" bs=4096 seek=3072 conv=notrunc status=none
    stamp $((T0 + 29)).4 "$docs/sparse.vhd"
    # An index large enough to need $INDEX_ALLOCATION: 150 small (resident) files.
    local i
    for i in $(seq -w 1 150); do
        printf 'item %s\r\n' "$i" | put "$docs/Many/item $i with a fairly long file name.txt" $((T0 + 300 + 10#$i))
    done
    # Fragmented: fill the volume, free every other 64 KiB piece, then write files that
    # only fit in the holes (ntfs-3g would otherwise allocate each file in one run).
    local avail
    mkdir -p "$MNT/fill" "$docs/Fragmented"
    avail=$(df -B1 --output=avail "$MNT" | tail -1)
    dd if=/dev/zero of="$MNT/fill/big" bs=1M count=$(((avail - 3 * MIB) / MIB)) status=none
    for i in $(seq -w 1 48); do
        dd if=/dev/zero of="$MNT/fill/s$i" bs=64k count=1 status=none 2>/dev/null || break
    done
    rm -f "$MNT"/fill/s*[13579]
    putgen "$docs/Fragmented/a.bin" blocks 230 $((MIB + 4321)) $((T0 + 32)).5
    putgen "$docs/Fragmented/b.bin" blocks 231 $((300 * 1024)) $((T0 + 33)).5
    rm -r "$MNT/fill"
    put "$u/Desktop/todo.txt" $((T0 + 30)) <<<"buy milk"
    put "$MNT/Users/Public/desktop.ini" $((T0 + 31)) <<<"[.ShellClassInfo]"
    # Windows-like: a DOS 8.3 name beside the long one, an alternate data stream.
    setxattr "$docs/Résumé.txt" system.ntfs_dos_name "RSUM~1.TXT"
    setxattr "$docs/Quarterly Report.docx" system.ntfs_dos_name "QUARTE~1.DOC"
    setxattr "$docs/Quarterly Report.docx" user.Zone.Identifier $'[ZoneTransfer]\r\nZoneId=3\r\n'
    stamp $((T0 + 22)).2500001 "$docs/Quarterly Report.docx"
    # (ntfs-3g sets a DOS name only on a file with one link: link afterwards.)
    ln "$docs/Résumé.txt" "$docs/Résumé (hard link).txt"
    stamp $((T0 + 23)).0000001 "$docs/Résumé.txt"
    settle "$MNT" $((T0 + 1000))
    unmount_fs

    # --- state 1: changes everywhere
    next_state "$s0" "$s1"
    new_stage
    putgen "$STAGE/BCD" random 113 16384 $((T1 + 6))
    fat_copy "$s1" $esp_off /EFI/Microsoft/Boot "$STAGE/BCD"
    new_stage
    putgen "$STAGE/fonts/segoe_slboot.ttf" random 114 8192 $((T1 + 8))
    putgen "$STAGE/fonts/wgl4_boot.ttf" random 115 6000 $((T1 + 10))
    settle "$STAGE/fonts" $((T1 + 100))
    fat_copy "$s1" $esp_off /EFI/Microsoft/Boot "$STAGE/fonts"
    mren -i "$s1@@$esp_off" "::/EFI/Microsoft/Boot/boot.stl" "::/EFI/Microsoft/Boot/boot.stl.old"

    mount_fs ntfs "$s1" $ntfs_off $ntfs_len
    u=$MNT/Users/alice
    docs=$u/Documents
    putgen "$docs/Quarterly Report.docx" random 212 27001 $((T1 + 22)).6
    putgen "$u/Downloads/setup.exe" random 213 40000 $((T1 + 23)).1
    gen blocks 214 65536 >>"$docs/big.log"
    stamp $((T1 + 24)).2 "$docs/big.log"
    mv "$u/Desktop/todo.txt" "$u/Desktop/todo (done).txt"
    printf 'Résumé of Alice, updated\r\n' | put "$docs/Résumé v2.txt" $((T1 + 25)).5
    settle "$MNT" $((T1 + 1000))
    unmount_fs

    # --- state 2: deletions, a filled hole, changes in place
    next_state "$s1" "$s2"
    mdel -i "$s2@@$esp_off" "::/EFI/Microsoft/Recovery/BCD"
    new_stage
    putgen "$STAGE/bootx64.efi" random 121 25000 $((T2 + 2))
    fat_copy "$s2" $esp_off /EFI/Boot "$STAGE/bootx64.efi"

    mount_fs ntfs "$s2" $ntfs_off $ntfs_len
    u=$MNT/Users/alice
    docs=$u/Documents
    rm "$u/Downloads/setup.exe"
    for i in $(seq -w 1 150); do
        if ((10#$i % 3 == 0)); then rm "$docs/Many/item $i with a fairly long file name.txt"; fi
    done
    printf '日本語のテキストです。変更しました。\r\n' | put "$docs/日本語.txt" $((T2 + 24)).5
    gen random 221 4096 | dd of="$docs/sparse.vhd" bs=4096 seek=2000 conv=notrunc status=none
    stamp $((T2 + 29)).4 "$docs/sparse.vhd"
    put "$docs/Projects/2026/Q1/plan.txt" $((T2 + 30)) <<<"plan for next year"
    settle "$MNT" $((T2 + 1000))
    unmount_fs

    chain "$name" 512 $((T0 + 3600)),$((T1 + 3600)),$((T2 + 3600)) "$s0" "$s1" "$s2"
}

# =======================================================================================
# linux-mbr: MBR; p1 FAT16 "BOOT"; p2 extended holding p5 ext4 "rootfs" and p6 swap.
# =======================================================================================

LM_BOOT=(2048 65536)   # p1, 1 MiB + 32 MiB, type 0x0e, bootable
LM_EXT=(67584 194560)  # p2, 33 MiB + 95 MiB, type 0x05
LM_ROOT=(69632 163840) # p5, 34 MiB + 80 MiB, type 0x83
LM_SWAP=(235520 26624) # p6, 115 MiB + 13 MiB, type 0x82

make_linux_mbr() {
    local name=linux-mbr
    say "$name"
    local s0=$WORK/$name-0.raw s1=$WORK/$name-1.raw s2=$WORK/$name-2.raw
    local boot_off=$((LM_BOOT[0] * 512))
    local root_off=$((LM_ROOT[0] * 512)) root_len=$((LM_ROOT[1] * 512))
    # 2026-09-01, 2026-09-02, 2026-09-05 12:00 UTC.
    local T0=1788264000 T1=1788350400 T2=1788609600

    new_disk "$s0" 128
    sfdisk -q "$s0" <<EOF
label: dos
label-id: 0x4c696e75
unit: sectors
start=${LM_BOOT[0]}, size=${LM_BOOT[1]}, type=e, bootable
start=${LM_EXT[0]}, size=${LM_EXT[1]}, type=5
start=${LM_ROOT[0]}, size=${LM_ROOT[1]}, type=83
start=${LM_SWAP[0]}, size=${LM_SWAP[1]}, type=82
EOF
    attach "$s0" $boot_off $((LM_BOOT[1] * 512))
    mkfs.vfat -F 16 -n BOOT -i 424f4f54 --invariant -h "${LM_BOOT[0]}" "$LOOP" >/dev/null
    detach "$LOOP"
    attach "$s0" $root_off $root_len
    mkfs.ext4 -q -F -b 4096 -I 256 -L rootfs -U 726f6f74-6673-4000-8000-000000000005 \
        -E hash_seed=726f6f74-6673-4000-8000-0000000000ff,lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
    detach "$LOOP"
    attach "$s0" $((LM_SWAP[0] * 512)) $((LM_SWAP[1] * 512))
    mkswap -q -L swap -U 73776170-0000-4000-8000-000000000006 "$LOOP"
    detach "$LOOP"

    # --- state 0: /boot
    new_stage
    putgen "$STAGE/vmlinuz-6.1.0-18-amd64" random 301 49152 $((T0 + 2))
    putgen "$STAGE/initrd.img-6.1.0-18-amd64" blocks 302 $((MIB + 512)) $((T0 + 4))
    putgen "$STAGE/config-6.1.0-18-amd64" blocks 303 40000 $((T0 + 6))
    putgen "$STAGE/System.map-6.1.0-18-amd64" blocks 304 70000 $((T0 + 8))
    put "$STAGE/grub/grub.cfg" $((T0 + 10)) <<'EOF'
set default=0
menuentry 'Debian GNU/Linux' {
    linux /vmlinuz-6.1.0-18-amd64 root=LABEL=rootfs ro quiet
    initrd /initrd.img-6.1.0-18-amd64
}
EOF
    putgen "$STAGE/grub/fonts/unicode.pf2" random 305 8192 $((T0 + 12))
    putgen "$STAGE/grub/x86_64-efi/normal.mod" random 306 2048 $((T0 + 14))
    settle "$STAGE" $((T0 + 100))
    fat_copy "$s0" $boot_off "" "$STAGE"/*

    # --- state 0: root
    mount_fs ext4 "$s0" $root_off $root_len
    local r=$MNT h=$MNT/home/alice
    put "$r/etc/hostname" $((T0 + 20)).111111111 <<<"debian-guest"
    put "$r/etc/fstab" $((T0 + 21)).2 <<'EOF'
LABEL=rootfs  /      ext4  errors=remount-ro  0 1
LABEL=BOOT    /boot  vfat  umask=0077         0 2
LABEL=swap    none   swap  sw                 0 0
EOF
    put "$r/etc/passwd" $((T0 + 22)) <<'EOF'
root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
EOF
    put "$r/etc/shadow" $((T0 + 23)) <<<"root:*:20000:0:99999:7:::"
    chmod 0640 "$r/etc/shadow"
    put "$h/.bashrc" $((T0 + 30)).000000001 <<<"alias ll='ls -l'"
    put "$h/notes.txt" $((T0 + 31)).5 <<<"first notes"
    put "$h/secret.txt" $((T0 + 32)).25 <<<"do not share"
    chmod 0600 "$h/secret.txt"
    put "$h/bin/hello.sh" $((T0 + 33)).75 <<<$'#!/bin/sh\necho hello'
    chmod 0755 "$h/bin/hello.sh"
    ln -s notes.txt "$h/link-relative"
    ln -s /etc/hostname "$h/link-absolute"
    ln -s ../nowhere/missing.txt "$h/link-dangling"
    ln -s bin "$h/link-to-dir"
    ln -s "photos/2026/$(printf 'a%.0s' $(seq 1 80))/target-of-a-long-symlink.txt" "$h/link-long"
    ln "$h/notes.txt" "$h/notes-hardlink.txt"
    # Sparse: 20 MiB with data at 2 MiB and at the last block.
    truncate -s $((20 * MIB)) "$h/sparse.img"
    gen random 311 8192 | dd of="$h/sparse.img" bs=4096 seek=512 conv=notrunc status=none
    gen random 312 4096 | dd of="$h/sparse.img" bs=4096 seek=5119 conv=notrunc status=none
    sync
    # Preallocated (unwritten extents) over blocks that held other data: stale bytes
    # must read as zeros.
    putgen "$h/.cache/tmp-blob" blocks 313 $((1024 * 1024)) $((T0 + 34))
    sync
    rm "$h/.cache/tmp-blob"
    sync
    fallocate -l $((4 * MIB)) "$h/prealloc.bin"
    gen random 314 8192 | dd of="$h/prealloc.bin" bs=4096 seek=100 conv=notrunc status=none
    # Fragmented: two files grown in turns, each part written out before the next.
    for i in $(seq 0 7); do
        gen blocks $((340 + i)) 16384 >>"$h/frag-a.bin"
        sync
        gen blocks $((350 + i)) 16384 >>"$h/frag-b.bin"
        sync
    done
    stamp $((T0 + 45)).5 "$h/frag-a.bin" "$h/frag-b.bin"
    printf 'Résumé\n' | put "$h/Résumé.txt" $((T0 + 35)).123
    printf 'メモ\n' | put "$h/日本語/メモ.txt" $((T0 + 36)).456
    putgen "$h/big.log" blocks 315 $((2 * MIB + 77)) $((T0 + 37))
    putgen "$h/photos/2026/img_0001.jpg" random 316 6000 $((T0 + 38))
    putgen "$h/photos/2026/img_0002.jpg" random 317 7000 $((T0 + 39))
    put "$r/var/log/syslog" $((T0 + 40)) <<<"Sep  1 12:00:00 debian-guest kernel: Linux version 6.1.0"
    put "$r/var/log/syslog.1" $((T0 + 41)) <<<"older log"
    # A hashed (htree) directory.
    local i
    for i in $(seq -w 1 400); do
        put "$r/var/lib/dpkg/info/package-$i.list" $((T0 + 1000 + 10#$i)) <<<"/usr/share/doc/package-$i"
    done
    stamp $((T0 + 42)).9 "$h/sparse.img"
    stamp $((T0 + 43)).8 "$h/prealloc.bin" "$h/bin/hello.sh"
    stamp $((T0 + 44)).7 "$h/link-relative" "$h/link-absolute" "$h/link-dangling" "$h/link-to-dir" "$h/link-long"
    stamp $((T0 + 31)).5 "$h/notes.txt"
    chown -R 1000:1000 "$h"
    chmod 0700 "$h"
    settle "$r" $((T0 + 3000))
    unmount_fs

    # --- state 1
    next_state "$s0" "$s1"
    new_stage
    putgen "$STAGE/vmlinuz-6.1.0-20-amd64" random 321 50000 $((T1 + 2))
    putgen "$STAGE/initrd.img-6.1.0-20-amd64" blocks 322 $((MIB + 4096)) $((T1 + 4))
    sed 's/6.1.0-18/6.1.0-20/' >"$STAGE/grub.cfg" <<'EOF'
set default=0
menuentry 'Debian GNU/Linux' {
    linux /vmlinuz-6.1.0-18-amd64 root=LABEL=rootfs ro quiet
    initrd /initrd.img-6.1.0-18-amd64
}
EOF
    stamp $((T1 + 6)) "$STAGE/grub.cfg"
    fat_copy "$s1" $boot_off "" "$STAGE/vmlinuz-6.1.0-20-amd64"
    fat_copy "$s1" $boot_off "" "$STAGE/initrd.img-6.1.0-20-amd64"
    fat_copy "$s1" $boot_off /grub "$STAGE/grub.cfg"

    mount_fs ext4 "$s1" $root_off $root_len
    r=$MNT h=$MNT/home/alice
    put "$h/notes.txt" $((T1 + 31)).5 <<<"second notes, longer than the first ones"
    put "$h/new-file.txt" $((T1 + 32)) <<<"added in state 1"
    mv "$h/photos/2026/img_0001.jpg" "$h/photos/2026/beach.jpg"
    chmod 0644 "$h/secret.txt"
    rm "$r/var/log/syslog.1"
    gen blocks 323 8192 >>"$h/big.log"
    stamp $((T1 + 33)).25 "$h/big.log"
    gen random 324 4096 | dd of="$h/sparse.img" bs=4096 seek=3000 conv=notrunc status=none
    stamp $((T1 + 34)).9 "$h/sparse.img"
    chown -R 1000:1000 "$h"
    settle "$r" $((T1 + 3000))
    unmount_fs

    # --- state 2
    next_state "$s1" "$s2"
    mdel -i "$s2@@$boot_off" "::/vmlinuz-6.1.0-18-amd64" "::/initrd.img-6.1.0-18-amd64" \
        "::/config-6.1.0-18-amd64" "::/System.map-6.1.0-18-amd64"
    mren -i "$s2@@$boot_off" "::/grub/x86_64-efi/normal.mod" "::/grub/x86_64-efi/normal.mod.bak"
    # mtools fills FAT16 from its first free cluster: this file spans the holes left
    # by the deleted ones (a fragmented cluster chain).
    new_stage
    putgen "$STAGE/initrd.img-6.1.0-21-amd64" blocks 332 1300000 $((T2 + 4))
    fat_copy "$s2" $boot_off "" "$STAGE/initrd.img-6.1.0-21-amd64"

    mount_fs ext4 "$s2" $root_off $root_len
    r=$MNT h=$MNT/home/alice
    rm "$h/secret.txt"
    rm "$h/link-relative"
    ln -s new-file.txt "$h/link-relative"
    stamp $((T2 + 10)).5 "$h/link-relative"
    put "$h/日本語/新しい.txt" $((T2 + 11)) <<<"新しいファイル"
    gen random 331 4096 | dd of="$h/prealloc.bin" bs=4096 seek=500 conv=notrunc status=none
    stamp $((T2 + 12)).5 "$h/prealloc.bin"
    for i in $(seq -w 1 400); do
        if ((10#$i % 4 == 0)); then rm "$r/var/lib/dpkg/info/package-$i.list"; fi
    done
    chown -R 1000:1000 "$h"
    settle "$r" $((T2 + 3000))
    unmount_fs

    chain "$name" 512 $((T0 + 7200)),$((T1 + 7200)),$((T2 + 7200)) "$s0" "$s1" "$s2"
}

# =======================================================================================
# no-table: ext4 (mkfs defaults for a small disk: 1 KiB blocks) on the whole disk.
# =======================================================================================

make_no_table() {
    local name=no-table
    say "$name"
    local s0=$WORK/$name-0.raw s1=$WORK/$name-1.raw
    # 2026-08-10 08:00, 2026-08-11 08:00 UTC.
    local T0=1786348800 T1=1786435200
    new_disk "$s0" 64
    mkfs.ext4 -q -F -L scratch -U 6e6f7461-626c-4500-8000-000000000000 \
        -E hash_seed=6e6f7461-626c-4500-8000-0000000000ff,lazy_itable_init=0,lazy_journal_init=0 "$s0"

    mount_fs ext4 "$s0" 0 $((64 * MIB))
    local r=$MNT
    put "$r/data/a.txt" $((T0 + 1)).5 <<<"alpha"
    putgen "$r/data/random.bin" random 401 20000 $((T0 + 2))
    putgen "$r/data/blocks.bin" blocks 402 $((MIB + 3)) $((T0 + 3)).000000999
    put "$r/data/nested/deeper/file.txt" $((T0 + 4)) <<<"deep"
    ln -s data/a.txt "$r/link"
    stamp $((T0 + 5)) "$r/link"
    local i
    for i in $(seq -w 1 100); do
        put "$r/data/many/f$i" $((T0 + 100 + 10#$i)) <<<"$i"
    done
    settle "$r" $((T0 + 1000))
    unmount_fs

    next_state "$s0" "$s1"
    mount_fs ext4 "$s1" 0 $((64 * MIB))
    r=$MNT
    put "$r/data/a.txt" $((T1 + 1)).25 <<<"alpha, changed"
    rm "$r/data/random.bin"
    putgen "$r/data/new.bin" random 411 12345 $((T1 + 2))
    mv "$r/data/nested" "$r/data/moved"
    settle "$r" $((T1 + 1000))
    unmount_fs

    chain "$name" 512 $((T0 + 600)),$((T1 + 600)) "$s0" "$s1"
}

# =======================================================================================
# gpt-4k: 4096-byte logical sectors: a GPT for 4 KiB sectors, FAT32 and ext4.
# =======================================================================================

# In 4096-byte sectors. FAT32 needs at least 65525 clusters: 256 MiB with 4 KiB
# sectors and clusters, hence a larger (but nearly empty) disk.
G4_ESP=(256 67584)    # p1, 1 MiB + 264 MiB
G4_ROOT=(67840 10240) # p2, 265 MiB + 40 MiB

make_gpt_4k() {
    local name=gpt-4k
    say "$name"
    local s0=$WORK/$name-0.raw s1=$WORK/$name-1.raw
    local esp_off=$((G4_ESP[0] * 4096))
    local root_off=$((G4_ROOT[0] * 4096)) root_len=$((G4_ROOT[1] * 4096))
    # 2026-07-04 15:30, 2026-07-05 15:30 UTC.
    local T0=1783179000 T1=1783265400
    new_disk "$s0" 320
    attach "$s0" 0 $((320 * MIB)) 4096
    sgdisk -U 34306b34-306b-4000-8000-000000000000 \
        -n "1:${G4_ESP[0]}:$((G4_ESP[0] + G4_ESP[1] - 1))" -t 1:EF00 -c "1:EFI system partition" \
        -u 1:34306b34-306b-4000-8000-000000000001 \
        -n "2:${G4_ROOT[0]}:$((G4_ROOT[0] + G4_ROOT[1] - 1))" -t 2:8300 -c 2:root \
        -u 2:34306b34-306b-4000-8000-000000000002 "$LOOP" >/dev/null
    gpt_check "$LOOP" 2
    detach "$LOOP"
    mkfs_fat32 "$s0" "${G4_ESP[0]}" "${G4_ESP[1]}" EFI4K 3446344b 4096
    attach "$s0" $root_off $root_len 4096
    mkfs.ext4 -q -F -b 4096 -I 256 -L root4k -U 34306b34-306b-4000-8000-0000000000e4 \
        -E hash_seed=34306b34-306b-4000-8000-0000000000ff,lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
    detach "$LOOP"

    new_stage
    putgen "$STAGE/EFI/BOOT/BOOTX64.EFI" random 501 20000 $((T0 + 2))
    putgen "$STAGE/EFI/debian/grubx64.efi" random 502 12000 $((T0 + 4))
    put "$STAGE/EFI/debian/grub.cfg" $((T0 + 6)) <<<"search.fs_label root4k root"
    putgen "$STAGE/EFI/debian/Exactly One Cluster.bin" random 503 4096 $((T0 + 8))
    settle "$STAGE" $((T0 + 100))
    fat_copy "$s0" $esp_off "" "$STAGE/EFI"

    mount_fs ext4 "$s0" $root_off $root_len 4096
    put "$MNT/etc/hostname" $((T0 + 20)).5 <<<"four-k"
    putgen "$MNT/srv/data.bin" blocks 511 $((MIB / 2 + 1)) $((T0 + 21)).25
    ln -s ../etc/hostname "$MNT/srv/hostname-link"
    stamp $((T0 + 22)) "$MNT/srv/hostname-link"
    settle "$MNT" $((T0 + 1000))
    unmount_fs

    next_state "$s0" "$s1"
    new_stage
    put "$STAGE/grub.cfg" $((T1 + 6)) <<<$'search.fs_label root4k root\nset timeout=3'
    fat_copy "$s1" $esp_off /EFI/debian "$STAGE/grub.cfg"
    mdel -i "$s1@@$esp_off" "::/EFI/debian/Exactly One Cluster.bin"
    mount_fs ext4 "$s1" $root_off $root_len 4096
    put "$MNT/etc/hostname" $((T1 + 20)).75 <<<"four-k-renamed"
    putgen "$MNT/srv/more.bin" random 521 5000 $((T1 + 21))
    settle "$MNT" $((T1 + 1000))
    unmount_fs

    chain "$name" 4096 $((T0 + 600)),$((T1 + 600)) "$s0" "$s1"
}

# =======================================================================================
# damaged-gpt: GPT with NTFS + ext4, primary GPT header (LBA 1) zeroed in every state.
# =======================================================================================

DG_NTFS=(2048 114688)  # p1, 1 MiB + 56 MiB
DG_ROOT=(116736 122880) # p2, 57 MiB + 60 MiB

make_damaged_gpt() {
    local name=damaged-gpt
    say "$name"
    local s0=$WORK/$name-0.raw s1=$WORK/$name-1.raw
    local ntfs_off=$((DG_NTFS[0] * 512)) ntfs_len=$((DG_NTFS[1] * 512))
    local root_off=$((DG_ROOT[0] * 512)) root_len=$((DG_ROOT[1] * 512))
    # 2026-06-01 06:00, 2026-06-15 06:00 UTC.
    local T0=1780293600 T1=1781503200
    new_disk "$s0" 128
    sgdisk -U 64616d61-6765-4400-8000-000000000000 \
        -n "1:${DG_NTFS[0]}:$((DG_NTFS[0] + DG_NTFS[1] - 1))" -t 1:0700 -c "1:Basic data partition" \
        -u 1:64616d61-6765-4400-8000-000000000001 \
        -n "2:${DG_ROOT[0]}:$((DG_ROOT[0] + DG_ROOT[1] - 1))" -t 2:8300 -c 2:linux \
        -u 2:64616d61-6765-4400-8000-000000000002 "$s0" >/dev/null
    gpt_check "$s0" 2
    mkfs_ntfs "$s0" "${DG_NTFS[0]}" "${DG_NTFS[1]}" Data
    attach "$s0" $root_off $root_len
    mkfs.ext4 -q -F -b 4096 -I 256 -L linux -U 64616d61-6765-4400-8000-0000000000e4 \
        -E hash_seed=64616d61-6765-4400-8000-0000000000ff,lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
    detach "$LOOP"

    mount_fs ntfs "$s0" $ntfs_off $ntfs_len
    put "$MNT/Shared/readme.txt" $((T0 + 1)).5 <<<"data volume"
    putgen "$MNT/Shared/archive.bin" blocks 601 $((MIB + 100)) $((T0 + 2)).25
    putgen "$MNT/Shared/small.bin" random 602 700 $((T0 + 3))
    settle "$MNT" $((T0 + 1000))
    unmount_fs
    mount_fs ext4 "$s0" $root_off $root_len
    put "$MNT/etc/motd" $((T0 + 10)).1 <<<"welcome"
    ln -s /etc/motd "$MNT/motd-link"
    stamp $((T0 + 11)) "$MNT/motd-link"
    settle "$MNT" $((T0 + 1000))
    unmount_fs
    dd if=/dev/zero of="$s0" bs=512 seek=1 count=1 conv=notrunc status=none

    next_state "$s0" "$s1"
    mount_fs ntfs "$s1" $ntfs_off $ntfs_len
    put "$MNT/Shared/readme.txt" $((T1 + 1)).75 <<<"data volume, second state"
    rm "$MNT/Shared/small.bin"
    putgen "$MNT/Shared/new/added.bin" random 611 3000 $((T1 + 2))
    settle "$MNT" $((T1 + 1000))
    unmount_fs
    mount_fs ext4 "$s1" $root_off $root_len
    put "$MNT/etc/motd" $((T1 + 10)).2 <<<"welcome back"
    put "$MNT/etc/issue" $((T1 + 12)) <<<"Debian GNU/Linux"
    settle "$MNT" $((T1 + 1000))
    unmount_fs
    dd if=/dev/zero of="$s1" bs=512 seek=1 count=1 conv=notrunc status=none

    chain "$name" 512 $((T0 + 600)),$((T1 + 600)) "$s0" "$s1"
}

# =======================================================================================
# demo: a small Windows-like disk for README's demo; report.docx changes, a file goes.
# =======================================================================================

DEMO_ESP=(2048 81920)     # p1, 1 MiB + 40 MiB
DEMO_MSR=(83968 32768)    # p2, 41 MiB + 16 MiB
DEMO_NTFS=(116736 143360) # p3, 57 MiB + 70 MiB

# docx DEST TIME VERSION: a small, real Word document (Open XML).
docx() {
    mkdir -p "$(dirname "$1")"
    python3 - "$1" "$3" <<'EOF'
import sys, zipfile
path, version = sys.argv[1], sys.argv[2]
paragraphs = {
    "1": ["Quarterly report", "Draft: numbers to come."],
    "2": ["Quarterly report", "Revenue grew 4% over the quarter.",
          "Open question: the budget spreadsheet."],
    "3": ["Quarterly report", "Revenue grew 4% over the quarter.",
          "The budget is now part of this report; the spreadsheet is gone.",
          "Final version."],
}[version]
body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
files = {
    "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>",
    "_rels/.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>",
    "word/document.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    f"<w:body>{body}</w:body></w:document>",
}
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for name, text in files.items():
        info = zipfile.ZipInfo(name, date_time=(2026, 11, 20, 9, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, text)
EOF
    stamp "$2" "$1"
}

# png DEST TIME beach|sunset: a small picture (gradients), a real PNG.
png() {
    mkdir -p "$(dirname "$1")"
    python3 - "$1" "$3" <<'EOF'
import struct, sys, zlib
path, kind = sys.argv[1], sys.argv[2]
w, h = 160, 100
rows = []
for y in range(h):
    row = bytearray([0])
    for x in range(w):
        if kind == "beach":
            sky, sea = y < 45, y < 70
            rgb = (120 + y, 180 + y // 2, 255) if sky else ((30, 110 + y, 200) if sea else (230, 210 - (y - 70), 160))
        else:
            t = y / h
            sun = (x - 80) ** 2 + (y - 62) ** 2 < 300
            rgb = (255, 220, 120) if sun else (int(250 - 120 * t), int(120 - 80 * t), int(60 + 100 * t))
        row += bytes(min(255, max(0, c)) for c in rgb)
    rows.append(bytes(row))
def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")
open(path, "wb").write(png)
EOF
    stamp "$2" "$1"
}

make_demo() {
    local name=demo
    say "$name"
    local s0=$WORK/$name-0.raw s1=$WORK/$name-1.raw s2=$WORK/$name-2.raw
    local esp_off=$((DEMO_ESP[0] * 512)) ntfs_off=$((DEMO_NTFS[0] * 512)) ntfs_len=$((DEMO_NTFS[1] * 512))
    # States of 2026-11-20 09:00, 2026-11-21 08:00, 2026-11-24 16:00 UTC; checkpoints
    # taken at 2026-11-20 10:15:03 and 2026-11-21 09:00:12 (as in README's example).
    local T0=1795165200 T1=1795248000 T2=1795536000

    new_disk "$s0" 128
    gpt_windows_exact "$s0" 44454d4f-0000-4000-8000-000000000000 DEMO_ESP DEMO_MSR DEMO_NTFS
    mkfs_fat32 "$s0" "${DEMO_ESP[0]}" "${DEMO_ESP[1]}" SYSTEM 44454d4f
    mkfs_ntfs "$s0" "${DEMO_NTFS[0]}" "${DEMO_NTFS[1]}" Windows

    new_stage
    putgen "$STAGE/EFI/Boot/bootx64.efi" random 701 12000 $((T0 - 86400))
    putgen "$STAGE/EFI/Microsoft/Boot/bootmgfw.efi" random 702 16000 $((T0 - 86400))
    putgen "$STAGE/EFI/Microsoft/Boot/BCD" random 703 8192 $((T0 - 86000))
    settle "$STAGE" $((T0 - 86400))
    fat_copy "$s0" $esp_off "" "$STAGE/EFI"

    mount_fs ntfs "$s0" $ntfs_off $ntfs_len
    local u=$MNT/Users/alice
    docx "$u/Documents/report.docx" $((T0 - 3600)).25 1
    printf 'item,amount\r\nservers,1200\r\nlicences,800\r\ntraining,450\r\n' |
        put "$u/Documents/budget.csv" $((T0 - 7200)).5
    put "$u/Documents/Meeting notes.txt" $((T0 - 1800)) <<<$'Monday: decide on the budget.\r'
    png "$u/Pictures/Holiday 2026/beach.png" $((T0 - 500000)) beach
    png "$u/Pictures/Holiday 2026/sunset.png" $((T0 - 499000)) sunset
    put "$u/Desktop/todo.txt" $((T0 - 900)) <<<$'- finish the report\r\n- send the budget\r'
    put "$MNT/Windows/System32/drivers/etc/hosts" $((T0 - 900000)) <<<"127.0.0.1 localhost"
    putgen "$MNT/Program Files/Notepad++/notepad++.exe" random 713 16000 $((T0 - 800000))
    settle "$MNT" $((T0 - 600))
    unmount_fs

    next_state "$s0" "$s1"
    mount_fs ntfs "$s1" $ntfs_off $ntfs_len
    u=$MNT/Users/alice
    docx "$u/Documents/report.docx" $((T1 - 1800)).75 2
    put "$u/Desktop/todo.txt" $((T1 - 600)) <<<$'- finish the report (nearly)\r\n- send the budget\r'
    settle "$MNT" $((T1 - 300))
    unmount_fs

    next_state "$s1" "$s2"
    mount_fs ntfs "$s2" $ntfs_off $ntfs_len
    u=$MNT/Users/alice
    docx "$u/Documents/report.docx" $((T2 - 3600)).5 3
    rm "$u/Documents/budget.csv"
    put "$u/Desktop/todo.txt" $((T2 - 1200)) <<<$'- report done\r'
    settle "$MNT" $((T2 - 600))
    unmount_fs

    # 2026-11-20 10:15:03, 2026-11-21 09:00:12, 2026-11-24 16:00:00 UTC.
    chain Win11 512 1795169703,1795251612,1795536000 "$s0" "$s1" "$s2"
    mv "$OUT/Win11.tar.gz" "$OUT/demo.tar.gz"
}

# =======================================================================================

say "building examples/chain_from_raws"
cargo build -q --release --example chain_from_raws
CHAIN_BIN=$REPO/target/release/examples/chain_from_raws
mkdir -p "$OUT"

all=(windows-gpt linux-mbr no-table gpt-4k damaged-gpt demo)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${all[@]}")
for image in "${wanted[@]}"; do
    case $image in
        windows-gpt) make_windows_gpt ;;
        linux-mbr) make_linux_mbr ;;
        no-table) make_no_table ;;
        gpt-4k) make_gpt_4k ;;
        damaged-gpt) make_damaged_gpt ;;
        demo) make_demo ;;
        *)
            echo "unknown image $image (images: ${all[*]})" >&2
            exit 2
            ;;
    esac
done
(cd "$OUT" && sha256sum ./*.tar.gz)
