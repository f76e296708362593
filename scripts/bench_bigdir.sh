#!/usr/bin/env bash
# Huge directories: lookups by name, listings, parallel reads and memory, through the
# mount, against the kernel (ext4 on a loop device) and ntfs-3g (NTFS) in the same run.
#
#   sudo scripts/bench_bigdir.sh [--quick] [CACHE_DIR]   (default ~/.cache/ckptfs-bench-bigdir)
#   sudo scripts/bench.sh --bigdir [--quick]             (the same, from the main benchmark)
#   MANY=1000000 sudo scripts/bench_bigdir.sh            (memory over a volume of that many files)
#
# Fixtures, built once into CACHE_DIR: one volume each of ext4 (filled by the kernel), NTFS
# (mkntfs, filled through ntfs-3g) and FAT32 (mkfs.fat, filled with mcopy), each with
# directories d<N> of N empty files named 1..N, stored as a one-state VHDX
# (examples/chain_from_raws). The ext4 volume also holds 16 files of 32 MiB for the
# parallel reads. N is 1,000, 10,000 and 100,000 (1,000 and 10,000 with --quick); FAT
# stops at 60,000: a FAT directory holds at most 65,536 entries.
#
# Each figure is taken on a fresh mount with the page cache dropped (the image files
# read from disk): `cd d<N>; seq 1 N | xargs stat -c %s` (every name looked up once),
# `ls -f` and `ls -l` of the largest directory, and the daemon's peak RSS (VmHWM).
# Parallel reads: one `cat` of a 32 MiB file, then 16 `cat`s of 16 different files at
# once, the image files in the page cache, medians of ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
args=()
for a in "$@"; do
    case $a in
        --quick) quick=1 ;;
        *) args+=("$a") ;;
    esac
done
cache=${args[0]:-${CKPTFS_BENCH_CACHE:-$HOME/.cache/ckptfs-bench-bigdir}}
rounds=${ROUNDS:-3}
many=${MANY:-0}
[ "$(id -u)" = 0 ] || { echo "bench_bigdir.sh: run as root (loop and FUSE mounts)" >&2; exit 1; }

packages=(bc e2fsprogs fuse3 ntfs-3g dosfstools mtools procps python3)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > /dev/null
fi

cargo build --release --quiet --bin ckptfs --example chain_from_raws
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release/ckptfs
chain=$target/release/examples/chain_from_raws
if [ $quick = 1 ]; then sizes=(1000 10000); else sizes=(1000 10000 100000); fi
fat_size() { [ "$1" -gt 60000 ] && echo 60000 || echo "$1"; }
mkdir -p "$cache"
work=$(mktemp -d)
cleanup() {
    for m in "$work"/mnt*; do
        mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
    done
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- fixtures
fixture_version=1
all_sizes=(1000 10000 100000)
# N empty files named 1..N in directory $1.
make_files() { python3 -c '
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(1, n + 1):
    open(os.path.join(d, str(i)), "wb").close()
' "$1" "$2"; }
wrap() { # raw name: a one-state VHDX of the raw volume
    rm -rf "$cache/$2"
    mkdir -p "$cache/$2"
    "$chain" "$cache/$2" "$2" "$1" > /dev/null
}
if [ "$(cat "$cache/ready" 2>/dev/null)" != "$fixture_version" ]; then
    echo "building the fixtures in $cache (once; a few minutes)..." >&2
    src=$work/src
    for n in "${all_sizes[@]}"; do make_files "$src/d$n" "$n"; done
    mkdir -p "$src/big"
    for i in $(seq 1 16); do head -c 32M /dev/urandom > "$src/big/f$i"; done
    # ext4: filled by the kernel, as a guest would leave it: htree directories. (Not
    # mkfs.ext4 -d, whose inserts scan the directory: hours at 100,000 names.)
    truncate -s 1G "$cache/ext4.raw"
    mkfs.ext4 -q -F -L bigdir -N 200000 "$cache/ext4.raw"
    mkdir -p "$work/mnt_build"
    mount -o loop "$cache/ext4.raw" "$work/mnt_build"
    cp -a "$src"/. "$work/mnt_build/"
    umount "$work/mnt_build"
    # NTFS: filled through ntfs-3g, as Windows would leave it: B-tree indexes.
    truncate -s 512M "$cache/ntfs.raw"
    mkntfs -q -F -Q -L bigdir "$cache/ntfs.raw" 2> /dev/null
    mkdir -p "$work/mnt_build"
    ntfs-3g "$cache/ntfs.raw" "$work/mnt_build"
    for n in "${all_sizes[@]}"; do echo "  ntfs: $n files" >&2; make_files "$work/mnt_build/d$n" "$n"; done
    umount "$work/mnt_build"
    # FAT32: mtools; at most 60,000 names a directory (FAT's limit is 65,536 entries).
    truncate -s 256M "$cache/fat.raw"
    mkfs.fat -F 32 -n BIGDIR "$cache/fat.raw" > /dev/null
    for n in "${all_sizes[@]}"; do
        f=$(fat_size "$n")
        echo "  fat: $f files" >&2
        mkdir -p "$work/fat/d$n"
        (cd "$src/d$n" && seq 1 "$f" | xargs cp -t "$work/fat/d$n")
        MTOOLS_SKIP_CHECK=1 mcopy -Q -s -i "$cache/fat.raw" "$work/fat/d$n" ::/
    done
    for fs in ext4 ntfs fat; do wrap "$cache/$fs.raw" "$fs"; done
    rm -rf "$src" "$work/fat"
    echo "$fixture_version" > "$cache/ready"
fi
if [ "$many" -gt 0 ] && [ "$(cat "$cache/many.ready" 2>/dev/null)" != "$many" ]; then
    echo "building a volume of $many files (once)..." >&2
    truncate -s $(( many / 1000 * 8 + 256 ))M "$cache/many.raw"
    mkfs.ext4 -q -F -L many -N $((many + many / 1000 + 1000)) "$cache/many.raw"
    mkdir -p "$work/mnt_build"
    mount -o loop "$cache/many.raw" "$work/mnt_build"
    python3 -c '
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%05d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    open(os.path.join(d, str(i)), "wb").close()
' "$work/mnt_build" "$many"
    umount "$work/mnt_build"
    wrap "$cache/many.raw" many
    echo "$many" > "$cache/many.ready"
fi

# ---------------------------------------------------------------- helpers
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mnt=$work/mnt
mkdir -p "$mnt"
peak_kib=0
ck_mount() { # fixture name [options]: mounts it, sets $vol to its volume directory
    "$bin" mount "${@:2}" "$cache/$1/$1.vhdx" "$mnt"
    vol=$(echo "$mnt"/*/volume_*)
    [ -d "$vol" ] || { echo "bench_bigdir.sh: no volume under $mnt after mounting $1: $(ls "$mnt" 2>&1)" >&2; exit 1; }
}
ck_pid() { pgrep -n -f "^$bin mount"; }
ck_umount() {
    local hwm pid i
    pid=$(ck_pid)
    hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    [ "$hwm" -gt "$peak_kib" ] && peak_kib=$hwm
    "$bin" umount "$mnt"
    # Wait for the daemon to be gone: one still exiting has been seen to take the
    # next mount on the same directory down with it.
    for i in $(seq 200); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
}
k_mount() { # fs name: the kernel's (ext4) or ntfs-3g's (NTFS) mount, $vol its root
    case $1 in
        ext4) mount -o ro,loop "$cache/ext4.raw" "$mnt" ;;
        ntfs) ntfs-3g -o ro "$cache/ntfs.raw" "$mnt" ;;
    esac
    vol=$mnt
}
k_umount() { umount "$mnt"; }
# Seconds to stat every name of d<N> once, by name.
stat_walk() { # dir count
    local t0
    t0=$(now)
    (cd "$1" && seq 1 "$2" | xargs stat -c %s > /dev/null)
    echo "$(now) - $t0" | bc -l
}
timed() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc -l; }

declare -A res
# One stat walk of each size for fs $1 with reader $2 (ck or k).
walks() { # fs reader
    local fs=$1 r=$2 n f
    for n in "${sizes[@]}"; do
        f=$n
        [ "$fs" = fat ] && f=$(fat_size "$n")
        cold
        if [ "$r" = ck ]; then ck_mount "$fs"; else k_mount "$fs"; fi
        res[$fs,$r,$n]=$(stat_walk "$vol/d$n" "$f")
        if [ "$r" = ck ]; then ck_umount; else k_umount; fi
    done
}
lists() { # fs reader: ls -f and ls -l of the largest directory, fresh mounts
    local fs=$1 r=$2 n=${sizes[-1]} how
    for how in f l; do
        cold
        if [ "$r" = ck ]; then ck_mount "$fs"; else k_mount "$fs"; fi
        res[$fs,$r,ls$how]=$(timed ls -"$how" "$vol/d$n")
        if [ "$r" = ck ]; then ck_umount; else k_umount; fi
    done
}

echo "stat walks and listings..." >&2
for fs in ext4 ntfs fat; do
    walks "$fs" ck
    lists "$fs" ck
    if [ "$fs" != fat ]; then
        walks "$fs" k
        lists "$fs" k
    fi
done

# The same walk with 2 threads instead of 16: a lone client's requests then do not go
# round the 16 threads (the kernel wakes the longest-waiting reader of /dev/fuse).
big=${sizes[-1]}
cold
ck_mount ext4 --threads 2
res[ext4,ck2,$big]=$(stat_walk "$vol/d$big" "$big")
ck_umount

echo "parallel reads..." >&2
single=(); parallel=()
for _ in $(seq "$rounds"); do
    cat "$cache/ext4/"*.vhdx > /dev/null
    ck_mount ext4
    t=$(timed cat "$vol/big/f1")
    single+=("$(echo "32 / $t" | bc -l)")
    ck_umount
    ck_mount ext4
    t0=$(now)
    for i in $(seq 1 16); do cat "$vol/big/f$i" > /dev/null & done
    wait
    parallel+=("$(echo "16 * 32 / ($(now) - $t0)" | bc -l)")
    ck_umount
done
single_best=$(printf '%s\n' "${single[@]}" | sort -g | tail -1)
parallel_med=$(printf '%s\n' "${parallel[@]}" | median)

many_rss=""
if [ "$many" -gt 0 ]; then
    echo "find + stat over $many files..." >&2
    cold
    "$bin" mount "$cache/many/many.vhdx" "$mnt"
    pid=$(ck_pid)
    # The daemon's RSS every 2 s along the walk: flat once the caches are full.
    (while [ -e "/proc/$pid/status" ]; do
        awk '/VmRSS/ { printf "%d ", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null; sleep 2
    done) > "$work/rss" &
    sampler=$!
    many_time=$(timed find "$mnt" -printf '%s\n')
    many_files=$(find "$mnt" -type f | wc -l)
    many_rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    kill "$sampler" 2>/dev/null || true
    ck_umount
fi

# ---------------------------------------------------------------- report
printf '\nckptfs huge-directory benchmark, %s%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$([ $quick = 1 ] && echo ' (--quick)')"
printf 'machine: %s, %s CPUs, %s GiB RAM, Linux %s; load %s\n' \
    "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" "$(nproc)" \
    "$(awk '/MemTotal/ { printf "%d", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'cold stat of every name of a directory of N empty files (fresh mount, page cache dropped)\n\n'
printf '%-8s %9s %13s %13s %13s %13s %8s\n' fs N "ckptfs s" "ckptfs us/e" "peer s" "peer us/e" ratio
for fs in ext4 ntfs fat; do
    for n in "${sizes[@]}"; do
        f=$n
        [ "$fs" = fat ] && f=$(fat_size "$n")
        c=${res[$fs,ck,$n]}
        if [ "$fs" = fat ]; then
            printf '%-8s %9d %13.3f %13.1f %13s %13s %8s\n' "$fs" "$f" "$c" "$(echo "$c * 1000000 / $f" | bc -l)" - - -
        else
            k=${res[$fs,k,$n]}
            printf '%-8s %9d %13.3f %13.1f %13.3f %13.1f %8.2f\n' "$fs" "$f" "$c" "$(echo "$c * 1000000 / $f" | bc -l)" \
                "$k" "$(echo "$k * 1000000 / $f" | bc -l)" "$(echo "$c / $k" | bc -l)"
        fi
    done
done
c=${res[ext4,ck2,$big]} k=${res[ext4,k,$big]}
printf '%-8s %9d %13.3f %13.1f %13.3f %13.1f %8.2f  (ckptfs --threads 2)\n' ext4 "$big" "$c" "$(echo "$c * 1000000 / $big" | bc -l)" \
    "$k" "$(echo "$k * 1000000 / $big" | bc -l)" "$(echo "$c / $k" | bc -l)"
echo "(peer: the kernel's ext4 on a loop device; ntfs-3g for NTFS; none for FAT, which this kernel lacks)"
echo
printf '%-34s %10s %10s %8s\n' "listing d$big (fresh mount)" ckptfs peer ratio
for fs in ext4 ntfs fat; do
    for how in f l; do
        c=${res[$fs,ck,ls$how]}
        if [ "$fs" = fat ]; then
            printf '%-34s %9.3fs %10s %8s\n' "$fs ls -$how ($(fat_size "$big") entries)" "$c" - -
        else
            k=${res[$fs,k,ls$how]}
            printf '%-34s %9.3fs %9.3fs %8.2f\n' "$fs ls -$how" "$c" "$k" "$(echo "$c / $k" | bc -l)"
        fi
    done
done
echo
cores=$(nproc)
printf '%-50s %8.0f MiB/s\n' "one cat of a 32 MiB file (best of $rounds)" "$single_best"
printf '%-50s %8.0f MiB/s\n' "16 cats of 16 files at once (median of $rounds)" "$parallel_med"
printf '%-50s %8d MiB\n' "daemon peak RSS over these mounts" $((peak_kib / 1024))
if [ -n "$many_rss" ]; then
    printf '%-50s %8.1f s\n' "find + stat of $many_files files (fresh mount)" "$many_time"
    printf '%-50s %8d MiB\n' "daemon peak RSS over that walk" $((many_rss / 1024))
    printf 'daemon RSS every 2 s along the walk, MiB: %s\n' "$(cat "$work/rss")"
fi

check() { # label, value, comparison, target
    local ok; ok=$(echo "$2 $3 $4" | bc -l)
    printf '%-56s %8.2f  (target %s %s)  %s\n' "$1" "$2" "$3" "$4" "$([ "$ok" = 1 ] && echo ok || echo MISSED)"
}
per() { echo "${res[$1,ck,$2]} / $3" | bc -l; }
first=${sizes[0]}
echo
echo "targets:"
check "ext4 stat walk, N=$big / kernel" "$(echo "${res[ext4,ck,$big]} / ${res[ext4,k,$big]}" | bc -l)" "<=" 2
check "ntfs stat walk, N=$big / ntfs-3g" "$(echo "${res[ntfs,ck,$big]} / ${res[ntfs,k,$big]}" | bc -l)" "<=" 2
for fs in ext4 ntfs fat; do
    fb=$big ff=$first
    [ "$fs" = fat ] && fb=$(fat_size "$big")
    check "$fs time per entry, N=$fb / N=$ff" "$(echo "$(per "$fs" "$big" "$fb") / $(per "$fs" "$first" "$ff")" | bc -l)" "<=" 1.5
done
check "ext4 ls -f, N=$big / kernel" "$(echo "${res[ext4,ck,lsf]} / ${res[ext4,k,lsf]}" | bc -l)" "<=" 2
check "ext4 ls -l, N=$big / kernel" "$(echo "${res[ext4,ck,lsl]} / ${res[ext4,k,lsl]}" | bc -l)" "<=" 2
check "ntfs ls -f, N=$big / ntfs-3g" "$(echo "${res[ntfs,ck,lsf]} / ${res[ntfs,k,lsf]}" | bc -l)" "<=" 2
check "ntfs ls -l, N=$big / ntfs-3g" "$(echo "${res[ntfs,ck,lsl]} / ${res[ntfs,k,lsl]}" | bc -l)" "<=" 2
check "16 cats / (one cat x $cores cores)" "$(echo "$parallel_med / ($single_best * $cores)" | bc -l)" ">=" 0.9
check "peak RSS (MiB)" $((peak_kib / 1024)) "<" 256
[ -n "$many_rss" ] && check "peak RSS, $many files (MiB)" $((many_rss / 1024)) "<" 256
exit 0
