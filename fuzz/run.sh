#!/usr/bin/env bash
# Fuzz targets with cargo-fuzz on stable Rust (RUSTC_BOOTSTRAP=1 unlocks the nightly
# flags cargo-fuzz passes). New inputs go to fuzz/corpus/<target> (ignored by git); the
# committed seeds in fuzz/seeds/<target> are read, never written.
#
# The code fuzzed (format/vhdx, chain, io, volume/partition) has no `unsafe`, so by
# default no sanitizer is used: AddressSanitizer's checks, each traced as a comparison,
# make the targets 5 to 10 times slower. SANITIZER=address fuzz/run.sh ... puts it back.
#
#   fuzz/run.sh                 every target, 60 s each
#   fuzz/run.sh header 300      one target, 300 s
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${2:-60}
targets=${1:-"header region_table metadata parent_locator bat sector_bitmap log_replay layered_read vhdx_file mbr gpt partition_table"}
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer "${SANITIZER:-none}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1
done
