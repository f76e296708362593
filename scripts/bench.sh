#!/usr/bin/env bash
# Read speed at chain depth 50 against the kernel and peer tools, all in one run.
#
#   sudo scripts/bench.sh [CACHE_DIR]      (default ~/.cache/ckptfs-bench)
#
# The fixture, built once and kept in CACHE_DIR: a 2 GiB ext4 disk (no partition table)
# holding a 1 GiB file of random bytes (big.bin) and 20,000 small files (small/), stored
# as a VHDX base plus 49 AVHDX layers, layer i rewriting the i-th slice of big.bin: read
# at the newest checkpoint (depth 50), the file touches every layer. flat.raw holds the
# newest state's exact bytes, for the kernel.
#
# Each figure is the median of RUNS runs (default 7; the range is shown too), with the
# image files in the page cache and the filesystem layer cold: before every run the
# page cache is dropped, memory compacted and the image files read back in, then the
# kernel gets a fresh loop mount and ckptfs a fresh mount (new process, empty caches).
# Compaction matters: on a fragmented memory the kernel's loop path cannot use large
# folios and runs up to 15 times slower, which would flatter ckptfs. Needs root, /dev/fuse, e2fsprogs,
# qemu-utils, bc; uses vhdimount (Debian libvhdi-utils) and target-mount (pip install
# dissect.target dissect.extfs fusepy) when installed, after checking they read the
# right bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${1:-${CKPTFS_BENCH_CACHE:-$HOME/.cache/ckptfs-bench}}
runs=${RUNS:-7}
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (loop and FUSE mounts)" >&2; exit 1; }

cargo build --release --quiet --bin ckptfs --example bench_chain
bin=$PWD/target/release/ckptfs
mkdir -p "$cache"
work=$(mktemp -d)
cleanup() {
    for m in "$work"/mnt*; do
        mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- fixture
# Bump when the fixture's recipe changes, so that cached fixtures are rebuilt.
fixture_version=2
if [ "$(cat "$cache/ready" 2>/dev/null)" != "$fixture_version" ]; then
    echo "building the fixture in $cache (once)..."
    rm -f "$cache"/*.vhdx "$cache"/*.avhdx "$cache"/flat.raw
    truncate -s 2G "$cache/flat.raw"
    mkfs.ext4 -q -F -L bench "$cache/flat.raw"
    mkdir -p "$work/mnt_build"
    mount -o loop "$cache/flat.raw" "$work/mnt_build"
    head -c 1G /dev/urandom > "$work/mnt_build/big.bin"
    python3 - "$work/mnt_build/small" <<'EOF'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(1)
for d in range(200):
    dd = os.path.join(root, f"d{d:03}")
    os.makedirs(dd)
    for f in range(100):
        with open(os.path.join(dd, f"f{f:03}.txt"), "wb") as out:
            out.write(rnd.randbytes(rnd.randint(100, 2000)))
EOF
    sync
    # big.bin's extents as "disk_offset length" in bytes, in file order.
    bs=$(stat -f -c %S "$work/mnt_build")
    filefrag -e "$work/mnt_build/big.bin" | awk -v bs="$bs" -F'[: .]+' \
        '$2 ~ /^[0-9]+$/ && NF > 6 { print $5 * bs, $7 * bs }' > "$cache/extents"
    umount "$work/mnt_build"
    qemu-img convert -O vhdx -o subformat=dynamic,block_size=2M "$cache/flat.raw" "$cache/bench.vhdx"
    target/release/examples/bench_chain "$cache/bench.vhdx" "$cache/flat.raw" "$cache/extents" 49 > /dev/null
    echo "$fixture_version" > "$cache/ready"
fi
leaf=$(ls "$cache"/bench_49.avhdx)

# ---------------------------------------------------------------- helpers
# Drop every cache, then read the image files back in: the filesystem layer (the
# kernel's ext4 and loop device, or ckptfs and FUSE) starts cold, the images do not.
warm() {
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo 1 > /proc/sys/vm/compact_memory
    cat "$cache"/*.vhdx "$cache"/*.avhdx "$cache/flat.raw" > /dev/null
}
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# Seconds to read a file sequentially in 1 MiB pieces.
read_time() { local t0; t0=$(now); dd if="$1" of=/dev/null bs=1M status=none; echo "$(now) - $t0" | bc -l; }
find_time() { local t0; t0=$(now); find "$1" -printf '%s %T@\n' > /dev/null; echo "$(now) - $t0" | bc -l; }
mib_s() { echo "$1 / $2" | bc -l; }

kernel_mount() {
    mkdir -p "$work/mnt_k"
    mount -o ro,loop "$cache/flat.raw" "$work/mnt_k"
}
ckptfs_mount() {
    mkdir -p "$work/mnt_c"
    "$bin" mount "$leaf" "$work/mnt_c"
}
ckptfs_umount() { "$bin" umount "$work/mnt_c"; }
ckptfs_pid() { pgrep -n -f "ckptfs mount $leaf" ; }

warm
base_name=$("$bin" list --json "$leaf" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoints"][0]["name"])')
top=$work/mnt_c/50_current/volume_bench
bottom=$work/mnt_c/$base_name/volume_bench

declare -A t lo hi
measure() { # name, then a command printing seconds; median of $runs, and the range
    local name=$1; shift
    local samples=()
    for _ in $(seq "$runs"); do warm; samples+=("$("$@")"); done
    t[$name]=$(printf '%s\n' "${samples[@]}" | median)
    lo[$name]=$(printf '%s\n' "${samples[@]}" | sort -g | head -1)
    hi[$name]=$(printf '%s\n' "${samples[@]}" | sort -g | tail -1)
}

k_read() { kernel_mount; local s; s=$(read_time "$work/mnt_k/big.bin"); umount "$work/mnt_k"; echo "$s"; }
k_find() { kernel_mount; local s; s=$(find_time "$work/mnt_k/small"); umount "$work/mnt_k"; echo "$s"; }
c_read50() { ckptfs_mount; local s; s=$(read_time "$top/big.bin"); ckptfs_umount; echo "$s"; }
c_read1() { ckptfs_mount; local s; s=$(read_time "$bottom/big.bin"); ckptfs_umount; echo "$s"; }
c_find() { ckptfs_mount; local s; s=$(find_time "$top/small"); ckptfs_umount; echo "$s"; }
c_disk() { ckptfs_mount; local s; s=$(read_time "$work/mnt_c/50_current/disk.img"); ckptfs_umount; echo "$s"; }
c_mount() { local t0 s; t0=$(now); ckptfs_mount; s=$(echo "$(now) - $t0" | bc -l); ckptfs_umount; echo "$s"; }

measure kernel_read k_read
measure kernel_find k_find
measure ckptfs_read50 c_read50
measure ckptfs_read1 c_read1
measure ckptfs_find c_find
measure ckptfs_disk c_disk
measure ckptfs_mount c_mount

# Peak memory of the serving process while it reads the 1 GiB file.
ckptfs_mount
dd if="$top/big.bin" of=/dev/null bs=1M status=none
rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$(ckptfs_pid)/status")
ckptfs_umount

# Peers, where installed.
if command -v vhdimount > /dev/null; then
    # A peer that reads the wrong bytes fast proves nothing: check its first 256 MiB.
    mkdir -p "$work/mnt_v"
    vhdimount "$leaf" "$work/mnt_v" > /dev/null
    # vhdimount shows every state of the chain, vhdi1 the base and the highest number
    # the newest.
    newest=$(ls "$work/mnt_v" | sort -V | tail -1)
    if ! cmp "$work/mnt_v/$newest" "$cache/flat.raw" > /dev/null; then
        echo "vhdimount reads other bytes than the newest state: not measured" >&2
        umount "$work/mnt_v"
    else
        umount "$work/mnt_v"
        vhdimount_ok=1
    fi
fi
if [ -n "${vhdimount_ok:-}" ]; then
    v_disk() {
        mkdir -p "$work/mnt_v"
        vhdimount "$leaf" "$work/mnt_v" > /dev/null
        local s; s=$(read_time "$work/mnt_v/$newest")
        umount "$work/mnt_v"; echo "$s"
    }
    measure vhdimount_disk v_disk
fi
if command -v target-mount > /dev/null; then
    dissect_mount() {
        mkdir -p "$work/mnt_d"
        target-mount "$leaf" "$work/mnt_d" > "$work/dissect.log" 2>&1 &
        dissect_pid=$!
        local i
        for i in $(seq 600); do [ -e "$work/mnt_d/fs/big.bin" ] && break; sleep 0.1; done
    }
    dissect_umount() { umount "$work/mnt_d"; wait "$dissect_pid" || true; }
    # As for vhdimount: measure only if it reads the right bytes.
    dissect_mount
    if "$bin" cat "$leaf" 50_current/volume_bench/big.bin | cmp - "$work/mnt_d/fs/big.bin" > /dev/null 2>&1; then
        dissect_ok=1
    else
        echo "dissect target-mount reads other bytes than ckptfs and the kernel: not measured" >&2
    fi
    dissect_umount
fi
if [ -n "${dissect_ok:-}" ]; then
    d_read() { dissect_mount; local s; s=$(read_time "$work/mnt_d/fs/big.bin"); dissect_umount; echo "$s"; }
    measure dissect_read d_read
fi

# ---------------------------------------------------------------- report
gib=1024; disk_mib=2048
printf '\nckptfs benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
printf 'machine: %s, %s CPUs, %s GiB RAM, Linux %s\n' \
    "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" "$(nproc)" \
    "$(awk '/MemTotal/ { printf "%d", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
printf 'fixture: 2 GiB ext4, 1 GiB big.bin, 20,000 small files; base + 49 layers; median of %s runs\n\n' "$runs"
row() { printf '%-46s %10s  %s\n' "$1" "$2" "${3:-}"; }
# "(slowest-fastest)" of a throughput in MiB/s, from the range of times
span() { printf '(%.0f-%.0f)' "$(mib_s "$1" "${hi[$2]}")" "$(mib_s "$1" "${lo[$2]}")"; }
tspan() { printf '(%.3f-%.3f s)' "${lo[$1]}" "${hi[$1]}"; }
row "kernel, loop mount: big.bin" "$(printf '%.0f MiB/s' "$(mib_s $gib "${t[kernel_read]}")")" "$(span $gib kernel_read)"
row "kernel, loop mount: find + stat 20,000 files" "$(printf '%.3f s' "${t[kernel_find]}")" "$(tspan kernel_find)"
row "ckptfs mount: big.bin at depth 50" "$(printf '%.0f MiB/s' "$(mib_s $gib "${t[ckptfs_read50]}")")" "$(span $gib ckptfs_read50)"
row "ckptfs mount: big.bin at depth 1" "$(printf '%.0f MiB/s' "$(mib_s $gib "${t[ckptfs_read1]}")")" "$(span $gib ckptfs_read1)"
row "ckptfs mount: find + stat 20,000 files" "$(printf '%.3f s' "${t[ckptfs_find]}")" "$(tspan ckptfs_find)"
row "ckptfs mount: disk.img (2 GiB) at depth 50" "$(printf '%.0f MiB/s' "$(mib_s $disk_mib "${t[ckptfs_disk]}")")" "$(span $disk_mib ckptfs_disk)"
row "ckptfs mount: time to a ready mount" "$(printf '%.3f s' "${t[ckptfs_mount]}")" "$(tspan ckptfs_mount)"
row "ckptfs: peak RSS reading big.bin" "$(printf '%d MiB' $((rss_kib / 1024)))"
[ -n "${t[vhdimount_disk]:-}" ] && row "vhdimount: raw disk (2 GiB) at depth 50" "$(printf '%.0f MiB/s' "$(mib_s $disk_mib "${t[vhdimount_disk]}")")" "$(span $disk_mib vhdimount_disk)"
[ -n "${t[dissect_read]:-}" ] && row "dissect target-mount: big.bin at depth 50" "$(printf '%.0f MiB/s' "$(mib_s $gib "${t[dissect_read]}")")" "$(span $gib dissect_read)"

ratio() { echo "$1 / $2" | bc -l; }
check() { # label, value, comparison, target
    local ok; ok=$(echo "$2 $3 $4" | bc -l)
    printf '%-52s %6.2f  (target %s %s)  %s\n' "$1" "$2" "$3" "$4" "$([ "$ok" = 1 ] && echo ok || echo MISSED)"
}
echo
check "depth-50 read / kernel read" "$(ratio "${t[kernel_read]}" "${t[ckptfs_read50]}")" ">=" 0.8
check "depth-50 read / depth-1 read" "$(ratio "${t[ckptfs_read1]}" "${t[ckptfs_read50]}")" ">=" 0.95
check "find time / kernel find time" "$(ratio "${t[ckptfs_find]}" "${t[kernel_find]}")" "<=" 2
check "mount time (s)" "${t[ckptfs_mount]}" "<" 0.2
check "peak RSS (MiB)" "$((rss_kib / 1024))" "<=" 128
if [ -n "${t[vhdimount_disk]:-}" ]; then
    check "disk.img read / vhdimount read" "$(ratio "${t[vhdimount_disk]}" "${t[ckptfs_disk]}")" ">=" 1
fi
